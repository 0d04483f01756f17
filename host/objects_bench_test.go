package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

func benchObjects(b *testing.B, pkg, manifest string) (*Worker, string) {
	wasm := testutil.BuildGuest(b, pkg)
	m, err := parseTestManifest([]byte(manifest))
	require.NoError(b, err)
	w, err := NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: b.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	b.Cleanup(func() { w.Close(context.Background()) })
	// Every client connection is kept alive, whatever the benchmark's
	// concurrency: they measure events, not TCP connects (Go keeps 2 per
	// host by default).
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 64
	return w, serveLoopback(b, w)
}

// latencies issues n sequential requests and returns their durations in µs.
func latencies(b *testing.B, method, url string, n int) []float64 {
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, latency(b, method, url))
	}
	return out
}

// latency issues one request and returns its duration in µs.
func latency(b *testing.B, method, url string) float64 {
	start := time.Now()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(b, 200, resp.StatusCode)
	return float64(time.Since(start).Microseconds())
}

// BenchmarkObjectRoundTrip compares a Worker that calls a Durable Object
// (RPC, answered from the object's memory) with the same Worker answering
// alone, by sequential request latency. The two requests alternate, so
// that the machine's state (a noisy neighbour, a CPU's frequency) weighs
// on both alike.
func BenchmarkObjectRoundTrip(b *testing.B) {
	_, url := benchObjects(b, "testdata/guests/objects", objectsManifest)
	object, alone := url+"/call/STORE/bench/Events", url+"/alone"
	latencies(b, "POST", object, 200)
	latencies(b, "GET", alone, 200)
	var objP50, aloneP50 []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		var obj, solo []float64
		for range 400 {
			solo = append(solo, latency(b, "GET", alone))
			obj = append(obj, latency(b, "POST", object))
		}
		aloneP50 = append(aloneP50, testutil.Percentile(solo, 0.5))
		objP50 = append(objP50, testutil.Percentile(obj, 0.5))
	}
	b.ReportMetric(testutil.Median(objP50), "object_p50_µs")
	b.ReportMetric(testutil.Median(aloneP50), "worker_p50_µs")
	b.ReportMetric(testutil.Median(objP50)/testutil.Median(aloneP50), "ratio")
}

// BenchmarkCounterIncrements drives one counter of examples/counter with
// 32 concurrent clients for 3 s; every increment is durable before its
// answer. The baseline is the same load on the Worker's object-free route.
func BenchmarkCounterIncrements(b *testing.B) {
	_, url := benchObjects(b, "examples/counter", "name = \"counter\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n")
	counterRate(b, url, 1, time.Second)
	var incs []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		incs = append(incs, counterRate(b, url, 1, 3*time.Second))
	}
	b.ReportMetric(testutil.Median(incs), "increments/s")
	b.ReportMetric(testutil.Median(incs)/7500, "ratio_to_7500_target")
}

// BenchmarkObjectActivation measures activating objects that are not live
// from 4 clients at once, against events of live objects: new objects that
// do not use storage (placement, the constructor, then the event: Events),
// and objects coming back after eviction whose event reads their storage
// (List; their database was parked), then the memory each idle live object
// adds with 10,000 of them live. With 4 clients on 2 cores a p50 is mostly
// queueing (4 / rate), so a new activation's latency is also measured from
// one client alone.
func BenchmarkObjectActivation(b *testing.B) {
	w, url := benchObjects(b, "testdata/guests/objects", objectsManifest+"[durable_objects]\nmax_live = 20000\nidle_timeout = \"10m\"\n")
	// max_live = 1000: activating one set of 1,000 evicts the other.
	_, evicting := benchObjects(b, "testdata/guests/objects", objectsManifest+"[durable_objects]\nmax_live = 1000\nidle_timeout = \"10m\"\n")
	var next atomic.Int64
	burst := func(url, prefix, method string, n, clients int) (perSecond float64, p50 float64) {
		var mu sync.Mutex
		var all []float64
		start := time.Now()
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for int(next.Add(1)) <= n {
					lat := latencies(b, "POST", fmt.Sprintf("%s/call/STORE/%s%d/%s", url, prefix, next.Load(), method), 1)
					mu.Lock()
					all = append(all, lat...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return float64(len(all)) / time.Since(start).Seconds(), testutil.Percentile(all, 0.5)
	}
	for _, set := range []string{"a", "b"} { // create both sets' storage
		next.Store(0)
		burst(evicting, set, "List", 1000, 4)
	}
	var rates, p50s, aloneP50s, backRates, backP50s, warm []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		next.Store(0)
		r, p := burst(url, fmt.Sprint("cold", i, "-"), "Events", 1000, 4)
		rates, p50s = append(rates, r), append(p50s, p)
		next.Store(0)
		_, p = burst(url, fmt.Sprint("alone", i, "-"), "Events", 200, 1)
		aloneP50s = append(aloneP50s, p)
		next.Store(0)
		r, p = burst(evicting, []string{"a", "b"}[i%2], "List", 1000, 4)
		backRates, backP50s = append(backRates, r), append(backP50s, p)
		warm = append(warm, testutil.Percentile(latencies(b, "POST", url+"/call/STORE/cold0-1/Events", 200), 0.5))
	}
	b.ReportMetric(testutil.Median(rates), "new_activations/s")
	b.ReportMetric(testutil.Median(p50s), "new_activation_p50_µs")
	b.ReportMetric(testutil.Median(aloneP50s), "new_activation_one_client_p50_µs")
	b.ReportMetric(testutil.Median(backRates), "evicted_activations/s")
	b.ReportMetric(testutil.Median(backP50s), "evicted_activation_p50_µs")
	b.ReportMetric(testutil.Median(warm), "live_event_p50_µs")
	b.ReportMetric(testutil.Median(backP50s)/testutil.Median(warm), "ratio")

	runtime.GC()
	before := testutil.SelfNumber(b, "status", "VmRSS") // KiB
	live0 := w.Objects().LiveObjects()
	next.Store(0)
	burst(url, "mem", "Events", 10_000-live0, 4)
	runtime.GC()
	n := w.Objects().LiveObjects() - live0
	b.ReportMetric(float64(w.Objects().LiveObjects()), "live_objects")
	b.ReportMetric(float64(testutil.SelfNumber(b, "status", "VmRSS")-before)/float64(n), "KiB_per_idle_object") // negative when the GC gave back more than the objects took
}

// BenchmarkDistinctCounters drives 1,000 counters of examples/counter with
// 32 clients, each increment on a random counter and durable before its
// answer, against the same load on one counter.
func BenchmarkDistinctCounters(b *testing.B) {
	_, url := benchObjects(b, "examples/counter", "name = \"counter\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n[durable_objects]\nmax_live = 2000\n")
	counterRate(b, url, 1000, time.Second)
	var many, one []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		many = append(many, counterRate(b, url, 1000, 3*time.Second))
		one = append(one, counterRate(b, url, 1, 3*time.Second))
	}
	b.ReportMetric(testutil.Median(many), "increments/s")
	b.ReportMetric(testutil.Median(one), "one_counter_increments/s")
	b.ReportMetric(testutil.Median(many)/testutil.Median(one), "ratio")
}

// counterRate is the rate of POST /counter/{name} from 32 clients over
// names counters for d.
func counterRate(b *testing.B, url string, names int, d time.Duration) float64 {
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < 32; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(deadline); i += 7919 {
				resp, err := http.Post(fmt.Sprintf("%s/counter/c%d", url, i%names), "", nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}
