package host

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/internal/testutil"
)

// Guest runtime v2: long-running instances hosting many objects.

// TestGoroutineDeliversToALaterEvent: a goroutine an event started keeps
// running after it and hands its result to a later event of the object.
func TestGoroutineDeliversToALaterEvent(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "later", "Later", "from the past")
	assert.Equal(t, `"from the past"`, w.mustCall(t, "STORE", "later", "Received", nil))
}

// TestTrapEndsOneInstanceOnly: 100 objects live on two instances; an
// object's trap ends its instance alone. Every object answers afterwards
// with its storage, those on the other instance without being rebuilt.
func TestTrapEndsOneInstanceOnly(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	for i := range 100 {
		w.mustCall(t, "STORE", fmt.Sprint("o", i), "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
	}
	require.Equal(t, 100, w.Instances().Objects)
	before := w.Instances()
	code, body := w.call(t, "STORE", "o0", "PutThenTrap", "x")
	assert.Equal(t, 500, code)
	// The calling Worker event may share the trapping instance, and fail with it.
	assert.Regexp(t, `(the object's event|worker) failed \(request id `, body)
	require.Eventually(t, func() bool { return w.Instances().Ended == before.Ended+1 }, 5*time.Second, 10*time.Millisecond)
	rebuilt := 0
	for i := range 100 {
		assert.Equal(t, fmt.Sprintf(`"%d"`, i), w.mustCall(t, "STORE", fmt.Sprint("o", i), "Get", "k"))
		if w.mustCall(t, "STORE", fmt.Sprint("o", i), "Events", nil) == "1" { // a surviving value counted Put and Get
			rebuilt++
		}
	}
	assert.Equal(t, uint64(1), w.Instances().Ended-before.Ended, "only the trapping instance ended")
	assert.Greater(t, rebuilt, 0, "the trapped instance's objects came back from storage")
	assert.Less(t, rebuilt, 100, "the other instance's objects were untouched")
	assert.Contains(t, w.logs.String(), "plugin instance ended; replacing it")
}

// TestSpinningEventStopsItsInstance: an event that computes without
// yielding is stopped after the CPU slice; other instances keep serving and
// the spinning one is replaced.
func TestSpinningEventStopsItsInstance(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\ncpu_slice = \"300ms\"\n")
	w.mustCall(t, "STORE", "a", "Put", map[string]string{"key": "k", "value": "v"})
	w.mustCall(t, "STORE", "b", "Put", map[string]string{"key": "k", "value": "v"})
	code, body := w.call(t, "STORE", "a", "Spin", nil)
	assert.Equal(t, 500, code, body)
	assert.Contains(t, w.logs.String(), "guest computed without yielding for longer than its CPU slice (300ms: [limits] cpu_slice, at most timeout)")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "b", "Get", "k"))
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "a", "Get", "k"), "the spinner's object comes back")
	require.Eventually(t, func() bool { return w.Instances().Live == 2 }, 10*time.Second, 10*time.Millisecond, "replaced")
}

// TestRequestGoesToTheObjectsInstance: with 2 idle instances, a Worker
// request goes to the one hosting the object, so its call stays on that
// instance; a request arriving meanwhile goes to the other, which serves
// fewer events, though it hosts fewer objects.
func TestRequestGoesToTheObjectsInstance(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	w.mustCall(t, "STORE", "a", "Put", map[string]string{"key": "k", "value": "v"})
	home := w.instanceOf(t, "STORE", "a")
	events := func() (onHome, elsewhere int) {
		set := w.sets.Load()
		set.mu.Lock()
		defer set.mu.Unlock()
		require.Len(t, set.instances, 2)
		for _, in := range set.instances {
			in.mu.Lock()
			if in == home {
				onHome = int(in.events.Load())
			} else {
				elsewhere = int(in.events.Load())
			}
			in.mu.Unlock()
		}
		return onHome, elsewhere
	}
	var wg sync.WaitGroup
	sleep := func(name string) {
		wg.Go(func() {
			code, body := w.call(t, "STORE", name, "Sleep", 1500)
			assert.Equal(t, 200, code, body)
		})
	}
	sleep("a")
	require.Eventually(t, func() bool { h, e := events(); return h == 2 && e == 0 }, 5*time.Second, time.Millisecond,
		"the request and its call run on the object's instance")
	sleep("b") // a new object, placed with the request on the instance serving fewer events
	require.Eventually(t, func() bool { h, e := events(); return h == 2 && e == 2 }, 5*time.Second, time.Millisecond,
		"the second request goes to the instance serving fewer events")
	wg.Wait()
}

// TestCPUSliceIsCappedAtTheTimeout: a cpu_slice longer than the timeout
// is logged as a warning at load, a spinning event is stopped after the
// timeout's worth, and the host keeps serving.
func TestCPUSliceIsCappedAtTheTimeout(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\ntimeout = \"1s\"\ncpu_slice = \"1m\"\n")
	line := strings.Count(objectsManifest, "\n") + 4
	assert.Contains(t, w.logs.String(), fmt.Sprintf(`level=WARN msg="%d:13: limits.cpu_slice: 1m0s is longer than limits.timeout, which caps it: an instance computing 1s without calling the host is stopped" plugin=objects`, line))
	w.mustCall(t, "STORE", "b", "Put", map[string]string{"key": "k", "value": "v"})
	code, body := w.call(t, "STORE", "a", "Spin", nil)
	assert.Contains(t, []int{504, 500}, code, "the event's timeout or the slice, both 1s, ends it: %s", body)
	assert.Eventually(t, func() bool {
		return strings.Contains(w.logs.String(), "guest computed without yielding for longer than its CPU slice (1s: [limits] cpu_slice, at most timeout)")
	}, 10*time.Second, 10*time.Millisecond, "the spinning instance is stopped after 1s, not 1m")
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "b", "Get", "k"))
}

// TestInstanceThatNeverServesIsReplacedAfterGrowingPauses: instances
// that end on their own before any event (here a goroutine spins past the
// CPU slice as soon as main calls serve) are replaced after a pause that
// doubles each time, not at once in a loop; a request meanwhile is told
// why none is up, and closing the host does not wait out a pause.
func TestInstanceThatNeverServesIsReplacedAfterGrowingPauses(t *testing.T) {
	w := serveGuest(t, "testdata/guests/spinner", "name = \"spinner\"\nmain = \"x.wasm\"\n[limits]\ninstances = 1\ntimeout = \"300ms\"\n", t.TempDir())
	require.Eventually(t, func() bool { return strings.Contains(w.logs.String(), "pause=1.6s in_a_row=5") }, 30*time.Second, 5*time.Millisecond,
		"the fifth instance in a row ended")
	logs := w.logs.String()
	for n, pause := range []string{"100ms", "200ms", "400ms", "800ms", "1.6s"} {
		assert.Contains(t, logs, fmt.Sprintf(`msg="plugin instance ended before it served anything; replacing it after a pause" plugin=spinner `+
			`err="guest computed without yielding for longer than its CPU slice (300ms: [limits] cpu_slice, at most timeout)" pause=%s in_a_row=%d`, pause, n+1))
	}
	assert.Equal(t, uint64(5), w.Instances().Started, "one instance per pause, none in between")
	code, body := get(t, w.url+"/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "worker unavailable: no plugin instance is up (the last one ended: guest computed without yielding for longer than its CPU slice "+
		"(300ms: [limits] cpu_slice, at most timeout)): the event did not end within 300ms\n", body)
	var wg sync.WaitGroup
	for range 10 { // within the second of the first one's line, and of the 1.6s pause
		wg.Go(func() {
			code, _ := get(t, w.url+"/")
			assert.Equal(t, http.StatusServiceUnavailable, code)
		})
	}
	wg.Wait()
	assert.Equal(t, 1, strings.Count(w.logs.String(), `msg="no instance available"`), "one line a second, not one per request")
	w.stopWithin(t, time.Second, "closing the host waited for the 1.6s pause")
	assert.Equal(t, uint64(5), w.Instances().Started, "nothing started after the close")
}

// TestInstanceThatEndsUnservedAfterAWhileIsReplacedAtOnce: an instance that
// ended without serving anything, but only after it had been in service a
// while (here unservedWithin is 50 ms; the spinner lasts its 300 ms
// slice), is not failing on its own: it is replaced at once, and the
// pauses do not grow.
func TestInstanceThatEndsUnservedAfterAWhileIsReplacedAtOnce(t *testing.T) {
	defer func(d time.Duration) { unservedWithin = d }(unservedWithin)
	unservedWithin = 50 * time.Millisecond
	w := serveGuest(t, "testdata/guests/spinner", "name = \"spinner\"\nmain = \"x.wasm\"\n[limits]\ninstances = 1\ntimeout = \"300ms\"\n", t.TempDir())
	require.Eventually(t, func() bool { return w.Instances().Ended >= 3 }, 30*time.Second, 5*time.Millisecond)
	w.stopWithin(t, 5*time.Second, "closing the host")
	assert.Contains(t, w.logs.String(), `msg="plugin instance ended; replacing it" plugin=spinner`)
	assert.NotContains(t, w.logs.String(), "ended before it served anything")
}

// TestTenThousandLiveObjects keeps 10,000 objects live in one host.
func TestTenThousandLiveObjects(t *testing.T) {
	const n = 10_000
	dir := t.TempDir()
	w := startObjects(t, dir, "[durable_objects]\nmax_live = 20000\nidle_timeout = \"10m\"\n")
	parallel(t, 32, n, func(i int) error {
		code, body := w.call(t, "STORE", fmt.Sprint("live", i), "Put", map[string]string{"key": "k", "value": fmt.Sprint(i)})
		if code != 200 {
			return fmt.Errorf("object %d: %d %s", i, code, body)
		}
		return nil
	})
	assert.Equal(t, n, w.Objects().LiveObjects())
	assert.Equal(t, n, w.Instances().Objects)
	for _, i := range []int{0, 4321, n - 1} {
		assert.Equal(t, fmt.Sprintf(`"%d"`, i), w.mustCall(t, "STORE", fmt.Sprint("live", i), "Get", "k"))
	}
	assert.Equal(t, uint64(0), w.Instances().Ended)
	assert.Eventually(t, func() bool { return openDatabaseFiles(t, dir) <= objects.MemoryOpenDatabases }, 10*time.Second, 100*time.Millisecond,
		"idle objects close their databases beyond the cap (%d open)", openDatabaseFiles(t, dir))
}

// TestBurstOfNewObjectsWithDisconnects: 32 clients create 1,000 objects
// and give up on half of them half-way; nothing panics, every later
// request is served, and the abandoned events are not logged as failures.
func TestBurstOfNewObjectsWithDisconnects(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	parallel(t, 32, 1000, func(i int) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if i%2 == 0 {
			time.AfterFunc(time.Duration(i%7)*time.Millisecond, cancel)
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/call/STORE/burst%d/Put", w.url, i),
			strings.NewReader(`{"key":"k","value":"v"}`))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return nil
	})
	for i := range 1000 {
		w.mustCall(t, "STORE", fmt.Sprint("burst", i), "Put", map[string]string{"key": "k", "value": "v"})
	}
	logs := w.logs.String()
	assert.NotContains(t, logs, "panic")
	assert.NotContains(t, logs, "TIMEOUT")
	assert.Equal(t, uint64(0), w.Instances().Ended, "no instance ended")
	// A caller that gives up is not the object's failure.
	assert.Contains(t, logs, "caller went away")
	assert.NotContains(t, logs, "object event failed")
}

// TestNoGrowthAfterManyEvents: 100,000 events (reads of 100 objects, so
// the disk's sync rate does not set the pace) leave no descriptors,
// goroutines or heap behind.
func TestNoGrowthAfterManyEvents(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	for i := range 100 {
		w.mustCall(t, "STORE", fmt.Sprint("g", i), "Put", map[string]string{"key": "k", "value": "v"})
	}
	round := func(n int) {
		parallel(t, 16, n, func(i int) error {
			code, body := w.call(t, "STORE", fmt.Sprint("g", i%100), "Get", "k")
			if code != 200 {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
	}
	round(2000) // warm: objects live, pools filled
	http.DefaultClient.CloseIdleConnections()
	// Guests' linear memory is Go heap under wazero and grows to the
	// guests' own steady state: it is counted apart.
	fds, goroutines, heap, guests := openFDs(t), runtime.NumGoroutine(), heapInUse(), w.guestMemory()
	round(eventsForGrowth)
	http.DefaultClient.CloseIdleConnections()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutines+8 }, 10*time.Second, 50*time.Millisecond,
		"goroutines grew from %d to %d", goroutines, runtime.NumGoroutine())
	assert.LessOrEqual(t, openFDs(t), fds+8, "descriptors grew")
	after, guestsAfter := heapInUse(), w.guestMemory()
	t.Logf("host heap in use: %d MiB before, %d MiB after; guests' memory %d MiB before, %d MiB after",
		heap>>20, after>>20, guests>>20, guestsAfter>>20)
	assert.Less(t, after-min(after, guestsAfter-guests), heap+32<<20, "host heap grew")
}

// parallel runs fn for 0..n-1 on workers goroutines and fails t on the
// first error.
func parallel(t *testing.T, workers, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, first)
}

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// eventsForGrowth is how many events TestNoGrowthAfterManyEvents sends.
var eventsForGrowth = 100_000

// guestMemory is the linear memory of the Worker's instances together.
func (w *testWorker) guestMemory() uint64 { return w.Instances().MemoryBytes }

// TestServeEarlyServesWhileTheOtherInstancesStart: with ServeEarly,
// NewWorker returns once one instance is up; the others start meanwhile
// and take work once up.
func TestServeEarlyServesWhileTheOtherInstancesStart(t *testing.T) {
	w := serveGuestConfig(t, "testdata/guests/testworker", "name = \"testworker\"\nmain = \"x.wasm\"\n[limits]\ninstances = 3\n",
		sharedDataDir, func(c *Config, _ *hostbackend.Options) { c.ServeEarly = true })
	assert.GreaterOrEqual(t, w.Instances().Live, 1)
	w.assertServing(t)
	require.Eventually(t, func() bool { return w.Instances().Live == 3 }, 30*time.Second, 10*time.Millisecond, "the others start")
	assert.Equal(t, uint64(3), w.Instances().Started)
	assert.Equal(t, uint64(0), w.Instances().Ended)
	w.assertServing(t)
}

// TestServeEarlyRefusedModuleLeavesNothing: a module refused once its first
// instance is up (here: a class the manifest binds and it lacks) is
// reported with ServeEarly too, and the instances still starting are
// stopped with it: no goroutine is left.
func TestServeEarlyRefusedModuleLeavesNothing(t *testing.T) {
	testutil.CheckGoroutines(t)
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	m, err := parseTestManifest([]byte("name = \"x\"\nmain = \"x.wasm\"\n[limits]\ninstances = 4\n[[durable_objects.bindings]]\nname = \"C\"\nclass_name = \"Countr\"\n"))
	require.NoError(t, err)
	_, err = NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: t.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger(), ServeEarly: true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `durable object binding C: class "Countr" is not registered by the module`)
}

// TestStorageAfterItsEventIsRefused: a goroutine still running after its
// event ended gets ErrEventOver from storage, matching ErrTimeout, and its
// write is not made.
func TestStorageAfterItsEventIsRefused(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "late", "PutLater", map[string]any{"Key": "k", "MS": 20})
	time.Sleep(300 * time.Millisecond) // the write is made between events (made during one, it acts for that one)
	assert.Equal(t, `"put after the event: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads) (ErrTimeout: true)"`,
		w.mustCall(t, "STORE", "late", "Received", nil))
	code, body := w.call(t, "STORE", "late", "Get", "k")
	assert.NotEqual(t, 200, code)
	assert.Equal(t, `call Get: no key "k"`, body, "the late write was not made")
}

// TestTransactionCommittedAfterItsEvent: an event that ends with a
// transaction open (a goroutine began it) fails and loses its writes; the
// goroutine's commit after it gets ErrEventOver.
func TestTransactionCommittedAfterItsEvent(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	code, body := w.call(t, "STORE", "tx", "TxLater", map[string]any{"Key": "k", "MS": 20})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "call TxLater: the object's event failed")
	assert.Contains(t, w.logs.String(), "the event ended with a transaction still open; its writes were undone")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, `"commit after the event: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads) (ErrEventOver: true)"`,
		w.mustCall(t, "STORE", "tx", "Received", nil))
	code, body = w.call(t, "STORE", "tx", "Get", "k")
	assert.NotEqual(t, 200, code)
	assert.Equal(t, `call Get: no key "k"`, body, "the transaction's write was not kept")
}

// TestObjectLoggerNamesTheObject: an object's Logger tags a line with its
// event's request id without a context, and names the object's class and
// id when the line is made between its events, so that wharf tail --class
// and --object find both.
func TestObjectLoggerNamesTheObject(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "talker", "LogBoth", "w1")
	require.Eventually(t, func() bool { return strings.Contains(w.logs.String(), "after the event") }, 5*time.Second, 10*time.Millisecond)
	logs := w.logs.String()
	assert.Regexp(t, `msg="in the event" plugin=objects request_id=Store#[0-9a-f]{8}-\d+ word=w1`, logs)
	assert.Regexp(t, `msg="after the event" plugin=objects class=Store object=[0-9a-f]{64} word=w1`, logs)
}

// TestInstanceGrownTooLargeIsDrainedAndReplaced: an event that grows its
// instance's memory past three quarters of memory_mib marks it draining
// (Wasm memory never shrinks): the event under way on it still ends well,
// new requests go to a replacement, and the grown instance is stopped
// once idle, without a failed request.
func TestInstanceGrownTooLargeIsDrainedAndReplaced(t *testing.T) {
	w := startWorker(t, "[limits]\ninstances = 1\nmemory_mib = 64\n")
	w.assertServing(t)
	grown := w.Instances().MemoryBytes
	slow := make(chan string, 1)
	go func() {
		code, body := get(t, w.url+"/sleep?d=1500ms")
		slow <- fmt.Sprint(code, " ", body)
	}()
	require.Eventually(t, func() bool { return w.Instances().Events == 1 }, 5*time.Second, time.Millisecond)
	code, body := get(t, w.url+"/grow?mib=44")
	require.Equal(t, 200, code, body)
	assert.Greater(t, w.Instances().MemoryBytes, uint64(48<<20), "the instance grew past the threshold (from %d bytes)", grown)
	for range 20 {
		w.assertServing(t) // on the replacement, while the grown one ends its event
	}
	assert.Regexp(t, `^200 1[5-9]\d\d$`, <-slow, "the event under way on the drained instance ended well")
	require.Eventually(t, func() bool {
		w.assertServing(t) // a pick stops an idle drained instance
		st := w.Instances()
		return st.Ended == 1 && st.Live == 1
	}, 10*time.Second, 50*time.Millisecond, "the grown instance is stopped once idle")
	st := w.Instances()
	assert.Equal(t, uint64(2), st.Started)
	assert.Less(t, st.MemoryBytes, uint64(48<<20), "the replacement is small")
	assert.Regexp(t, `level=INFO msg="plugin instance grew past its drain threshold \(3/4 of \[limits\] memory_mib\); it takes no new work and is replaced once idle" plugin=testworker memory_bytes=\d+ threshold_bytes=50331648`, w.logs.String())
}

// TestInstanceEndsOutsideItsEvents: a handler's os.Exit(0) and a goroutine
// that allocates past memory_mib between events each end their instance:
// the events it was serving fail with a 5xx naming a request id, the log
// says why and which events failed, and a replacement serves.
func TestInstanceEndsOutsideItsEvents(t *testing.T) {
	w := startWorker(t, "[limits]\ninstances = 1\nmemory_mib = 64\n")
	code, body := get(t, w.url+"/exit0")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "worker failed (request id ")
	w.assertServing(t)

	slow := make(chan string, 1)
	go func() {
		code, body := get(t, w.url+"/sleep?d=20s")
		slow <- fmt.Sprint(code, " ", body)
	}()
	require.Eventually(t, func() bool { return w.Instances().Events == 1 }, 5*time.Second, time.Millisecond)
	code, body = get(t, w.url+"/oom-background")
	require.Equal(t, 200, code, body)
	select {
	case got := <-slow:
		assert.Regexp(t, `^500 worker failed \(request id [0-9a-f]{8}-\d+\)`, got)
	case <-time.After(15 * time.Second):
		t.Fatal("the event in flight did not fail when its instance ran out of memory")
	}
	w.assertServing(t)
	logs := w.logs.String()
	assert.Regexp(t, `msg="plugin instance ended; replacing it" plugin=testworker err="the plugin.s main returned, or it called os.Exit\(0\) [^"]*" events_failed=\[[0-9a-f]{8}-\d+\]`, logs, "os.Exit(0)")
	assert.Regexp(t, `msg="plugin instance ended; replacing it" plugin=testworker err="[^"]*out of memory: the guest reached its memory limit[^"]*" events_failed=\[[0-9a-f]{8}-\d+\]`, logs)
	assert.Equal(t, uint64(2), w.Instances().Ended)
}
