package host

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// sharedDataDir keeps compiled code across the tests of one run.
var sharedDataDir string

func TestMain(m *testing.M) {
	dir, err := testutil.ScratchDir("data")
	if err != nil {
		panic(err)
	}
	sharedDataDir = dir
	RaiseFileLimit()
	if err := testutil.UseInit(); err != nil {
		panic(err)
	}
	os.Exit(testutil.RunEachEngine(m, plugins.Engines))
}

// parseTestManifest is manifest.Parse on the engine of this run of
// the tests (testutil.RunEachEngine).
func parseTestManifest(text []byte) (*manifest.Manifest, error) {
	m, err := manifest.Parse(text)
	if err == nil && testutil.Engine != "" {
		m.Limits.Engine = testutil.Engine
	}
	return m, err
}

// newWorker opens the manifest's containers, if any, with o as wharf serve
// does (on cfg's data directory, with its logger) and loads the Worker
// with them.
func newWorker(ctx context.Context, cfg Config, o hostbackend.Options) (*Worker, error) {
	o.DataDir, o.Logger = cfg.DataDir, cfg.Logger
	var err error
	if cfg.Containers, err = hostbackend.Open(ctx, cfg.Manifest, o); err != nil {
		return nil, err
	}
	return NewWorker(ctx, cfg)
}

type testWorker struct {
	*Worker
	url  string
	logs *testutil.LogBuffer
	stop func() // shuts the worker down early (restart tests)
}

// startWorker serves testdata/guests/testworker on a loopback listener with
// the manifest text's limits. Everything is shut down at cleanup.
func startWorker(t *testing.T, manifestExtra string) *testWorker {
	t.Helper()
	return serveGuest(t, "testdata/guests/testworker", "name = \"testworker\"\nmain = \"x.wasm\"\n"+manifestExtra, sharedDataDir)
}

// serveGuest builds the guest package, loads it with the manifest text and
// data directory, and serves it on loopback until cleanup (or stop).
func serveGuest(t testing.TB, pkg, manifestText, dataDir string) *testWorker {
	t.Helper()
	return serveGuestConfig(t, pkg, manifestText, dataDir, func(*Config, *hostbackend.Options) {})
}

// serveGuestConfig is serveGuest with the Config and the containers'
// options changed by edit.
func serveGuestConfig(t testing.TB, pkg, manifestText, dataDir string, edit func(*Config, *hostbackend.Options)) *testWorker {
	t.Helper()
	wasm := testutil.BuildGuest(t, pkg)
	m, err := parseTestManifest([]byte(manifestText))
	require.NoError(t, err)
	logs := &testutil.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Manifest: m, WasmPath: wasm, DataDir: dataDir, CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: logger}
	var o hostbackend.Options
	edit(&cfg, &o)
	w, err := newWorker(context.Background(), cfg, o)
	require.NoError(t, err)
	srv := httptest.NewServer(w)
	tw := &testWorker{Worker: w, url: srv.URL, logs: logs}
	var once sync.Once
	tw.stop = func() {
		once.Do(func() {
			srv.CloseClientConnections()
			srv.Close()
			require.NoError(t, w.Close(context.Background()))
		})
	}
	t.Cleanup(func() {
		tw.stop()
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return tw
}

// stopWithin stops w, failing t with why if that takes longer than d.
func (w *testWorker) stopWithin(t *testing.T, d time.Duration, why string) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(d):
		t.Fatal(why)
	}
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// assertServing checks the host still answers after something went wrong.
func (w *testWorker) assertServing(t *testing.T) {
	t.Helper()
	code, body := get(t, w.url+"/hello?name=again")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "hello again", body)
}

func TestHelloAndRequestHead(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/hello?name=wharf")
	assert.Equal(t, 200, code)
	assert.Equal(t, "hello wharf", body)

	req, _ := http.NewRequest("PUT", w.url+"/headers?a=1&b=2", strings.NewReader("abc"))
	req.Header.Set("X-Test", "value")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "PUT /headers a=1&b=2 host="+strings.TrimPrefix(w.url, "http://")+" x=value cl=3", string(b))

	resp, err = http.Get(w.url + "/status?code=418")
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 418, resp.StatusCode)
	assert.Equal(t, "yes", resp.Header.Get("X-Custom"))
	assert.Equal(t, "status set", string(b))
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		p[i] = byte((r.off + int64(i)) * 7 >> 3)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// echo sends size bytes to path and checks they come back unchanged,
// sampling the host's heap meanwhile; it returns the peak heap in use.
func echo(t *testing.T, url string, size int64) uint64 {
	t.Helper()
	want := crc32.NewIEEE()
	io.Copy(want, &patternReader{n: size})
	peak := sampleHeap()
	resp, err := http.Post(url, "application/octet-stream", &patternReader{n: size})
	require.NoError(t, err)
	got := crc32.NewIEEE()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	heap := peak()
	require.NoError(t, err)
	require.Equal(t, size, n)
	require.Equal(t, want.Sum32(), got.Sum32(), "echoed bytes differ")
	return heap
}

// sampleHeap samples the host's heap in use every 50 ms until the
// returned func is called, which returns the peak.
func sampleHeap() (peak func() uint64) {
	var most uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			most = max(most, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-sampled
		return most
	}
}

func TestEchoStreamsOneGiBInBoundedMemory(t *testing.T) {
	w := startWorker(t, "[limits]\nmemory_mib = 64\n")
	runtime.GC()
	peak := echo(t, w.url+"/echo", 1<<30)
	t.Logf("peak host heap during 1 GiB echo: %d MiB", peak>>20)
	// Guests are capped at 64 MiB of linear memory and the host queues at
	// most a few chunks per stream: nothing near the body's size.
	assert.Less(t, peak, uint64(256<<20), "host heap grew with the body")
	w.assertServing(t)
}

func TestForwardSplicesOnTheHost(t *testing.T) {
	w := startWorker(t, "")
	echo(t, w.url+"/forward", 64<<20)
	w.assertServing(t)
}

func TestTrapHalfWayThroughResponse(t *testing.T) {
	w := startWorker(t, "")
	before := w.Instances()
	resp, err := http.Get(w.url + "/trap-mid")
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode, "the head was already sent")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "partial ", string(body))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the client must see a cut body, not a clean end")
	logs := w.logs.String()
	assert.Contains(t, logs, "guest crashed on purpose", "the guest's panic message reaches the log")
	assert.Contains(t, logs, "the guest exited with code 2 (panic: guest crashed on purpose)", "in words: a Go panic exits, it does not trap")
	w.assertServing(t)
	require.Eventually(t, func() bool { return w.Instances().Ended > before.Ended }, 5*time.Second, 10*time.Millisecond,
		"the trapped instance must end")
	require.Eventually(t, func() bool { return w.Instances().Live == before.Live }, 10*time.Second, 10*time.Millisecond,
		"the trapped instance is replaced")
}

func TestTrapBeforeResponse(t *testing.T) {
	w := startWorker(t, "")
	for _, path := range []string{"/trap", "/exit"} {
		code, body := get(t, w.url+path)
		assert.Equal(t, 500, code, path)
		assert.Contains(t, body, "worker failed (request id ", path)
	}
	w.assertServing(t)
}

func TestHandlerPanicIs500(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/panic")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "worker failed (request id ")
	assert.Contains(t, w.logs.String(), `msg="panic serving request: handler panicked on purpose" plugin=testworker`)
	assert.Contains(t, w.logs.String(), ` stack="goroutine `, "the trace is an attribute of its own, not part of the message")
	w.assertServing(t)
}

// TestEndlessLoopHitsDeadline: an event that never yields ends at its
// time limit with a 504, and the host serves on. The limit is 1 s: the
// request that checks the host serves on has it too, and with 300 ms it
// once ran out on wazero under a full test run's load (the looping guest
// burns a core until its instance is stopped).
func TestEndlessLoopHitsDeadline(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"1s\"\n")
	start := time.Now()
	code, body := get(t, w.url+"/loop")
	assert.Equal(t, http.StatusGatewayTimeout, code)
	assert.Contains(t, body, "exceeded its time limit")
	assert.Less(t, time.Since(start), 5*time.Second)
	w.assertServing(t)
}

func TestDeadlineStopsBlockedImport(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"300ms\"\n")
	code, body := get(t, w.url+"/sleep?d=1h")
	assert.Equal(t, http.StatusGatewayTimeout, code)
	assert.Contains(t, body, "worker exceeded its time limit (request id ")
	assert.Contains(t, w.logs.String(), "did not end within 300ms")
	w.assertServing(t)
}

func TestMemoryLimit(t *testing.T) {
	w := startWorker(t, "[limits]\nmemory_mib = 64\n")
	code, body := get(t, w.url+"/oom")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "worker failed (request id ")
	assert.Contains(t, w.logs.String(), "the guest exited with code 2 (fatal error: out of memory: the guest reached its memory limit, [limits] memory_mib in wharf.toml)")
	w.assertServing(t)
}

func TestOutOfBoundsPointerIsFault(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/oob")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "status=6 ")
	assert.Contains(t, body, "outside guest memory")
	w.assertServing(t)
}

func TestStaleAndForeignHandles(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/stale")
	require.Equal(t, 200, code)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	require.Len(t, lines, 3)
	assert.Regexp(t, `^1 BADF: handle \d+ is not open`, lines[0], "closed handle")
	assert.Regexp(t, `^1 BADF: handle 3735928559 is not open`, lines[1], "made-up handle")
	assert.Regexp(t, `^1 BADF: handle \d+ is a request, which cannot be polled`, lines[2], "wrong kind")
	w.assertServing(t)
}

func TestOversizedHeaders(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/bigheader")
	assert.Equal(t, 500, code)
	assert.NotContains(t, body, "never sent")
	assert.Contains(t, w.logs.String(), "head is 71")
	assert.Contains(t, w.logs.String(), "limit is 65536")

	req, _ := http.NewRequest("GET", w.url+"/hello", nil)
	req.Header.Set("X-Huge", strings.Repeat("h", 2<<20))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	w.assertServing(t)
}

func TestInvalidResponseHeaderRefused(t *testing.T) {
	w := startWorker(t, "")
	resp, err := http.Get(w.url + "/badheader")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 500, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Injected"))
	assert.Contains(t, w.logs.String(), `invalid value for header \"X-Bad\"`)
	w.assertServing(t)
}

func TestNoResponse(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/noresponse")
	// The SDK sends an empty 200 for a handler that wrote nothing, like
	// net/http does.
	assert.Equal(t, 200, code)
	assert.Empty(t, body)
}

func TestClientDisconnectMidStreamLeaksNothing(t *testing.T) {
	w := startWorker(t, "")
	w.assertServing(t)
	testutil.CheckGoroutines(t)
	for i := 0; i < 3; i++ {
		conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
		require.NoError(t, err)
		fmt.Fprintf(conn, "GET /stream?n=100000&sleep=1ms HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 8192)
		_, err = io.ReadAtLeast(conn, buf, 4096)
		require.NoError(t, err)
		conn.Close()
	}
	require.Eventually(t, func() bool {
		return w.InFlight() == 0 && w.Instances().Events == 0
	}, 10*time.Second, 10*time.Millisecond, "requests or instances stuck after the client left")
	w.assertServing(t)
	http.DefaultClient.CloseIdleConnections()
}

// TestClientLeavingMidStreamIsNoFailure: a client that leaves while the
// Worker still streams its response (the event running, between writes)
// went away: that is logged as such, never as a body cut short, however the
// event's cancellation and the stream's own watch of the client race.
func TestClientLeavingMidStreamIsNoFailure(t *testing.T) {
	w := startWorker(t, "")
	for range 5 {
		logged := len(w.logs.String())
		conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
		require.NoError(t, err)
		fmt.Fprintf(conn, "GET /stream?n=3&sleep=1s HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		_, err = io.ReadFull(resp.Body, make([]byte, 1024))
		require.NoError(t, err, "the first chunk")
		conn.Close()
		require.Eventually(t, func() bool { return w.InFlight() == 0 }, 10*time.Second, 10*time.Millisecond, "the request ended")
		after := w.logs.String()[logged:]
		assert.Equal(t, 1, strings.Count(after, `msg="client went away"`), after)
		assert.NotContains(t, after, "level=WARN")
		assert.NotContains(t, after, "level=ERROR")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestSleepUsesRealClockWithoutSpinning(t *testing.T) {
	w := startWorker(t, "")
	get(t, w.url+"/sleep?d=1ms") // warm: the first event's one-off work is not sleeping
	for _, q := range []string{"d=300ms", "d=300ms&go=1"} {
		runtime.GC()
		cpu := cpuTime()
		code, body := get(t, w.url+"/sleep?"+q)
		used := cpuTime() - cpu
		require.Equal(t, 200, code)
		var ms int
		fmt.Sscan(body, &ms)
		assert.GreaterOrEqual(t, ms, 300, q)
		assert.Less(t, ms, 2000, q)
		assert.Less(t, used, 150*time.Millisecond, "%s: sleeping burned CPU", q)
	}
}

// TestEventGoroutinesAreReusedWithinABound: the goroutines 200 concurrent
// events ran on wait for later events, at most 64 of them, however many
// bursts come.
func TestEventGoroutinesAreReusedWithinABound(t *testing.T) {
	w := startWorker(t, "[limits]\ninstances = 1\n")
	goroutines := func() int {
		code, body := get(t, w.url+"/goroutines")
		require.Equal(t, 200, code, body)
		n, err := strconv.Atoi(body)
		require.NoError(t, err, body)
		return n
	}
	before := goroutines()
	var counts []int
	for range 2 {
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _ := get(t, w.url+"/sleep?d=100ms")
				assert.Equal(t, 200, code)
			}()
		}
		wg.Wait()
		counts = append(counts, goroutines())
	}
	t.Logf("guest goroutines: %d before, %v after each burst of 200 events", before, counts)
	for _, n := range counts {
		assert.LessOrEqual(t, n, before+64+1, "idle event goroutines are bounded")
		assert.GreaterOrEqual(t, n, before+32, "event goroutines wait for the next event")
	}
}

func TestSelectOverTimers(t *testing.T) {
	w := startWorker(t, "")
	code, body := get(t, w.url+"/select")
	assert.Equal(t, 200, code, body)
	assert.Equal(t, "short fired, then 0 ready, err=<nil>", body)
}

func TestNonBlockingReadsAndPoll(t *testing.T) {
	w := startWorker(t, "")
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 5; i++ {
			pw.Write(bytes.Repeat([]byte("z"), 1000))
			time.Sleep(20 * time.Millisecond)
		}
		pw.Close()
	}()
	resp, err := http.Post(w.url+"/poll-body", "text/plain", pr)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "read 5000 bytes", string(b))
}

func TestOutboundFetch(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rw.Header().Set("Content-Type", "text/plain")
		rw.WriteHeader(201)
		fmt.Fprintf(rw, "%s from-guest=%s body=%s", r.Method, r.Header.Get("X-From-Guest"), body)
	}))
	defer upstream.Close()
	w := startWorker(t, "")

	resp, err := http.Get(w.url + "/fetch?method=GET&url=" + upstream.URL)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "201", resp.Header.Get("X-Upstream-Status"))
	assert.Equal(t, "GET from-guest=1 body=", string(b))

	resp, err = http.Post(w.url+"/fetch?method=POST&url="+upstream.URL, "text/plain", strings.NewReader("payload"))
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "POST from-guest=1 body=payload", string(b))

	// A port nobody listens on: the guest gets an error, the client a 502.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	code, body := get(t, w.url+"/fetch?method=GET&url="+dead)
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Equal(t, `fetch failed: Get "`+dead+`": dial tcp `+ln.Addr().String()+": connect: connection refused\n", body,
		"the URL once, from the guest's client")
	redirect := httptest.NewServer(http.RedirectHandler(dead+"/moved", http.StatusFound))
	defer redirect.Close()
	code, body = get(t, w.url+"/fetch?method=GET&url="+redirect.URL+"/old")
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Equal(t, `fetch failed: Get "`+redirect.URL+`/old": Get "`+dead+`/moved": dial tcp `+ln.Addr().String()+": connect: connection refused\n", body,
		"a redirect's URL, which the guest never saw, is named")

	code, body = get(t, w.url+"/fetch?method=GET&url=ftp://example.invalid/")
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Contains(t, body, "absolute http or https URL")
	w.assertServing(t)
}

func TestGuestLogsCarryPluginAndRequestID(t *testing.T) {
	w := startWorker(t, "")
	code, _ := get(t, w.url+"/log")
	require.Equal(t, 200, code)
	logs := w.logs.String()
	assert.Regexp(t, `level=WARN msg="guest says" plugin=testworker request_id=[0-9a-f]{8}-\d+ k=v n=3 g.a="b c" guest.plugin=not-me\n`, logs,
		"the guest's attributes are attributes of the line; one named like the host's plugin is renamed, not a second plugin")
	// Output to stdout belongs to the instance, which serves many events at
	// once: it carries the plugin, not a request id.
	assert.Regexp(t, `level=INFO msg="to stdout" plugin=testworker stream=stdout`, logs)
}

// TestInstancesAreLongRunning: one instance serves every request, and what
// its Go code keeps in memory lives from one event to the next.
func TestInstancesAreLongRunning(t *testing.T) {
	w := startWorker(t, "[limits]\ninstances = 1\n")
	var got []string
	for i := 0; i < 5; i++ {
		_, body := get(t, w.url+"/served")
		got = append(got, body)
	}
	assert.Equal(t, []string{"1", "2", "3", "4", "5"}, got)
	assert.Equal(t, uint64(1), w.Instances().Started)
}

// TestOneInstanceServesConcurrentRequests: requests that wait for each
// other (each returns only once all 16 arrived) all finish on a single
// instance, so its events run concurrently.
func TestOneInstanceServesConcurrentRequests(t *testing.T) {
	w := startWorker(t, "[limits]\ninstances = 1\ntimeout = \"20s\"\n")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/barrier?n=%d", w.url, n))
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d: %s", resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, uint64(1), w.Instances().Started)
}

// dial opens a client connection to w, closed when the test ends, and a
// reader of its responses.
func (w *testWorker) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

func TestUnreadRequestBodyKeepsConnection(t *testing.T) {
	w := startWorker(t, "")
	conn, br := w.dial(t)
	for i := 0; i < 5; i++ {
		body := strings.Repeat("b", 1000*i+1)
		fmt.Fprintf(conn, "POST /hello?name=k HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, "request %d on the same connection", i)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "hello k", string(b))
	}
	assert.NotContains(t, w.logs.String(), "panic")
}

// TestUpgradeRequestWithBodyServesItsBody: a request asking to switch
// protocols with a body (curl --http2 asks for h2c on a POST), sized or
// chunked, is an ordinary request to a Worker that does not switch: it
// reads the body at once, not what the connection would carry after a
// 101 that never comes (it waited for its time limit, then got a 504).
func TestUpgradeRequestWithBodyServesItsBody(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"10s\"\n")
	conn, br := w.dial(t)
	for _, framing := range []string{"Content-Length: 3\r\n\r\nabc", "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"} {
		for _, upgrade := range []string{"h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings", "websocket\r\nConnection: Upgrade"} {
			start := time.Now()
			fmt.Fprintf(conn, "POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: %s\r\n%s", upgrade, framing)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode, "%s", b)
			assert.Equal(t, "abc", string(b))
			assert.Less(t, time.Since(start), 5*time.Second)
		}
	}
}

// TestUpgradeRequestReadBeforeAnswerIsEmpty: a GET asking to switch
// protocols (curl --http2 asks for h2c; a WebSocket handshake) to a
// handler that reads the body before it answers is an ordinary request
// with an empty body: the read ends at once (it waited for the bytes of a
// switch the Worker had not made, until its time limit: a 504), and the
// connection serves the next request.
func TestUpgradeRequestReadBeforeAnswerIsEmpty(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"10s\"\n")
	conn, br := w.dial(t)
	for _, upgrade := range []string{"h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings", "websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="} {
		start := time.Now()
		fmt.Fprintf(conn, "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: %s\r\n\r\n", upgrade)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, "%s", b)
		assert.Empty(t, string(b))
		assert.Less(t, time.Since(start), 5*time.Second)
	}
}

// TestRefusedUploadNeverServesItsBody refuses an upload that is still
// arriving (the handler reads a byte and answers 413). The rest of the body
// is a request's text: it must be read as body, never served as a request
// (that desync let a client smuggle requests past a proxy in front).
func TestRefusedUploadNeverServesItsBody(t *testing.T) {
	w := startWorker(t, "")
	conn, br := w.dial(t)
	first := make([]byte, 100<<10)
	smuggled := "GET /hello?name=smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	fmt.Fprintf(conn, "POST /refuse-upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(first)+len(smuggled))
	_, err := conn.Write(first)
	require.NoError(t, err)
	resp, err := http.ReadResponse(br, nil) // answered before the body's end
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "upload refused\n", string(b))
	_, err = conn.Write([]byte(smuggled))
	require.NoError(t, err)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("the body's end was served as a request: %d %q", resp.StatusCode, b)
	}

	// A body too big to drain: answered, then the connection ends.
	resp, err = http.Post(w.url+"/refuse-upload", "application/octet-stream", bytes.NewReader(make([]byte, 8<<20)))
	require.NoError(t, err)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "upload refused\n", string(b))
	w.assertServing(t)
}

// TestWorkerClosesBodyMidUpload closes the request body after a byte
// while the client still sends it, a byte every 100 ms, then streams its
// answer: the answer arrives whole. (The host stopped the body's read
// with a read deadline, which cancels net/http's connection context and
// the request's: the Worker was canceled mid-answer, a 500.)
func TestWorkerClosesBodyMidUpload(t *testing.T) {
	w := startWorker(t, "")
	conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprint(conn, "POST /close-body-then-stream?n=5&sleep=100ms HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range 15 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the answer ends")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "line 0\nline 1\nline 2\nline 3\nline 4\n", string(b))
	<-sent
	assert.NotContains(t, w.logs.String(), "client went away")
	w.assertServing(t)
}

// TestStoppedUploadThenNextRequest stops reading uploads on keep-alive
// connections, then sends the rest of the body, if held back, and another
// request on each. A body that arrives is drained and the next request is
// answered on the connection, which its answer said could be reused; a
// rest the client holds back until it is answered is waited for a bounded
// moment, then the answer says the connection closes, and it does. Never
// failed as canceled. (The host closed the connection after a streamed
// head without "Connection: close", failing a client's next request on
// it; net/http's own drain of a full-duplex handler's body crashed the
// connection at the next request: "invalid concurrent Body.Read call".)
func TestStoppedUploadThenNextRequest(t *testing.T) {
	w := startWorker(t, "")
	for _, c := range []struct {
		path, answer string
		sent, rest   int
		kept         bool
	}{
		{"/ignore-body", "ignored", 100 << 10, 0, true},                         // taken, never read
		{"/close-body-then-stream?n=2", "line 0\nline 1\n", 100 << 10, 0, true}, // closed, streamed answer
		{"/refuse-upload", "upload refused\n", 100 << 10, 0, true},              // refused, arrived
		{"/refuse-upload", "upload refused\n", 100 << 10, 1000, false},          // refused, held back
		{"/echo", strings.Repeat("\x00", 3), 3, 0, true},                        // read to its end
	} {
		what := fmt.Sprintf("%s, %d bytes held back", c.path, c.rest)
		conn, br := w.dial(t)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", c.path, c.sent+c.rest)
		_, err := conn.Write(make([]byte, c.sent))
		require.NoError(t, err)
		start := time.Now()
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, c.answer, string(b), what)
		assert.Equal(t, !c.kept, resp.Close, "%s: the answer says whether the connection closes", what)
		assert.Less(t, time.Since(start), 2*time.Second, "%s: answered after a bounded wait", what)
		conn.Write(make([]byte, c.rest)) // may fail once the connection closed
		fmt.Fprint(conn, "GET /hello?name=next HTTP/1.1\r\nHost: x\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err = http.ReadResponse(br, nil)
		if !c.kept {
			assert.Error(t, err, "%s: the connection closes after the answer", what)
			continue
		}
		require.NoError(t, err, "%s: the next request on the connection", what)
		b, _ = io.ReadAll(resp.Body)
		assert.Equal(t, "hello next", string(b), what)
	}
	assert.NotContains(t, w.logs.String(), "canceled")
	w.assertServing(t)
}

// slowBody is a request body of n zero bytes handed out chunk bytes at a
// time, a pause before each: a client still uploading when its answer is
// ready.
type slowBody struct {
	n, chunk int
	pause    time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	time.Sleep(b.pause)
	p = p[:min(len(p), b.n, b.chunk)]
	clear(p)
	b.n -= len(p)
	return len(p), nil
}

// TestAnswerBeforeSlowUploadEnds answers uploads still arriving without
// reading their body (never taken, taken and not read, refused after a
// byte): an http.Client gets the answer, not a broken pipe or a reset, and
// its next request on the same client is answered too.
func TestAnswerBeforeSlowUploadEnds(t *testing.T) {
	w := startWorker(t, "")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, c := range []struct {
		path, answer string
		status       int
	}{
		{"/hello?name=up", "hello up", 200},
		{"/ignore-body", "ignored", 200},
		{"/refuse-upload", "upload refused\n", http.StatusRequestEntityTooLarge},
	} {
		for _, size := range []int{100 << 10, 1 << 20, 4 << 20} {
			what := fmt.Sprintf("%s, %d bytes", c.path, size)
			req, err := http.NewRequest("POST", w.url+c.path, &slowBody{n: size, chunk: 32 << 10, pause: 5 * time.Millisecond})
			require.NoError(t, err)
			req.ContentLength = int64(size)
			resp, err := client.Do(req)
			require.NoError(t, err, what)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.NoError(t, err, what)
			assert.Equal(t, c.status, resp.StatusCode, what)
			assert.Equal(t, c.answer, string(b), what)
			resp, err = client.Get(w.url + "/hello?name=next")
			require.NoError(t, err, "the request after %s", what)
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, "hello next", string(b), "the request after %s", what)
		}
	}
	w.assertServing(t)
}

// TestUnreadUploadDrainIsBounded answers an upload without reading it
// while the client trickles an endless chunked body: the host drains it a
// bounded moment, then closes the connection, serving others meanwhile.
func TestUnreadUploadDrainIsBounded(t *testing.T) {
	w := startWorker(t, "")
	for _, path := range []string{"/ignore-body", "/refuse-upload"} {
		conn, br := w.dial(t)
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(conn, "400\r\n%s\r\n", make([]byte, 1024)); err != nil {
					return
				}
			}
		}()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err, path)
		io.ReadAll(resp.Body)
		w.assertServing(t)
		start := time.Now()
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "%s: the connection is closed", path)
		assert.Less(t, time.Since(start), 3*time.Second, "%s: the drain is bounded", path)
		close(stop)
	}
	w.assertServing(t)
}
