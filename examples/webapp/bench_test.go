package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// get times one GET and checks it succeeded.
func get(b *testing.B, client *http.Client, url string) time.Duration {
	start := time.Now()
	resp, err := client.Get(url)
	require.NoError(b, err)
	resp.Body.Close()
	require.Equal(b, 200, resp.StatusCode, url)
	return time.Since(start)
}

var containerAddr = regexp.MustCompile(`container:App#\S+ start\b.*address=(\S+)`)

// BenchmarkWebapp measures examples/webapp through the real binary: the
// first request to a session whose container is not running (start,
// readiness, proxy) against the 200 ms target, and a warm proxied request
// (Worker → object → container) against the same request sent straight to
// the container's address.
func BenchmarkWebapp(b *testing.B) {
	data := b.TempDir()
	fixture.ImportBusybox(b, data)
	srv := testutil.StartServe(b, filepath.Join(testutil.RepoRoot(), "examples", "webapp"), "--listen", "127.0.0.1:0", "--data-dir", data)
	defer srv.Stop(30 * time.Second)
	client := &http.Client{}
	get(b, client, srv.URL+"/s/warmup/index.html") // the first activation also warms the pools

	var cold []float64
	for i := range 20 * b.N {
		cold = append(cold, float64(get(b, client, srv.URL+"/s/cold-"+strconv.Itoa(i)+"/index.html").Microseconds())/1000)
	}
	m := containerAddr.FindStringSubmatch(srv.Logs())
	require.NotNil(b, m, "no container address in the log")
	direct := "http://" + m[1] + ":8080/index.html" // the warmup session's container

	var proxied, plain []float64
	for range 5 * b.N { // alternating rounds
		var p, d []float64
		for range 50 {
			p = append(p, float64(get(b, client, srv.URL+"/s/warmup/index.html").Microseconds())/1000)
			d = append(d, float64(get(b, client, direct).Microseconds())/1000)
		}
		proxied, plain = append(proxied, testutil.Median(p)), append(plain, testutil.Median(d))
	}
	b.ReportMetric(testutil.Median(cold), "cold-p50-ms")
	b.ReportMetric(testutil.Percentile(cold, 0.9), "cold-p90-ms")
	b.ReportMetric(testutil.Median(cold)/200, "cold-vs-200ms-target")
	pm, dm := testutil.Median(proxied), testutil.Median(plain)
	b.ReportMetric(pm, "warm-proxied-p50-ms")
	b.ReportMetric(dm, "direct-p50-ms")
	b.ReportMetric(pm/dm, "ratio")
}
