package host

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
	return w, serveLoopback(b, w)
}

// latencies issues n sequential requests and returns their durations in µs.
func latencies(b *testing.B, method, url string, n int) []float64 {
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(b, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(b, 200, resp.StatusCode)
		out = append(out, float64(time.Since(start).Microseconds()))
	}
	return out
}

// BenchmarkObjectRoundTrip compares a Worker that calls a Durable Object
// (RPC, answered from the object's memory) with the same Worker answering
// alone, by sequential request latency.
func BenchmarkObjectRoundTrip(b *testing.B) {
	_, url := benchObjects(b, "testdata/guests/objects", objectsManifest)
	latencies(b, "POST", url+"/call/STORE/bench/Events", 200)
	latencies(b, "GET", url+"/alone", 200)
	var obj, alone []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		alone = append(alone, testutil.Percentile(latencies(b, "GET", url+"/alone", 400), 0.5))
		obj = append(obj, testutil.Percentile(latencies(b, "POST", url+"/call/STORE/bench/Events", 400), 0.5))
	}
	b.ReportMetric(testutil.Median(obj), "object_p50_µs")
	b.ReportMetric(testutil.Median(alone), "worker_p50_µs")
	b.ReportMetric(testutil.Median(obj)/testutil.Median(alone), "ratio")
}

// BenchmarkCounterIncrements drives examples/counter's object with 32
// concurrent clients for 3 s; every increment is durable before its answer.
// The baseline is the same load on the Worker's object-free route.
func BenchmarkCounterIncrements(b *testing.B) {
	_, url := benchObjects(b, "examples/counter", "name = \"counter\"\nmain = \"x.wasm\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n")
	rate := func(method, path string, d time.Duration) float64 {
		var n atomic.Int64
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for c := 0; c < 32; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					req, _ := http.NewRequest(method, url+path, nil)
					resp, err := http.DefaultClient.Do(req)
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
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 64
	rate("POST", "/counter/hot", time.Second)
	var incs []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		incs = append(incs, rate("POST", "/counter/hot", 3*time.Second))
	}
	b.ReportMetric(testutil.Median(incs), "increments/s")
	b.ReportMetric(testutil.Median(incs)/10000, "ratio_to_10k_target")
}

func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkObjectActivation measures the first event of objects that are
// not live (pool instance + constructor + event), then memory per idle
// live object with 1,000 objects alive.
func BenchmarkObjectActivation(b *testing.B) {
	w, url := benchObjects(b, "testdata/guests/objects", objectsManifest+"[durable_objects]\nmax_live = 1100\nidle_timeout = \"10m\"\n")
	warm := testutil.Percentile(latencies(b, "POST", url+"/call/STORE/warm/Events", 200), 0.5)
	var cold []float64
	for i := 0; i < 200; i++ {
		time.Sleep(30 * time.Millisecond) // let the pool refill, as between real activations
		cold = append(cold, latencies(b, "POST", fmt.Sprintf("%s/call/STORE/cold%d/Events", url, i), 1)[0])
	}
	b.ReportMetric(testutil.Percentile(cold, 0.5), "activation_p50_µs")
	b.ReportMetric(testutil.Percentile(cold, 0.9), "activation_p90_µs")
	b.ReportMetric(testutil.Percentile(cold, 0.5)/warm, "ratio_to_warm")

	before := rssBytes()
	live0 := w.Objects().LiveObjects()
	for i := 0; i < 1000-live0; i++ {
		latencies(b, "POST", fmt.Sprintf("%s/call/STORE/mem%d/Events", url, i), 1)
	}
	n := w.Objects().LiveObjects() - live0
	after := rssBytes()
	b.ReportMetric(float64(w.Objects().LiveObjects()), "live_objects")
	b.ReportMetric(float64(after-before)/float64(n)/(1<<20), "MiB_per_idle_object")
}
