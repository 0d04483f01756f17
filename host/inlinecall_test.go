package host

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Calls from a Worker to an object that is live and idle on the Worker's
// own instance run on the calling goroutine (object_call's record_out).
// With one instance, every call to an object after its first is such a
// call.

const oneInstance = "[limits]\ninstances = 1\n"

// TestInlineCallHonoursTheCallersDeadline: a call bounded by a context
// deadline returns when the deadline passes, though the object's method
// runs on; the object answers its next calls.
func TestInlineCallHonoursTheCallersDeadline(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "slow", "Put", map[string]string{"key": "k", "value": "v"}) // live and idle now
	start := time.Now()
	code, body := w.call(t, "STORE", "slow", "Sleep?timeout_ms=200", 3000)
	took := time.Since(start)
	assert.Equal(t, 408, code, body)
	assert.Less(t, took, 2*time.Second, "the caller waited for the method, not for its deadline")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "slow", "Get", "k"))
	w.mustCall(t, "STORE", "slow", "Put", map[string]string{"key": "k", "value": "w"})
	assert.Equal(t, `"w"`, w.mustCall(t, "STORE", "slow", "Get", "k"))
}

// TestInlineCallWhoseClientLeaves: the client of a Worker request leaves
// while its inline call sleeps past the request's time limit; the host
// keeps serving and the object answers its next calls.
func TestInlineCallWhoseClientLeaves(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 1\ntimeout = \"500ms\"\n")
	w.mustCall(t, "STORE", "left", "Put", map[string]string{"key": "k", "value": "v"})
	for range 3 {
		c, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
		require.NoError(t, err)
		_, err = fmt.Fprintf(c, "POST /call/STORE/left/Sleep HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n2000")
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond) // the call is running
		c.Close()
	}
	// The request's time limit passes while the method sleeps.
	code, body := w.call(t, "STORE", "left", "Sleep", 2000)
	assert.Equal(t, 504, code, body)
	w.assertObjectServing(t, "left")
}

// assertObjectServing checks that the host answers the Worker and that
// the object named name reads and writes.
func (w *testWorker) assertObjectServing(t *testing.T, name string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := w.call(t, "STORE", name, "Put", map[string]string{"key": "after", "value": "yes"})
		assert.Equal(c, 200, code, body)
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, `"yes"`, w.mustCall(t, "STORE", name, "Get", "after"))
	code, body := get(t, w.url+"/alone")
	assert.Equal(t, 200, code, body)
}

// TestInlineCallFailures: an inline call whose method panics after a
// write, or returns an error, fails for its caller with the object's
// error; the panic's write is undone and the object works afterwards.
func TestInlineCallFailures(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "f", "Put", map[string]string{"key": "k", "value": "v"})
	code, body := w.call(t, "STORE", "f", "PutThenPanic", "k")
	assert.Equal(t, 500, code, body)
	code, body = w.call(t, "STORE", "f", "Get", "missing")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `no key "missing"`)
	code, body = w.call(t, "STORE", "f", "NotYet", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "call NotYet: not yet: ", "an error of status AGAIN is the method's failure, not a call still running")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "f", "Get", "k"), "the panicking event's write was undone")
	code, body = w.call(t, "STORE", "f", "TxFail", "t")
	assert.Equal(t, 200, code, body)
	w.mustCall(t, "STORE", "f", "Put", map[string]string{"key": "k", "value": "w"})
	assert.Equal(t, `"w"`, w.mustCall(t, "STORE", "f", "Get", "k"))
}

// TestNestedInlineCalls: object a calls object b on the same instance,
// both idle (two inline calls deep); then a calls b while b is busy, which
// waits for b's event.
func TestNestedInlineCalls(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "b", "Put", map[string]string{"key": "n", "value": "42"})
	w.mustCall(t, "STORE", "a", "Put", map[string]string{"key": "x", "value": "y"})
	for range 20 {
		assert.Equal(t, "1", w.mustCall(t, "STORE", "a", "CallSelf", "b"), "b's Put is its one counted event")
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.mustCall(t, "STORE", "b", "Sleep", 500) })
	time.Sleep(100 * time.Millisecond) // b is busy
	start := time.Now()
	assert.Equal(t, "1", w.mustCall(t, "STORE", "a", "CallSelf", "b"))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "a's call waited for b's event")
	wg.Wait()
	assert.Equal(t, `"y"`, w.mustCall(t, "STORE", "a", "Get", "x"))
}

// TestInlineCallWritesAreDurable: writes made by inline calls are durable
// when their callers get the answers, and survive a restart.
func TestInlineCallWritesAreDurable(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, oneInstance)
	w.mustCall(t, "STORE", "d", "Put", map[string]string{"key": "k0", "value": "v0"})
	for i := 1; i <= 20; i++ {
		w.mustCall(t, "STORE", "d", "Put", map[string]string{"key": fmt.Sprint("k", i), "value": fmt.Sprint("v", i)})
	}
	w.stop()
	w2 := startObjects(t, dir, oneInstance)
	for i := 0; i <= 20; i++ {
		assert.Equal(t, fmt.Sprintf(`"v%d"`, i), w2.mustCall(t, "STORE", "d", "Get", fmt.Sprint("k", i)))
	}
}

// TestManyCallersOfOneObject: concurrent callers of one object, some of
// whose calls run inline: every call runs exactly once, one at a time.
func TestManyCallersOfOneObject(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "busy", "Put", map[string]string{"key": "k", "value": "v"})
	const n = 400
	parallel(t, 16, n, func(i int) error {
		code, body := w.call(t, "STORE", "busy", "Put", map[string]string{"key": fmt.Sprint("k", i), "value": fmt.Sprint(i)})
		if code != 200 {
			return fmt.Errorf("put %d: %d %s", i, code, body)
		}
		return nil
	})
	assert.Equal(t, fmt.Sprint(n+1), w.mustCall(t, "STORE", "busy", "Events", nil), "each Put ran once")
	for i := range n {
		require.Equal(t, fmt.Sprintf(`"%d"`, i), w.mustCall(t, "STORE", "busy", "Get", fmt.Sprint("k", i)))
	}
}

// TestMixedCallersOfOneObject: concurrent callers on two instances mix
// reads, which end on the object's instance when delivered inline, with
// writes, which wake the object's goroutine: every call runs exactly once
// and every write is read back.
func TestMixedCallersOfOneObject(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	w.mustCall(t, "STORE", "mixed", "Put", map[string]string{"key": "k", "value": "v"})
	const n = 600
	parallel(t, 16, n, func(i int) error {
		if i%3 == 0 {
			code, body := w.call(t, "STORE", "mixed", "Put", map[string]string{"key": fmt.Sprint("k", i), "value": fmt.Sprint(i)})
			if code != 200 {
				return fmt.Errorf("put %d: %d %s", i, code, body)
			}
			return nil
		}
		code, body := w.call(t, "STORE", "mixed", "Get", "k")
		if code != 200 || body != `"v"` {
			return fmt.Errorf("get %d: %d %s", i, code, body)
		}
		return nil
	})
	assert.Equal(t, fmt.Sprint(1+n), w.mustCall(t, "STORE", "mixed", "Events", nil), "each Get and Put ran once")
	for i := 0; i < n; i += 3 {
		require.Equal(t, fmt.Sprintf(`"%d"`, i), w.mustCall(t, "STORE", "mixed", "Get", fmt.Sprint("k", i)))
	}
}

// TestInlineCallsLeaveNothingBehind: thousands of inline calls (plain,
// bounded by a deadline, failing, nested) leave the instance's handles,
// wait descriptors and events, and the host's goroutines and descriptors,
// where they were.
func TestInlineCallsLeaveNothingBehind(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "other", "Put", map[string]string{"key": "k", "value": "v"})
	calls := func(n int) {
		parallel(t, 4, n, func(i int) error {
			var code int
			var body string
			switch i % 4 {
			case 0:
				code, body = w.call(t, "STORE", "leak", "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
			case 1:
				code, body = w.call(t, "STORE", "leak", "Events?timeout_ms=5000", nil)
			case 2:
				if code, body = w.call(t, "STORE", "leak", "Get", "missing"); code == 500 {
					code = 200
				}
			default:
				code, body = w.call(t, "STORE", "leak", "CallSelf", "other")
			}
			if code != 200 {
				return fmt.Errorf("call %d: %d %s", i, code, body)
			}
			return nil
		})
	}
	calls(400)
	in := w.instanceOf(t, "STORE", "leak")
	state := func() (handles, waits, events int) {
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.table.Live(), len(in.waits), int(in.events.Load())
	}
	http.DefaultClient.CloseIdleConnections()
	handles, waits, _ := state()
	fds, goroutines := openFDs(t), runtime.NumGoroutine()
	calls(2000)
	http.DefaultClient.CloseIdleConnections()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		h, wt, ev := state()
		assert.LessOrEqual(c, h, handles+4, "handles")
		assert.LessOrEqual(c, wt, max(waits, 64), "wait descriptors")
		assert.Equal(c, 0, ev, "events")
		assert.LessOrEqual(c, runtime.NumGoroutine(), goroutines+8, "goroutines")
	}, 10*time.Second, 50*time.Millisecond)
	assert.LessOrEqual(t, openFDs(t), fds+8, "descriptors grew")
}

// TestInlineCallsKeepTheObjectLive: calls that run and end inline, without
// waking the object's goroutine, keep the object live: its idle timeout
// counts from the last of them, and it is evicted once they stop.
func TestInlineCallsKeepTheObjectLive(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance+"[durable_objects]\nidle_timeout = \"1s\"\n")
	w.mustCall(t, "STORE", "kept", "Put", map[string]string{"key": "k", "value": "v"})
	// Events counts the Puts and Gets this value of the object served: it
	// would start again from 0 in a value rebuilt after an eviction.
	for n := 2; n <= 13; n++ {
		require.Equal(t, `"v"`, w.mustCall(t, "STORE", "kept", "Get", "k"))
		require.Equal(t, fmt.Sprint(n), w.mustCall(t, "STORE", "kept", "Events", nil), "the object was evicted while called")
		time.Sleep(200 * time.Millisecond)
	}
	ns, err := w.Objects().Namespace("STORE")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !w.Objects().IsLive(ns, ns.IDFromName("kept")) }, 5*time.Second, 20*time.Millisecond, "evicted once idle")
	assert.Equal(t, "0", w.mustCall(t, "STORE", "kept", "Events", nil), "a new value")
}

// TestInlineCallToAnInstanceThatEnds: a Worker request on one instance
// calls an idle object on the other, which traps: the call fails at once
// with the object's event, not at the time limit.
func TestInlineCallToAnInstanceThatEnds(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\ntimeout = \"20s\"\n")
	// Three objects: two on one instance, where Worker requests go while
	// both are idle (requestRank), one on the other.
	names := []string{"x0", "x1", "x2"}
	for _, name := range names {
		w.mustCall(t, "STORE", name, "Put", map[string]string{"key": "k", "value": "v"})
	}
	count := map[*instance]int{}
	for _, name := range names {
		count[w.instanceOf(t, "STORE", name)]++
	}
	var lone string
	for _, name := range names {
		if count[w.instanceOf(t, "STORE", name)] == 1 {
			lone = name
		}
	}
	require.NotEmpty(t, lone, "objects are spread over both instances")
	start := time.Now()
	code, body := w.call(t, "STORE", lone, "PutThenTrap", "b")
	assert.Equal(t, 500, code, body)
	assert.Contains(t, body, "the object's event failed (request id ", "the Worker's own instance lives")
	assert.Less(t, time.Since(start), 5*time.Second, "the call failed as the instance ended, not at the time limit")
	w.assertObjectServing(t, lone)
}

// TestInlineCallsUnderEvictionPressure: many clients mix read-only calls
// (which end inline, on the callee's instance) with writes to a few
// objects spread over two instances, while max_live, the cap on open
// databases and a short idle timeout evict objects and close their
// databases all along: every call is answered once, every write is
// durable when answered, and the host keeps within its limits.
func TestInlineCallsUnderEvictionPressure(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n[durable_objects]\nmax_live = 3\nidle_timeout = \"50ms\"\n")
	o := w.Objects()
	o.SetMaxOpenDatabases(2)
	const objects, n = 6, 1200
	name := func(i int) string { return fmt.Sprint("ev", i%objects) }
	for i := range objects {
		w.mustCall(t, "STORE", name(i), "Put", map[string]string{"key": "k", "value": name(i)})
	}
	parallel(t, 12, n, func(i int) error {
		var code int
		var body string
		switch i % 4 {
		case 0:
			code, body = w.call(t, "STORE", name(i), "Put", map[string]string{"key": fmt.Sprint("k", i), "value": fmt.Sprint(i)})
		case 3:
			if i%12 == 3 {
				time.Sleep(60 * time.Millisecond) // past the idle timeout
			}
			fallthrough
		default:
			code, body = w.call(t, "STORE", name(i), "Get", "k")
			if code == 200 && body != fmt.Sprintf("%q", name(i)) {
				return fmt.Errorf("get %d from %s: %s", i, name(i), body)
			}
		}
		if code != 200 {
			return fmt.Errorf("call %d to %s: %d %s", i, name(i), code, body)
		}
		return nil
	})
	require.Eventually(t, func() bool { return o.LiveObjects() == 0 }, 10*time.Second, 20*time.Millisecond, "idle objects are evicted")
	for i := 0; i < n; i += 4 {
		require.Equal(t, fmt.Sprintf("%q", fmt.Sprint(i)), w.mustCall(t, "STORE", name(i), "Get", fmt.Sprint("k", i)), "put %d", i)
	}
}

// TestCloseDuringInlineCalls: the host shuts down while clients keep
// calling objects on both instances, most with read-only calls that end
// inline: Close returns promptly, and every write answered as done is in
// storage after a restart.
func TestCloseDuringInlineCalls(t *testing.T) {
	dir := t.TempDir()
	w := startObjects(t, dir, "[limits]\ninstances = 2\n")
	name := func(i int) string { return fmt.Sprint("cl", i%4) }
	for i := range 4 {
		w.mustCall(t, "STORE", name(i), "Put", map[string]string{"key": "k", "value": "v"})
	}
	var mu sync.Mutex
	var written []int
	stop := callUntilStopped(8, func(c, i int) bool {
		n := 8*i + c
		method, body := "Get", `"k"`
		if n%5 == 0 {
			method, body = "Put", fmt.Sprintf(`{"key":"k%d","value":"%d"}`, n, n)
		}
		resp, err := http.Post(fmt.Sprintf("%s/call/STORE/%s/%s", w.url, name(n), method), "application/json", strings.NewReader(body))
		if err != nil {
			return false // the server is gone
		}
		resp.Body.Close()
		if resp.StatusCode == 200 && method == "Put" {
			mu.Lock()
			written = append(written, n)
			mu.Unlock()
		}
		return true
	})
	time.Sleep(300 * time.Millisecond)
	w.stopWithin(t, 20*time.Second, "Close hangs while inline calls are under way")
	stop()
	require.NotEmpty(t, written, "writes ran before the shutdown")
	w2 := startObjects(t, dir, "[limits]\ninstances = 2\n")
	for _, n := range written {
		assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(n)), w2.mustCall(t, "STORE", name(n), "Get", fmt.Sprint("k", n)), "put %d", n)
	}
}

// TestInlineCallAbandonedAsItsCallerGivesUp: an inline call whose caller
// stops waiting (its deadline) is abandoned on the object's instance then,
// though nothing else wakes the object: the event's handles are released
// at once, not when the method returns.
func TestInlineCallAbandonedAsItsCallerGivesUp(t *testing.T) {
	w := startObjects(t, t.TempDir(), oneInstance)
	w.mustCall(t, "STORE", "gave-up", "Put", map[string]string{"key": "k", "value": "v"}) // live and idle now
	in := w.instanceOf(t, "STORE", "gave-up")
	events := func() int { return int(in.events.Load()) }
	code, body := w.call(t, "STORE", "gave-up", "Sleep?timeout_ms=200", 4000)
	require.Equal(t, 408, code, body)
	assert.Eventually(t, func() bool { return events() == 0 }, 2*time.Second, 10*time.Millisecond,
		"the method's event is abandoned as its caller gives up")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "gave-up", "Get", "k"))
}
