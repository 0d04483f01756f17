package host

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/internal/testutil"
)

const objectsManifest = `name = "objects"
main = "x.wasm"
[[durable_objects.bindings]]
name = "STORE"
class_name = "Store"
[[durable_objects.bindings]]
name = "ALARMED"
class_name = "Alarmed"
[[durable_objects.bindings]]
name = "BROKEN"
class_name = "Broken"
`

// startObjects serves testdata/guests/objects with its storage in dataDir.
func startObjects(t *testing.T, dataDir, extra string) *testWorker {
	t.Helper()
	return serveGuest(t, "testdata/guests/objects", objectsManifest+extra, dataDir)
}

// call invokes an RPC method through the test Worker and returns the HTTP
// status and the body (JSON result or error text).
func (w *testWorker) call(t testing.TB, binding, name, method string, args any) (int, string) {
	t.Helper()
	body, _ := json.Marshal(args)
	resp, err := http.Post(fmt.Sprintf("%s/call/%s/%s/%s", w.url, binding, name, method), "application/json", strings.NewReader(string(body)))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (w *testWorker) mustCall(t testing.TB, binding, name, method string, args any) string {
	t.Helper()
	code, body := w.call(t, binding, name, method, args)
	require.Equal(t, 200, code, "%s.%s(%v): %s", binding, method, args, body)
	return body
}

func TestObjectKeyValueStorage(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "a", "Put", map[string]string{"key": "k1", "value": "v1"})
	assert.Equal(t, `"v1"`, w.mustCall(t, "STORE", "a", "Get", "k1"))
	w.mustCall(t, "STORE", "a", "PutMany", []map[string]string{{"key": "b1", "value": "x"}, {"key": "b2", "value": "y"}, {"key": "c1", "value": "z"}})
	assert.JSONEq(t, `{"b1":"x","b2":"y"}`, w.mustCall(t, "STORE", "a", "GetMany", []string{"b1", "b2", "nope"}))
	assert.Equal(t, `["b1=x","b2=y"]`, w.mustCall(t, "STORE", "a", "List", map[string]any{"Prefix": "b"}))
	assert.Equal(t, `["k1=v1","c1=z"]`, w.mustCall(t, "STORE", "a", "List", map[string]any{"Reverse": true, "Limit": 2}))
	assert.Equal(t, `["b2=y","c1=z"]`, w.mustCall(t, "STORE", "a", "List", map[string]any{"StartAfter": "b1", "End": "k1"}))
	assert.Equal(t, "true", w.mustCall(t, "STORE", "a", "Delete", "k1"))
	assert.Equal(t, "false", w.mustCall(t, "STORE", "a", "Delete", "k1"))
	assert.Equal(t, "2", w.mustCall(t, "STORE", "a", "DeleteMany", []string{"b1", "b2", "zz"}))
	// Another object has its own storage.
	code, body := w.call(t, "STORE", "other", "Get", "c1")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `no key "c1"`)
	w.mustCall(t, "STORE", "a", "DeleteAll", nil)
	assert.Equal(t, `null`, w.mustCall(t, "STORE", "a", "List", map[string]any{}))
}

func TestObjectStorageSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "")
	w.mustCall(t, "STORE", "durable", "Put", map[string]string{"key": "k", "value": "kept"})
	w.stop()
	w2 := startObjects(t, dir, "")
	assert.Equal(t, `"kept"`, w2.mustCall(t, "STORE", "durable", "Get", "k"))
}

// TestObjectWithoutStorageHasNoFile: an object's database file is made by
// its first write, so an object that never uses storage, or only reads it,
// costs no file; one that writes keeps its data across eviction.
func TestObjectWithoutStorageHasNoFile(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "[durable_objects]\nidle_timeout = \"1s\"\n")
	databases := func() []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".sqlite") && d.Name() != "alarms.sqlite" {
				out = append(out, d.Name())
			}
			return nil
		})
		return out
	}
	assert.Equal(t, "0", w.mustCall(t, "STORE", "quiet", "Events", nil))
	code, body := w.call(t, "STORE", "reader", "Get", "k")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "no key")
	w.mustCall(t, "STORE", "writer", "Put", map[string]string{"key": "k", "value": "v"})
	code, writer := get(t, w.url+"/id/STORE?name=writer")
	require.Equal(t, 200, code, writer)
	assert.Equal(t, []string{writer + ".sqlite"}, databases(), "only the object that wrote has a database")
	require.Eventually(t, func() bool { return w.Objects().LiveObjects() == 0 }, 10*time.Second, 50*time.Millisecond, "both objects are evicted")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "writer", "Get", "k"))
	assert.Equal(t, "0", w.mustCall(t, "STORE", "quiet", "Events", nil))
	assert.Equal(t, []string{writer + ".sqlite"}, databases(), "eviction and reactivation made no file either")
}

func TestObjectEventsAreSerialPerObjectAndParallelAcross(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	run := func(names []string) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for _, n := range names {
			wg.Add(1)
			go func() { defer wg.Done(); w.mustCall(t, "STORE", n, "Sleep", 150) }()
		}
		wg.Wait()
		return time.Since(start)
	}
	run([]string{"s", "p1", "p2", "p3"}) // activate them first
	same := run([]string{"s", "s", "s", "s"})
	different := run([]string{"p1", "p2", "p3", "s"})
	assert.GreaterOrEqual(t, same, 600*time.Millisecond, "events of one object overlapped")
	assert.Less(t, different, 550*time.Millisecond, "different objects did not run in parallel")

	// Arrival order is delivery order: one client's puts land in order.
	for i := 0; i < 20; i++ {
		w.mustCall(t, "STORE", "order", "Put", map[string]string{"key": "last", "value": fmt.Sprint(i)})
	}
	assert.Equal(t, `"19"`, w.mustCall(t, "STORE", "order", "Get", "last"))
}

// TestBackToBackEventsKeepTheirGuarantees keeps one object's queue full
// from 32 clients, so most events are delivered by the instance as the one
// before them ends, in the same commit batch. Events that fail in between
// (a panic after a write, one past its time limit) lose their own writes
// only, every other event runs exactly once, and every caller gets its
// answer.
func TestBackToBackEventsKeepTheirGuarantees(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"2s\"\n")
	var mu sync.Mutex
	var kept, lost []string
	var wg sync.WaitGroup
	for c := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				key := fmt.Sprintf("k%d-%d", c, i)
				if i%5 == 4 {
					code, body := w.call(t, "STORE", "busy", "PutThenPanic", key)
					assert.Equal(t, 500, code, body)
					mu.Lock()
					lost = append(lost, key)
					mu.Unlock()
					continue
				}
				w.mustCall(t, "STORE", "busy", "Put", map[string]string{"key": key, "value": key})
				mu.Lock()
				kept = append(kept, key)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, fmt.Sprint(len(kept)), w.mustCall(t, "STORE", "busy", "Events", nil), "each put ran once")
	for _, key := range kept {
		assert.Equal(t, fmt.Sprintf("%q", key), w.mustCall(t, "STORE", "busy", "Get", key))
	}
	for _, key := range lost {
		code, body := w.call(t, "STORE", "busy", "Get", key)
		assert.Equal(t, 500, code, "%s: a failed event's write was undone", key)
		assert.Contains(t, body, "no key")
	}

	// An event queued behind another, so delivered as that one ends, runs
	// past its limit: its caller gets 504 and the object goes on.
	// (The first one's answer waits for the batch's commit, so it is
	// late too: not asserted.)
	first := make(chan struct{})
	go func() { w.call(t, "STORE", "busy", "Sleep", 300); close(first) }()
	time.Sleep(100 * time.Millisecond)
	code, body := w.call(t, "STORE", "busy", "Sleep", 2500)
	assert.Equal(t, 504, code, body)
	<-first
	w.mustCall(t, "STORE", "busy", "Put", map[string]string{"key": "after", "value": "1"})
	assert.Equal(t, `"1"`, w.mustCall(t, "STORE", "busy", "Get", "after"))
}

// TestChainedEventsThroughTrapsAndCancels keeps one object's queue full
// while some events trap the instance (so events chained or queued behind
// them must be delivered again on a new instance) and some callers go away
// mid-request. Every acknowledged insert is in storage exactly once, a
// trapped event's write is gone, an insert whose caller got no answer is
// there at most once, and the object still serves afterwards.
func TestChainedEventsThroughTrapsAndCancels(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"5s\"\n")
	w.mustCall(t, "STORE", "mix", "SQL", []any{"CREATE TABLE log (k TEXT)"})
	var mu sync.Mutex
	var kept, trapped, abandoned []string
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 16 {
				key := fmt.Sprintf("k%d-%d", c, i)
				switch {
				case i%8 == 5 && c%4 == 0:
					code, body := w.call(t, "STORE", "mix", "PutThenTrap", key)
					assert.NotEqual(t, 200, code, body)
					mu.Lock()
					trapped = append(trapped, key)
					mu.Unlock()
				case i%4 == 2:
					body, _ := json.Marshal([]any{"INSERT INTO log (k) VALUES (?)", key})
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+c%5)*time.Millisecond)
					req, err := http.NewRequestWithContext(ctx, "POST", w.url+"/call/STORE/mix/SQL", strings.NewReader(string(body)))
					require.NoError(t, err)
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					cancel()
					mu.Lock()
					if err == nil && resp.StatusCode == 200 {
						kept = append(kept, key)
					} else {
						abandoned = append(abandoned, key)
					}
					mu.Unlock()
				default:
					// A trap fails the Worker events on its instance too,
					// those relaying other clients' calls: their inserts
					// may or may not have run.
					code, _ := w.call(t, "STORE", "mix", "SQL", []any{"INSERT INTO log (k) VALUES (?)", key})
					mu.Lock()
					if code == 200 {
						kept = append(kept, key)
					} else {
						abandoned = append(abandoned, key)
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.NotEmpty(t, trapped)
	require.NotEmpty(t, kept, "inserts are acknowledged") // how many depends on the load: a trap fails the Worker events on its instance
	var rows [][]any
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "STORE", "mix", "SQL", []any{"SELECT k, count(*) FROM log GROUP BY k"})), &rows))
	count := map[string]float64{}
	for _, r := range rows {
		count[r[0].(string)] = r[1].(float64)
	}
	for _, key := range kept {
		assert.Equal(t, 1.0, count[key], "%s: an acknowledged insert is there once", key)
	}
	for _, key := range abandoned {
		assert.LessOrEqual(t, count[key], 1.0, "%s: an abandoned insert is there at most once", key)
	}
	assert.LessOrEqual(t, len(count), len(kept)+len(abandoned), "no insert nobody made")
	for _, key := range trapped {
		code, body := w.call(t, "STORE", "mix", "Get", key)
		assert.Equal(t, 500, code, "%s: a trapped event's write was undone", key)
		assert.Contains(t, body, "no key")
	}
	t.Logf("kept %d, abandoned %d (%d of them ran), trapped %d", len(kept), len(abandoned), len(count)-len(kept), len(trapped))
	w.mustCall(t, "STORE", "mix", "Put", map[string]string{"key": "after", "value": "1"})
	assert.Equal(t, `"1"`, w.mustCall(t, "STORE", "mix", "Get", "after"))
}

// TestChainedEventsCallingABusyObject has events of one object call
// another whose queue clients keep full, while both queues chain: every
// call is answered, what the caller sees of the callee only grows (its
// events ran once each, in order), and the callee ran every put once.
func TestChainedEventsCallingABusyObject(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	var puts atomic.Int64
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seen := -1
			for i := range 40 {
				if c%2 == 0 {
					w.mustCall(t, "STORE", "callee", "Put", map[string]string{"key": fmt.Sprintf("k%d-%d", c, i), "value": "v"})
					puts.Add(1)
					continue
				}
				var n int
				require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "STORE", "caller", "CallSelf", "callee")), &n))
				assert.GreaterOrEqual(t, n, seen, "client %d: the callee's event count went back", c)
				seen = n
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, fmt.Sprint(puts.Load()), w.mustCall(t, "STORE", "callee", "Events", nil))
}

// TestAlarmsArriveAmidChainedEvents sets alarms on an object whose queue
// clients keep full, so each alarm is queued behind events that chain:
// every alarm runs, once, and its write is kept.
func TestAlarmsArriveAmidChainedEvents(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				w.mustCall(t, "ALARMED", "busy", "Runs", nil)
			}
		}()
	}
	for round := 1; round <= 10; round++ {
		w.mustCall(t, "ALARMED", "busy", "Schedule", []int{10 * round, 0})
		want := fmt.Sprintf("%q", strings.Repeat("0,", round))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Equal(c, want, w.mustCall(t, "ALARMED", "busy", "Runs", nil))
		}, 10*time.Second, 5*time.Millisecond, "alarm %d ran once", round)
		assert.Equal(t, "false", w.mustCall(t, "ALARMED", "busy", "Pending", nil))
	}
	close(stop)
	wg.Wait()
	assert.Equal(t, fmt.Sprintf("%q", strings.Repeat("0,", 10)), w.mustCall(t, "ALARMED", "busy", "Runs", nil))
}

// instanceOf is the instance the live object binding/name is on.
func (w *testWorker) instanceOf(t *testing.T, binding, name string) *instance {
	t.Helper()
	o := w.Objects()
	ns, err := o.Namespace(binding)
	require.NoError(t, err)
	p, ok := o.PlacementOf(ns, ns.IDFromName(name))
	require.True(t, ok, "%s %s is live", binding, name)
	return p.(*placement).in
}

func TestObjectTrapFailsOnlyThatEvent(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	w.mustCall(t, "STORE", "t", "Put", map[string]string{"key": "a", "value": "1"})
	// Objects are spread over the instances: some end up beside t, some
	// elsewhere; those elsewhere must never notice t's trap.
	var elsewhere []string
	for i := range 6 {
		name := fmt.Sprint("bystander", i)
		w.mustCall(t, "STORE", name, "Put", map[string]string{"key": "a", "value": "1"})
		if w.instanceOf(t, "STORE", name) != w.instanceOf(t, "STORE", "t") {
			elsewhere = append(elsewhere, name)
		}
	}
	require.NotEmpty(t, elsewhere, "objects are placed on both instances")

	code, body := w.call(t, "STORE", "t", "PutThenTrap", "b")
	assert.Equal(t, 500, code)
	// The Worker's event failed too if it ran on the trapped instance.
	assert.Regexp(t, `(the object's event|worker) failed \(request id `, body)
	assert.Contains(t, w.logs.String(), "object trapped on purpose")

	assert.Equal(t, `"1"`, w.mustCall(t, "STORE", "t", "Get", "a"), "earlier writes survive")
	code, body = w.call(t, "STORE", "t", "Get", "b")
	assert.Equal(t, 500, code, "the failed event's write was undone")
	assert.Contains(t, body, `no key "b"`)
	// Put, Get, Get: 3 in a surviving instance, 2 in a rebuilt one.
	assert.Equal(t, "2", w.mustCall(t, "STORE", "t", "Events", nil), "a new instance was built from storage")
	for _, name := range elsewhere {
		w.mustCall(t, "STORE", name, "Put", map[string]string{"key": "a", "value": "2"})
		assert.Equal(t, "2", w.mustCall(t, "STORE", name, "Events", nil), "%s on another instance never noticed", name)
	}

	code, body = w.call(t, "STORE", "t", "PutThenPanic", "c")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the object's event failed (request id ", "the caller learns the request id")
	assert.NotContains(t, body, "panicked on purpose", "never the panic")
	assert.Contains(t, w.logs.String(), "object panicked on purpose", "the log has it")
	assert.Regexp(t, `object event failed" .*err="the plugin's code failed the event"`, w.logs.String(), "in words, without the SDK's status number")
	code, _ = w.call(t, "STORE", "t", "Get", "c")
	assert.Equal(t, 500, code, "a panicking event's write was undone")
}

func TestObjectConstructorFailure(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	code, body := w.call(t, "BROKEN", "x", "Anything", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "constructing Broken")
	assert.Contains(t, w.logs.String(), "constructor failed on purpose")
	assert.Equal(t, `"v"`, func() string {
		w.mustCall(t, "STORE", "ok", "Put", map[string]string{"key": "k", "value": "v"})
		return w.mustCall(t, "STORE", "ok", "Get", "k")
	}(), "the host keeps serving")
}

func TestObjectIDErrors(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	code, id := get(t, w.url+"/id/STORE?name=alice")
	require.Equal(t, 200, code)
	assert.Len(t, id, 64)
	code, again := get(t, w.url+"/id/STORE?from="+id)
	assert.Equal(t, 200, code)
	assert.Equal(t, id, again)
	_, unique := get(t, w.url+"/id/STORE")
	assert.NotEqual(t, id, unique)

	code, body := get(t, w.url+"/id/STORE?from=not-an-id")
	assert.Equal(t, 400, code)
	assert.Contains(t, body, `invalid Durable Object id "not-an-id": must be 64 lowercase hexadecimal digits`)

	_, alarmedID := get(t, w.url+"/id/ALARMED?name=alice")
	code, body = get(t, w.url+"/id/STORE?from="+alarmedID)
	assert.Equal(t, 400, code)
	assert.Contains(t, body, "belongs to another namespace")
	code, body = w.call(t, "STORE", "id:"+alarmedID, "Get", "k")
	assert.Equal(t, 400, code)
	assert.Contains(t, body, "belongs to another namespace")

	code, body = get(t, w.url+"/id/NOPE?name=x")
	assert.Equal(t, 400, code)
	assert.Contains(t, body, `no Durable Object binding named "NOPE"`)

	// The id names the same object as the name.
	w.mustCall(t, "STORE", "alice", "Put", map[string]string{"key": "k", "value": "by-name"})
	assert.Equal(t, `"by-name"`, w.mustCall(t, "STORE", "id:"+id, "Get", "k"))
}

func TestObjectBadCalls(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	code, body := w.call(t, "STORE", "x", "Nope", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `*main.Store has no method "Nope" that can be called (it has: CallSelf, Chain, Delete, DeleteAll`)
	code, body = w.call(t, "STORE", "x", "ServeHTTP", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `has no method "ServeHTTP" that can be called`)
	code, body = w.call(t, "STORE", "rawid:garbage", "Get", "k")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `invalid Durable Object id "garbage"`)
	assert.NotContains(t, body, "Host", "no guest memory beyond the id is read")
	w.mustCall(t, "STORE", "word", "Put", map[string]string{"key": "k", "value": "seven"})
	assert.Equal(t, `"call Get: decoding its result: json: cannot unmarshal string into Go value of type int"`,
		w.mustCall(t, "STORE", "x", "GetAsNumber", map[string]string{"Name": "word", "Key": "k"}))
	code, body = w.call(t, "STORE", "x", "Get", map[string]int{"not": 1})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "arguments of Get")

	code, body = w.call(t, "STORE", "x", "PutBig", []int{2049, 1})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "call PutBig: ", "the storage error reaches the caller, named once")
	assert.NotContains(t, body, "wharf:", "at most once, in front: not after the method")
	assert.NotContains(t, body, "storage_put", "in words, without the ABI's names")
	assert.NotContains(t, body, "TOOLARGE", "in words, without the ABI's names")
	assert.Contains(t, body, "key is larger than 2048 bytes")
	code, body = w.call(t, "STORE", "x", "PutBig", []int{1, 128<<10 + 1})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "value is larger than 131072 bytes")
	w.mustCall(t, "STORE", "x", "PutBig", []int{2048, 128 << 10})
}

func TestObjectSQL(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "db", "SQL", []any{"CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL)"})
	w.mustCall(t, "STORE", "db", "SQL", []any{"INSERT INTO t (name, score) VALUES (?, ?), (?, ?)", "a", 1.5, "b", nil})
	assert.Equal(t, `[[1,"a",1.5],[2,"b",null]]`, w.mustCall(t, "STORE", "db", "SQL", []any{"SELECT id, name, score FROM t ORDER BY id"}))
	code, body := w.call(t, "STORE", "db", "SQL", []any{"SELEC broken"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `near "SELEC": syntax error`)
	for want, args := range map[string][]any{
		"the statement has 1 parameter, got 2 arguments":  {"SELECT name FROM t WHERE id = ?", 1, 2},
		"the statement has 2 parameters, got 1 argument":  {"SELECT name FROM t WHERE id = ? OR id = ?", 1},
		"the statement has 2 parameters, got 0 arguments": {"SELECT name FROM t WHERE id = ? OR id = ?"},
	} {
		code, body = w.call(t, "STORE", "db", "SQL", args)
		assert.Equal(t, 500, code)
		assert.Equal(t, "call SQL: wrong number of SQL arguments: "+want, body)
		assert.Equal(t, `[["a"]]`, w.mustCall(t, "STORE", "db", "SQL", []any{"SELECT name FROM t WHERE id = ?", 1}), "the object keeps serving")
	}
	code, body = w.call(t, "STORE", "db", "SQL", []any{"SELECT * FROM _wharf_kv"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "reserved")
	assert.Equal(t, "null", w.mustCall(t, "STORE", "db", "SQL", []any{"-- only a note"}), "a text without a statement answers no rows (it crashed the host)")
	w.mustCall(t, "STORE", "db", "TxFail", "txkey")
}

func TestObjectFetch(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	resp, err := http.Post(w.url+"/fetch/STORE/f/some/path", "text/plain", strings.NewReader("payload"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Regexp(t, `^Store [0-9a-f]{8} /some/path payload$`, string(b))

	// A request the Worker received goes on as it is, with its own URL.
	resp, err = http.Post(w.url+"/forward/STORE/f/other?q=1", "text/plain", strings.NewReader("passed on"))
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, string(b))
	assert.Regexp(t, `^Store [0-9a-f]{8} /forward/STORE/f/other passed on$`, string(b))
}

func TestObjectStreamedResponse(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	start := time.Now()
	code, body := get(t, w.url+"/fetch/STORE/st/stream")
	assert.Equal(t, 200, code)
	assert.Equal(t, "one two three", body)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, `"yes"`, w.mustCall(t, "STORE", "st", "Get", "streamed"), "the write before the stream is durable")
}

// TestObjectEventOutlivesItsAnsweredCaller: an object that ends its
// streamed answer and then works on is not abandoned when its caller, with
// the whole answer read, finishes first: the event's later write lands and
// the object keeps its value (it is not rebuilt from storage).
func TestObjectEventOutlivesItsAnsweredCaller(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	code, body := get(t, w.url+"/fetch/STORE/early/answer-early")
	assert.Equal(t, 200, code)
	assert.Equal(t, "answered", body)
	assert.Equal(t, `"yes"`, w.mustCall(t, "STORE", "early", "Get", "lingered"), "the event ran to its end")
	assert.Equal(t, "2", w.mustCall(t, "STORE", "early", "Events", nil), "the same value served both events")
	assert.NotContains(t, w.logs.String(), "caller went away")
}

func TestUnknownClassRefusedAtLoad(t *testing.T) {
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	m, err := parseTestManifest([]byte("name = \"x\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"Countr\"\n"))
	require.NoError(t, err)
	_, err = NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: t.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `durable object binding C: class "Countr" is not registered by the module (it registers: Store, Alarmed, Box, Broken, `)
}

// TestBindingOfAModuleWithoutClassesSaysNone: a manifest binding a class
// of a module that registers none (a Worker pasted into a plugin wharf
// init wrote, whose wharf.toml binds NOTES) says "none", not an empty list.
func TestBindingOfAModuleWithoutClassesSaysNone(t *testing.T) {
	wasm := testutil.BuildGuest(t, "testdata/guests/testworker")
	m, err := parseTestManifest([]byte("name = \"x\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"NOTES\"\nclass_name = \"Notes\"\n"))
	require.NoError(t, err)
	_, err = NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: t.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `durable object binding NOTES: class "Notes" is not registered by the module (it registers: none)`)
}

func TestUnknownBindingRefusedAtLoad(t *testing.T) {
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	m, err := parseTestManifest([]byte("name = \"x\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"STORES\"\nclass_name = \"Store\"\n"))
	require.NoError(t, err)
	_, err = NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: t.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()})
	require.Error(t, err)
	assert.EqualError(t, err, `: the module uses Durable Object binding "STORE" (sdk.GetNamespace), which has no [[durable_objects.bindings]] entry (declared: STORES)`, "the manifest's path (empty here) comes first")
}

func TestAlarmRunsAndRetries(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "ALARMED", "a", "Schedule", []int{100, 2})
	assert.Equal(t, "true", w.mustCall(t, "ALARMED", "a", "Pending", nil))
	// Runs 0 and 1 fail, so their writes are undone; run 2 (after 1 s and
	// 2 s of backoff) succeeds.
	require.Eventually(t, func() bool {
		return w.mustCall(t, "ALARMED", "a", "Runs", nil) == `"2,"`
	}, 10*time.Second, 50*time.Millisecond, "two failures, then success")
	assert.Equal(t, "false", w.mustCall(t, "ALARMED", "a", "Pending", nil))
	assert.Contains(t, w.logs.String(), "failing alarm run 0 on purpose")
	assert.Contains(t, w.logs.String(), "failing alarm run 1 on purpose")

	w.mustCall(t, "ALARMED", "c", "Schedule", []int{200, 0})
	w.mustCall(t, "ALARMED", "c", "Cancel", nil)
	time.Sleep(400 * time.Millisecond)
	assert.Equal(t, `""`, w.mustCall(t, "ALARMED", "c", "Runs", nil), "a cancelled alarm never runs")
}

// TestAlarmSetWhileAwaitingRetryReplacesIt: an alarm set by another event
// after a failed run (as soon as that run is over, while its failure may
// still be being recorded, or later, while its retry waits) replaces the
// retry, as setAlarm replaces an object's one alarm in the reference: it
// runs at its own time as a first run (retry 0), and the retry never runs.
// Deleting the alarm then cancels the retry. Before, an alarm set before
// the failure was recorded was moved to the retry's time, and ran as a
// retry.
func TestAlarmSetWhileAwaitingRetryReplacesIt(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	failed := func(n int) func() bool {
		return func() bool { return strings.Count(w.logs.String(), "failing alarm run 0 on purpose") == n }
	}
	w.mustCall(t, "ALARMED", "s", "Schedule", []int{0, 100})
	require.Eventually(t, failed(1), 5*time.Second, time.Millisecond)
	w.mustCall(t, "ALARMED", "s", "Schedule", []int{100, 0}) // queued behind the failed run
	require.Eventually(t, func() bool {
		return w.mustCall(t, "ALARMED", "s", "Runs", nil) != `""`
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, `"0,"`, w.mustCall(t, "ALARMED", "s", "Runs", nil), "the alarm set meanwhile ran as a retry")

	w.mustCall(t, "ALARMED", "d", "Schedule", []int{0, 100})
	require.Eventually(t, failed(2), 5*time.Second, time.Millisecond)
	w.mustCall(t, "ALARMED", "d", "Cancel", nil)
	time.Sleep(2 * time.Second) // past the retry's backoff (1 s)
	assert.NotContains(t, w.logs.String(), "failing alarm run 1 on purpose", "the deleted alarm was retried")
	assert.Equal(t, "false", w.mustCall(t, "ALARMED", "d", "Pending", nil))
}

// TestAlarmGivenUpIsNotPending: an alarm whose handler fails every retry
// is given up (after about a minute of backoff) and deleted from the
// object's storage: the last failed event's rollback had put it back, so
// GetAlarm reported an alarm that never fired, and a handler that sets one
// only when none is pending never set one again. A new one then runs.
func TestAlarmGivenUpIsNotPending(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "ALARMED", "g", "Schedule", []int{0, 100})
	require.Eventually(t, func() bool {
		return strings.Contains(w.logs.String(), "alarm failed too often; giving up")
	}, 90*time.Second, 100*time.Millisecond)
	assert.Equal(t, "false", w.mustCall(t, "ALARMED", "g", "Pending", nil), "the alarm given up is still pending")
	w.mustCall(t, "ALARMED", "g", "Schedule", []int{0, 0})
	require.Eventually(t, func() bool {
		return w.mustCall(t, "ALARMED", "g", "Runs", nil) == `"0,"`
	}, 5*time.Second, 50*time.Millisecond, "the next alarm runs")
	assert.Equal(t, 7, strings.Count(w.logs.String(), "failing alarm run"), "the first run and six retries")
}

func TestAlarmFiresAfterRestart(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "")
	w.mustCall(t, "ALARMED", "r", "Schedule", []int{300, 0})
	w.stop()
	time.Sleep(500 * time.Millisecond) // it came due while the host was down
	w2 := startObjects(t, dir, "")
	require.Eventually(t, func() bool {
		return w2.mustCall(t, "ALARMED", "r", "Runs", nil) == `"0,"`
	}, 5*time.Second, 50*time.Millisecond)
}

// TestAlarmsOutliveTheirIndex: an alarm index (alarms.sqlite) lost,
// emptied or damaged between runs is rebuilt at the start from the
// objects' own databases, which hold each alarm, so the alarms still fire;
// a damaged one is moved aside, saying so. An emptied or deleted index was
// opened as a new, empty one: every alarm was dropped without a word.
func TestAlarmsOutliveTheirIndex(t *testing.T) {
	for _, damage := range []string{"removed", "emptied", "garbled", "damaged partway", "a row not an alarm"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			w := startObjects(t, dir, "")
			w.mustCall(t, "ALARMED", "r", "Schedule", []int{300, 0})
			w.stop()
			index := filepath.Join(dir, "objects", "alarms.sqlite")
			for _, f := range []string{index + "-wal", index + "-shm"} {
				require.NoError(t, os.RemoveAll(f))
			}
			switch damage {
			case "removed":
				require.NoError(t, os.Remove(index))
			case "emptied":
				require.NoError(t, os.Truncate(index, 0))
			case "garbled":
				require.NoError(t, os.WriteFile(index, bytes.Repeat([]byte("garbled!"), 512), 0o644))
			case "damaged partway":
				// Rows of a class sorted before the alarm's fill pages
				// ahead of its own; one of those, garbled, fails the read
				// partway, after the schema and the first rows read well.
				// The load passed over the error: the alarm after it was
				// dropped without a word.
				fillAlarmIndex(t, index, "A", 3000)
				f, err := os.OpenFile(index, os.O_RDWR, 0)
				require.NoError(t, err)
				fi, err := f.Stat()
				require.NoError(t, err)
				require.Greater(t, fi.Size(), int64(20*4096), "the index spans pages")
				_, err = f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), 10*4096)
				require.NoError(t, err)
				require.NoError(t, f.Close())
			case "a row not an alarm":
				fillAlarmIndex(t, index, "A", 1)
				db, err := sql.Open("sqlite3", "file:"+index)
				require.NoError(t, err)
				_, err = db.Exec("INSERT INTO alarms (class, id, at_ms) VALUES ('A', 'x', NULL)")
				require.NoError(t, err)
				require.NoError(t, db.Close())
			}
			w2 := startObjects(t, dir, "")
			require.Eventually(t, func() bool {
				return w2.mustCall(t, "ALARMED", "r", "Runs", nil) == `"0,"`
			}, 5*time.Second, 50*time.Millisecond, "the alarm did not fire")
			assert.Contains(t, w2.logs.String(), "rebuilt the alarm index")
			if damage != "removed" && damage != "emptied" {
				aside, err := filepath.Glob(index + ".damaged-*")
				require.NoError(t, err)
				assert.Len(t, aside, 1, "the damaged index was not kept aside")
			}
		})
	}
}

// fillAlarmIndex adds n alarms of class, far in the future, to the alarm
// index at path.
func fillAlarmIndex(t *testing.T, path, class string, n int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	require.NoError(t, err)
	defer db.Close()
	tx, err := db.Begin()
	require.NoError(t, err)
	for i := range n {
		_, err := tx.Exec("INSERT INTO alarms (class, id, at_ms) VALUES (?, ?, ?)", class, fmt.Sprintf("%064x", i), time.Now().Add(time.Hour).UnixMilli())
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
}

func TestIdleObjectsAreEvicted(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[durable_objects]\nmax_live = 4\nidle_timeout = \"200ms\"\n")
	for i := 0; i < 12; i++ {
		w.mustCall(t, "STORE", fmt.Sprint("e", i), "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
	}
	require.Eventually(t, func() bool { return w.Objects().LiveObjects() <= 4 }, 5*time.Second, 20*time.Millisecond,
		"live objects stay within max_live")
	require.Eventually(t, func() bool { return w.Objects().LiveObjects() == 0 }, 5*time.Second, 20*time.Millisecond,
		"idle objects are evicted")
	for i := 0; i < 12; i++ {
		assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(i)), w.mustCall(t, "STORE", fmt.Sprint("e", i), "Get", "k"), "re-created from storage")
	}
}

// openDatabaseFiles counts the object databases under dir this process
// holds open.
func openDatabaseFiles(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	files := map[string]bool{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, ".sqlite") && filepath.Base(target) != "alarms.sqlite" {
			files[target] = true
		}
	}
	return len(files)
}

// TestEvictedObjectsParkTheirDatabases: an evicted object's database stays
// open, so its next activation does not open the file again; the cap on
// open databases closes parked ones first, and nothing is lost either way.
func TestEvictedObjectsParkTheirDatabases(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "[durable_objects]\nmax_live = 2\nidle_timeout = \"10m\"\n")
	o := w.Objects()
	o.SetMaxOpenDatabases(5)
	for i := range 4 {
		w.mustCall(t, "STORE", fmt.Sprint("p", i), "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
	}
	require.Eventually(t, func() bool { return o.LiveObjects() <= 2 }, 5*time.Second, 20*time.Millisecond, "max_live evicts")
	assert.Equal(t, 4, openDatabaseFiles(t, dir), "the evicted objects' databases stay open")
	for i := range 12 {
		w.mustCall(t, "STORE", fmt.Sprint("p", i), "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
	}
	assert.LessOrEqual(t, openDatabaseFiles(t, dir), 5, "parked databases are closed beyond the cap")
	for i := range 12 {
		assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(i)), w.mustCall(t, "STORE", fmt.Sprint("p", i), "Get", "k"), "object p%d came back with its storage", i)
	}
	w.stop()
	assert.Zero(t, openDatabaseFiles(t, dir), "shutting down closes parked databases")
}

// TestParkedDatabaseFileDeletedOnDisk: an operator who deletes an evicted
// object's file resets the object, as when its database was closed: the
// parked database, open on the deleted file, is not reused, and what the
// object writes next is in the file at its path.
func TestParkedDatabaseFileDeletedOnDisk(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "[durable_objects]\nmax_live = 1\nidle_timeout = \"10m\"\n")
	o := w.Objects()
	w.mustCall(t, "STORE", "d0", "Put", map[string]string{"key": "old", "value": "1"})
	file := onlyObjectDatabase(t, dir)
	w.mustCall(t, "STORE", "d1", "Put", map[string]string{"key": "k", "value": "v"}) // evicts d0: max_live is 1
	require.Eventually(t, func() bool {
		return o.ParkedDatabases() == 1
	}, 5*time.Second, 20*time.Millisecond, "d0 parks its database")
	require.NoError(t, storage.Remove(file)) // with its WAL
	_, body := w.call(t, "STORE", "d0", "Get", "old")
	assert.Contains(t, body, `no key "old"`, "the deleted file's data is gone")
	w.mustCall(t, "STORE", "d0", "Put", map[string]string{"key": "new", "value": "2"})
	w.stop()
	require.FileExists(t, file, "the object's file is back at its path")
	db := storage.Lazy(file, nil)
	defer db.Close()
	v, ok, err := db.Get([]byte("new"))
	require.NoError(t, err)
	assert.True(t, ok, "the write after the deletion is in the file at the object's path")
	assert.Equal(t, "2", string(v))
}

// TestDamagedDatabaseSaysSoWithoutTheHostsPath: an object whose database
// file is damaged fails its events with SQLite's words, which reach the
// client, but not the host's path to the file; the other objects are
// served. The message named the data directory.
func TestDamagedDatabaseSaysSoWithoutTheHostsPath(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "")
	w.mustCall(t, "STORE", "damaged", "Put", map[string]string{"key": "k", "value": "v"})
	file := onlyObjectDatabase(t, dir)
	w.stop()
	require.NoError(t, os.WriteFile(file, bytes.Repeat([]byte("not sqlite "), 1000), 0o600))
	for _, p := range []string{file + "-wal", file + "-shm"} {
		os.Remove(p)
	}
	w = startObjects(t, dir, "")
	code, body := w.call(t, "STORE", "damaged", "Get", "k")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "opening the database: file is not a database")
	assert.NotContains(t, body, dir, "the host's path stays on the host")
	w.mustCall(t, "STORE", "other", "Put", map[string]string{"key": "k", "value": "v"})
}

// TestDamagedPageIsLoggedWithItsFile: an object whose database opens
// but has a damaged page fails the storage calls that read it with
// SQLite's words (IO: the host's fault, not the caller's), and the host
// logs it once, naming the object and the file; the other objects are
// served. Only the client heard of it: the operator had nothing to find
// the file by.
func TestDamagedPageIsLoggedWithItsFile(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "")
	for batch := range 3 {
		var kvs []map[string]string
		for i := range 100 {
			kvs = append(kvs, map[string]string{"key": fmt.Sprintf("k%d-%03d", batch, i), "value": strings.Repeat("v", 1000)})
		}
		w.mustCall(t, "STORE", "hurt", "PutMany", kvs)
	}
	file := onlyObjectDatabase(t, dir)
	w.stop()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(40*4096), "the database spans pages")
	for page := int64(10); page < 30; page++ { // leaves page 1, the header and the schema, whole
		_, err = f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096), page*4096)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	w = startObjects(t, dir, "")
	for range 2 {
		code, body := w.call(t, "STORE", "hurt", "List", map[string]any{})
		assert.Equal(t, 500, code)
		assert.Contains(t, body, "database disk image is malformed")
		assert.NotContains(t, body, dir, "the host's path stays on the host")
	}
	assert.Equal(t, 1, strings.Count(w.logs.String(), "an object's storage call failed: the database is damaged"), w.logs.String())
	assert.Contains(t, w.logs.String(), "file="+file)
	assert.Contains(t, w.logs.String(), "class=Store")
	w.mustCall(t, "STORE", "other", "Put", map[string]string{"key": "k", "value": "v"})
}

// TestLiveDatabaseFileDeletedOnDisk: a live object whose file is deleted
// on disk does not acknowledge writes that would go to the unlinked file;
// it says why, and its next event uses the file at its path.
func TestLiveDatabaseFileDeletedOnDisk(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "")
	w.mustCall(t, "STORE", "live", "Put", map[string]string{"key": "old", "value": "1"})
	file := onlyObjectDatabase(t, dir)
	require.NoError(t, storage.Remove(file)) // with its WAL
	code, body := w.call(t, "STORE", "live", "Put", map[string]string{"key": "lost", "value": "2"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "storage commit failed: the database file was deleted or replaced on disk while open")
	_, body = w.call(t, "STORE", "live", "Get", "old")
	assert.Contains(t, body, `no key "old"`, "the object came back from the file at its path")
	w.mustCall(t, "STORE", "live", "Put", map[string]string{"key": "new", "value": "3"})
	w.stop()
	db := storage.Lazy(file, nil)
	defer db.Close()
	v, ok, err := db.Get([]byte("new"))
	require.NoError(t, err)
	assert.True(t, ok, "the write after the deletion is in the file at the object's path")
	assert.Equal(t, "3", string(v))
	_, ok, err = db.Get([]byte("lost"))
	require.NoError(t, err)
	assert.False(t, ok, "the refused write is nowhere")
}

// TestFailedSyncReopensTheDatabase: when the commit log cannot be written
// (here: its file descriptor made read-only under it), the held reply says
// its write may not be durable, and the host keeps serving; the object's
// next event, whether the object stayed live or was evicted meanwhile (its
// database parked), runs on the database opened anew instead of failing
// too.
func TestFailedSyncReopensTheDatabase(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "[durable_objects]\nmax_live = 1\nidle_timeout = \"10m\"\n")
	o := w.Objects()
	w.mustCall(t, "STORE", "s0", "Put", map[string]string{"key": "old", "value": "1"})
	failSync := func() {
		t.Helper()
		breakCommitLog(t, dir)
		code, body := w.call(t, "STORE", "s0", "Put", map[string]string{"key": "unsure", "value": "2"})
		assert.Equal(t, 500, code)
		assert.Contains(t, body, "storage commit failed: syncing the commit to disk failed: its writes may be lost")
		assert.NotContains(t, body, dir, "the reply names the host's files")
	}

	failSync()
	// The write the client was told may be lost landed in the file (SQLite
	// committed it; the commit log could not be written): the log names
	// the file, as it names one that cannot be opened, so that an operator
	// can look. It named only the class and id.
	file := onlyObjectDatabase(t, dir)
	assert.Regexp(t, `level=ERROR msg="storage commit failed" class=Store id=[0-9a-f]{64} file=`+regexp.QuoteMeta(file)+` err="syncing the commit to disk failed: its writes may be lost: `, w.logs.String())
	assert.Equal(t, `"2"`, w.mustCall(t, "STORE", "s0", "Get", "unsure"), "the write landed")
	w.mustCall(t, "STORE", "s0", "Put", map[string]string{"key": "live", "value": "3"})

	failSync()
	w.mustCall(t, "STORE", "s1", "Put", map[string]string{"key": "k", "value": "v"}) // evicts s0: max_live is 1
	require.Eventually(t, func() bool { return o.ParkedDatabases() == 1 }, 5*time.Second, 20*time.Millisecond,
		"s0 parks its database")
	w.mustCall(t, "STORE", "s0", "Put", map[string]string{"key": "parked", "value": "4"})
	assert.Contains(t, w.logs.String(), "an evicted object's last commits could not be made durable; opening its database again")
	for k, v := range map[string]string{"old": "1", "live": "3", "parked": "4"} {
		assert.Equal(t, fmt.Sprintf("%q", v), w.mustCall(t, "STORE", "s0", "Get", k))
	}
}

// breakCommitLog makes the next write of the commit log of the host with
// data directory dir fail: the descriptor of its segment is made one that
// cannot be written. The log goes on in a new segment after.
func breakCommitLog(t *testing.T, dir string) {
	t.Helper()
	logDir := filepath.Join(dir, "objects", "commit-log") + "/"
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || !strings.HasPrefix(target, logDir) || !strings.HasSuffix(target, ".log") {
			continue
		}
		readOnly, err := os.Open(os.DevNull)
		require.NoError(t, err)
		defer readOnly.Close()
		var fd int
		_, err = fmt.Sscan(e.Name(), &fd)
		require.NoError(t, err)
		require.NoError(t, unix.Dup3(int(readOnly.Fd()), fd, unix.O_CLOEXEC))
		return
	}
	t.Fatalf("no open segment of the commit log in %s", logDir)
}

// onlyObjectDatabase is the database file of the one object that stored
// something under dataDir.
func onlyObjectDatabase(t *testing.T, dataDir string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, "objects", "*", "*.sqlite"))
	require.NoError(t, err)
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "alarms.sqlite" })
	require.Len(t, files, 1)
	return files[0]
}

// TestResponsesWithoutATypeAreSniffed checks the Content-Type the host
// sniffs for a response whose head has none: a client gets it, and so does
// a Worker reading an object's response.
func TestResponsesWithoutATypeAreSniffed(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	resp, err := http.Get(w.url + "/alone")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
	code, body := get(t, w.url+"/read/STORE/sniffed/page")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `type="text/plain; charset=utf-8"`)
}

// TestCallsRacingEvictionKeepEveryWrite: calls from many clients to a few
// objects that are evicted all the time (max_live below the objects in
// use, an idle timeout of milliseconds) race a call delivered at once to
// an idle object with its eviction. Every write acknowledged is read back
// at once and at the end, and no call fails.
func TestCallsRacingEvictionKeepEveryWrite(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[durable_objects]\nmax_live = 2\nidle_timeout = \"3ms\"\n")
	names := []string{"e0", "e1", "e2", "e3", "e4"}
	const clients = 8
	written := make([][]string, clients)
	var wg sync.WaitGroup
	end := time.Now().Add(2 * time.Second)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				name, key := names[(c+n)%len(names)], fmt.Sprintf("c%d-%d", c, n)
				if code, body := w.call(t, "STORE", name, "Put", map[string]string{"key": key, "value": name}); code != 200 {
					t.Errorf("Put %s on %s: %d %s", key, name, code, body)
					return
				}
				written[c] = append(written[c], key)
				if code, body := w.call(t, "STORE", name, "Get", key); code != 200 || body != `"`+name+`"` {
					t.Errorf("Get %s on %s just after its Put: %d %s", key, name, code, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	want := map[string]map[string]string{}
	for c, keys := range written {
		total += len(keys)
		for n, key := range keys {
			name := names[(c+n)%len(names)]
			if want[name] == nil {
				want[name] = map[string]string{}
			}
			want[name][key] = name
		}
	}
	for name, kv := range want {
		got := map[string]string{}
		for keys := range slices.Chunk(slices.Collect(maps.Keys(kv)), 128) { // a batch's limit
			require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "STORE", name, "GetMany", keys)), &got))
		}
		assert.Equal(t, kv, got, name)
	}
	t.Logf("%d writes", total)
	assert.Greater(t, total, 100, "too few calls to race anything")
}
