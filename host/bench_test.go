package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// The benchmarks print the figure and its ratio to a baseline measured in the
// same run, as "ratio" metrics; `make bench` runs them. Medians over rounds
// that alternate between wharf and the baseline damp a noisy machine.

// serveLoopback serves h on a loopback port until the benchmark ends.
func serveLoopback(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func benchWorker(b *testing.B, pkg string, limits string) *Worker {
	wasm := testutil.BuildGuest(b, pkg)
	m, err := parseTestManifest([]byte("name = \"bench\"\nmain = \"x.wasm\"\n" + limits))
	require.NoError(b, err)
	w, err := NewWorker(context.Background(), Config{Manifest: m, WasmPath: wasm, DataDir: sharedDataDir, Logger: discardLogger()})
	require.NoError(b, err)
	b.Cleanup(func() { w.Close(context.Background()) })
	return w
}

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrk runs the wrk load generator against url and returns requests/s.
func wrk(b *testing.B, url string, d time.Duration) float64 {
	out, err := exec.Command("wrk", "-t2", "-c64", "-d"+d.String(), url).CombinedOutput()
	require.NoError(b, err, "wrk (apt-get install wrk; make bench does it): %s", out)
	m := wrkRate.FindSubmatch(out)
	require.NotNil(b, m, "no rate in wrk output: %s", out)
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	return rate
}

// BenchmarkHelloThroughput compares examples/hello served by wharf with a
// plain net/http handler writing the same bytes, under wrk.
func BenchmarkHelloThroughput(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk is needed: apt-get install wrk (make bench installs it)")
	}
	w := benchWorker(b, "examples/hello", "")
	wharfURL := serveLoopback(b, w)
	plainURL := serveLoopback(b, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(rw, "Hello from wharf!")
	}))
	wrk(b, wharfURL+"/", 2*time.Second) // warm the pool to the connection count
	var plain, wharf []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		plain = append(plain, wrk(b, plainURL+"/", 2*time.Second))
		wharf = append(wharf, wrk(b, wharfURL+"/", 2*time.Second))
	}
	b.ReportMetric(testutil.Median(wharf), "wharf_req/s")
	b.ReportMetric(testutil.Median(plain), "plain_go_req/s")
	b.ReportMetric(testutil.Median(wharf)/testutil.Median(plain), "ratio")
}

// zeroReader yields n zero bytes.
type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	m := min(int64(len(p)), z.n)
	clear(p[:m])
	z.n -= m
	return int(m), nil
}

// bulkClient moves bodies in large buffers so the client is not the
// bottleneck of a throughput benchmark.
var bulkClient = &http.Client{Transport: &http.Transport{
	WriteBufferSize: 1 << 20, ReadBufferSize: 1 << 20, DisableCompression: true,
}}

// postMBps posts size bytes and reads the echo, returning MB/s.
func postMBps(b *testing.B, url string, size int64) float64 {
	start := time.Now()
	req, err := http.NewRequest("POST", url, &zeroReader{size})
	require.NoError(b, err)
	req.ContentLength = size
	resp, err := bulkClient.Do(req)
	require.NoError(b, err)
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	require.NoError(b, err)
	require.Equal(b, size, n)
	return float64(size) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkEchoThroughput streams 256 MB through a guest that copies the
// request body to the response (every byte crosses guest memory twice), and
// through the host-side forward splice, against a plain net/http io.Copy.
func BenchmarkEchoThroughput(b *testing.B) {
	w := benchWorker(b, "testdata/guests/testworker", "")
	wharfURL := serveLoopback(b, w)
	plainURL := serveLoopback(b, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.NewResponseController(rw).EnableFullDuplex()
		io.Copy(rw, r.Body)
	}))
	const size = 256 << 20
	postMBps(b, wharfURL+"/echo", 16<<20)
	var plain, guest, forward []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		plain = append(plain, postMBps(b, plainURL, size))
		guest = append(guest, postMBps(b, wharfURL+"/echo", size))
		forward = append(forward, postMBps(b, wharfURL+"/forward", size))
	}
	b.ReportMetric(testutil.Median(guest), "guest_copy_MB/s")
	b.ReportMetric(testutil.Median(forward), "forward_MB/s")
	b.ReportMetric(testutil.Median(plain), "plain_go_MB/s")
	b.ReportMetric(testutil.Median(guest)/testutil.Median(plain), "ratio")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
