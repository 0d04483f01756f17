package host

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
)

// Attacks on the guest runtime by a hostile plugin: each must end in a
// clear error for the one event while the host keeps serving.

// endlessSQL never finishes on its own: it counts an infinite recursive
// table.
const endlessSQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"

func TestEndlessSQLEndsAtTheEventDeadline(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"2s\"\ninstances = 1\n")
	w.mustCall(t, "STORE", "bystander", "Put", map[string]string{"key": "k", "value": "v"})
	start := time.Now()
	code, body := w.call(t, "STORE", "spinner", "SQL", []any{endlessSQL})
	assert.Less(t, time.Since(start), 10*time.Second, "the statement stops at the event's deadline")
	assert.Equal(t, http.StatusGatewayTimeout, code, body)
	assert.Contains(t, body, "exceeded its time limit")
	start = time.Now()
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "bystander", "Get", "k"), "the instance serves on")
	assert.Less(t, time.Since(start), 2*time.Second)
}

// heapAfterGC is the host's live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestDeclarationFloodsDoNotGrowTheHost(t *testing.T) {
	w := startWorker(t, "")
	before := heapAfterGC()
	code, body := get(t, w.url+"/declflood?n=300")
	assert.Equal(t, 200, code)
	assert.Equal(t, "0 0", body, "declarations after serve are accepted and have no effect")
	grown := int64(heapAfterGC()) - int64(before)
	assert.Less(t, grown, int64(64<<20), "300 register_class and use_binding calls of 1 MiB each after serve kept %d MiB in the host", grown>>20)
	w.assertServing(t)
}

func TestDeclarationsBeforeServeAreBounded(t *testing.T) {
	in := &instance{}
	require.NoError(t, in.declare(&in.classes, "classes", []byte("A")))
	require.NoError(t, in.declare(&in.classes, "classes", []byte("A")))
	assert.Equal(t, []string{"A"}, in.classes, "a repeated name is kept once")
	err := in.declare(&in.classes, "classes", make([]byte, maxDeclarationSize+1))
	assert.ErrorIs(t, err, abi.StatusTooLarge)
	assert.EqualError(t, err, "TOOLARGE: name of 1025 bytes, the limit is 1024")
	for i := len(in.classes); i < maxDeclarations; i++ {
		require.NoError(t, in.declare(&in.classes, "classes", []byte(strconv.Itoa(i))))
	}
	assert.EqualError(t, in.declare(&in.classes, "classes", []byte("one more")), "TOOLARGE: 1024 classes declared, the limit is 1024")
	in.serving = true
	assert.NoError(t, in.declare(&in.classes, "classes", []byte("after serve")))
	assert.Len(t, in.classes, maxDeclarations)
}

// TestObjectCallingItselfIsRefused: the call would wait for an event
// queued behind its own until the deadline; it is refused at once.
func TestObjectCallingItselfIsRefused(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	start := time.Now()
	code, body := w.call(t, "STORE", "narcissus", "CallSelf", "narcissus")
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, http.StatusInternalServerError, code)
	assert.Regexp(t, `^call CallSelf: call Events: Store#[0-9a-f]{8} called itself: an object's events run one at a time, so the call would wait for this one to end; call the method directly$`, body)
	assert.Equal(t, "0", w.mustCall(t, "STORE", "other", "CallSelf", "narcissus"), "the object serves on")
	w.mustCall(t, "STORE", "narcissus", "Events", nil)
}

// TestObjectCallCycleIsRefused: a calls b, which calls a (or through c):
// a's event waits for b's, b's call for a's event to end. The call closing
// the cycle is refused at once, naming it; each object serves on, and a
// chain without a cycle is served. With several instances and with one
// (where the calls run inline).
func TestObjectCallCycleIsRefused(t *testing.T) {
	for _, limits := range []string{"instances = 4\n", "instances = 1\n"} { // one instance: the calls run inline
		w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"10s\"\n"+limits)
		store := map[string]string{}
		for _, name := range []string{"a", "b", "c"} {
			code, id := get(t, w.url+"/store-id/"+name)
			require.Equal(t, 200, code, id)
			store[name] = "Store#" + id[:8]
		}
		for _, tc := range []struct {
			chain []string
			cycle []string // the calls' path, from the object called again
		}{
			{[]string{"b", "a"}, []string{"a", "b", "a"}},
			{[]string{"b", "c", "a"}, []string{"a", "b", "c", "a"}},
			{[]string{"b", "c", "b"}, []string{"b", "c", "b"}},
		} {
			start := time.Now()
			code, body := w.call(t, "STORE", "a", "Chain", tc.chain)
			assert.Less(t, time.Since(start), 5*time.Second, "%s: refused at once, not at the time limit", limits)
			assert.Equal(t, http.StatusInternalServerError, code, "%s: %s", limits, body)
			var path []string
			for _, name := range tc.cycle {
				path = append(path, store[name])
			}
			last, again := path[len(path)-2], path[0]
			assert.True(t, strings.HasSuffix(body, ": "+last+" called "+again+", whose event waits for this one ("+strings.Join(path, " -> ")+
				"): an object's events run one at a time, so each would wait for the other until the time limit"), "%s: %s", limits, body)
		}
		assert.Equal(t, "0", w.mustCall(t, "STORE", "a", "Chain", []string{"b", "c"}), "%s: a chain without a cycle", limits)
		assert.Equal(t, "0", w.mustCall(t, "STORE", "a", "Chain", []string{"c"}), "%s: each object serves on", limits)

		// The same through fetches (stub.Fetch): a fetches from b, which
		// fetches from a.
		start := time.Now()
		code, body := get(t, w.url+"/fetch/STORE/a/chain/b/a/")
		assert.Less(t, time.Since(start), 5*time.Second, "%s: refused at once, not at the time limit", limits)
		assert.Equal(t, http.StatusBadGateway, code, "%s: %s", limits, body)
		assert.Contains(t, body, store["b"]+" called "+store["a"]+", whose event waits for this one ("+store["a"]+" -> "+store["b"]+" -> "+store["a"]+")", limits)
		code, body = get(t, w.url+"/fetch/STORE/a/chain/b/c/")
		assert.Equal(t, 200, code, "%s: %s", limits, body)
	}
}

// stalledClient pipelines n requests for path on one connection with a tiny
// receive buffer and never reads the answers.
func stalledClient(t *testing.T, addr, path string, n int) {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetReadBuffer(1024))
	for range n {
		_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		require.NoError(t, err)
	}
}

func TestStalledClientDoesNotHoldTheInstance(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"2s\"\ninstances = 1\n")
	stalledClient(t, strings.TrimPrefix(w.url, "http://"), "/bytes?n=65536", 64)
	time.Sleep(time.Second) // the stalled answers fill the socket
	start := time.Now()
	code, body := get(t, w.url+"/hello?name=x")
	assert.Equal(t, 200, code)
	assert.Equal(t, "hello x", body)
	assert.Less(t, time.Since(start), 5*time.Second, "a client that does not read holds its own requests only")
}

// TestKeptWaitDescriptors: the SDK's waits through kept descriptors
// (wait_rebind) with 200 goroutines waiting at once, half of them timing
// out; a deadline followed by a wait without one; handles closed under
// their waiters; a wait refused for a closed handle; then 20,000 waits in a
// row. Each wait ends as it should, and the guest keeps at most 64
// descriptors.
func TestKeptWaitDescriptors(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"2m\"\n")
	code, body := get(t, w.url+"/waitstorm?n=200&waits=20000")
	require.Equal(t, 200, code, body)
	assert.Equal(t, `storm: fired=100 timed-out=100 failed=0 kept=true
after a deadline: ready=1 err=<nil> waited=true
closed under the wait: not-open=true
closed under the wait: not-open=true
closed under the wait: not-open=true
wait on a closed handle: not-open=true
then a wait: ready=1 err=<nil>
20000 waits: kept=true
`, body)
}

func TestDescriptorAndLifecycleMisuse(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/fdabuse")
	require.Equal(t, 200, code, body)
	assert.Equal(t, `close event fd: Bad file number
read event fd 1 byte: Invalid argument
wait_fd 0 handles: 0
close it: <nil>
close it again: Bad file number
read closed wait fd: Bad file number
wait_fd 1025 handles: 12
wait_fd on the event: 1
timer max: 0
wait fds opened: 5000
wait fds ready: 0
wait_rebind to a due timer: 0
read the rebound fd: <nil>
wait_rebind to the event: 1
wait_rebind 1025 handles: 12
wait_rebind bad pointer: 6
wait_rebind a closed fd: 1
wait_rebind the event fd: 1
close timer: 0
serve again: 2
event_done 0: 2
close the event: 1
wait_fd bad pointer: 6
`, body, "BADF, INVAL, TOOLARGE and FAULT where the ABI says; 5000 wait descriptors on an unfired timer are not ready")
	w.assertServing(t)
}

// TestRawImportFuzz: a guest calls every wharf_v2 import thousands of
// times with hostile arguments (pointers and lengths out of range or near
// 2^32, made-up, closed and foreign handles, the previous event's handle),
// from Worker events and from objects' events. Every call gets a status:
// no import takes long (the event ends within its timeout), no instance
// ends, nothing panics, and the host serves on.
func TestRawImportFuzz(t *testing.T) {
	w := serveGuest(t, "testdata/guests/abifuzz", "name = \"abifuzz\"\nmain = \"x.wasm\"\n[limits]\ninstances = 2\ntimeout = \"5s\"\n"+
		"[[durable_objects.bindings]]\nname = \"FUZZ\"\nclass_name = \"Fuzz\"\n", t.TempDir())
	for seed := range 25 {
		for _, path := range []string{"/fuzz", "/object"} {
			code, body := get(t, fmt.Sprintf("%s%s?seed=%d", w.url, path, seed))
			t.Logf("%s seed %d: %d %.200s", path, seed, code, body)
			assert.NotEqual(t, http.StatusGatewayTimeout, code, "%s seed %d", path, seed)
			code, body = get(t, w.url+"/hello")
			require.Equal(t, 200, code, "after %s seed %d: %s", path, seed, body)
		}
	}
	assert.Equal(t, uint64(0), w.Instances().Ended, "an instance ended")
	logs := w.logs.String()
	assert.False(t, strings.Contains(logs, "panic"), "something panicked: see the host log")
	assert.False(t, strings.Contains(logs, "slow import"), "an import took over 500ms: see the host log")
}

// TestHugeNamesCostTheHostLittle: a binding name of 64 MiB (object_id),
// and an unknown option name as long (storage_list), are refused at once
// with a short message: quoting them into the error, as the host did, took
// seconds under the instance's lock and a string four times their size,
// kept as the event's last error and logged whole.
func TestHugeNamesCostTheHostLittle(t *testing.T) {
	w := serveGuest(t, "testdata/guests/abifuzz", "name = \"abifuzz\"\nmain = \"x.wasm\"\n[limits]\ninstances = 1\nmemory_mib = 512\n"+
		"[[durable_objects.bindings]]\nname = \"FUZZ\"\nclass_name = \"Fuzz\"\n", t.TempDir())
	code, body := get(t, w.url+"/bigname?mib=64")
	require.Equal(t, 200, code, body)
	assert.Regexp(t, `^object_id: status=9 fast=true last_error_len=\d{2,3}\n$`, body)
	code, body = get(t, w.url+"/bigoption?mib=64")
	require.Equal(t, 200, code, body)
	assert.Regexp(t, `^storage_list: status=2 fast=true last_error_len=\d{2,3} took=\S+$`, body, "an unknown option name of 64 MiB")
	code, body = get(t, w.url+"/hello")
	assert.Equal(t, 200, code, body)
}
