package host

import (
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/fakenet"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

// benchContainersManifest gives the container two whole vCPUs, so the
// client inside is not what a benchmark measures.
var benchContainersManifest = strings.Replace(containersManifest, `instance_type = "basic"`, `instance_type = { vcpu = 2, memory_mib = 1024 }`, 1)

// probeField reads name=value from probe's output.
func probeField(b *testing.B, out, name string) float64 {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			x, err := strconv.ParseFloat(v, 64)
			require.NoError(b, err)
			return x
		}
	}
	b.Fatalf("no %s in probe output %q", name, out)
	return 0
}

// hostProbe runs the same probe binary on the host, for the baselines.
func hostProbe(b *testing.B) func(args ...string) string {
	path, err := testimages.BuildProbe(b.TempDir())
	require.NoError(b, err)
	return func(args ...string) string {
		out, err := exec.Command(path, args...).CombinedOutput()
		require.NoError(b, err, "%s", out)
		return string(out)
	}
}

// BenchmarkEgressInterceptLatency times sequential keep-alive requests from
// a client in a container to a name a Worker intercepts, against the same
// client on the host asking a plain Go HTTP server on loopback. The target
// is at most 1 ms added at p50.
func BenchmarkEgressInterceptLatency(b *testing.B) {
	w, _, _ := egressWorker(b, benchContainersManifest)
	w.startBox(b, "bench", false)
	w.intercept(b, "bench", "http", "api.bench.test", "other")
	body := "other: http://api.bench.test/"
	plain := serveLoopback(b, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { fmt.Fprint(rw, body) }))
	onHost := hostProbe(b)
	const n = "300"
	var intercepted, baseline []float64
	for range 5 * b.N {
		out, errOut, code := w.run(b, "bench", "probe", "bench", "http://api.bench.test/", n)
		require.Equal(b, 0, code, errOut)
		intercepted = append(intercepted, probeField(b, out, "p50_us")/1000)
		baseline = append(baseline, probeField(b, onHost("bench", plain+"/", n), "p50_us")/1000)
	}
	ic, base := testutil.Median(intercepted), testutil.Median(baseline)
	b.ReportMetric(ic, "intercepted-p50-ms")
	b.ReportMetric(base, "plain-p50-ms")
	b.ReportMetric(ic-base, "added-p50-ms")
	b.ReportMetric(ic/base, "ratio")
}

// BenchmarkEgressDownload streams 100 MB to a client in a container
// through an interception whose handler fetches upstream (the fake
// internet) and forwards the body, against the same client on the host
// downloading from the fake internet directly. The target is ≥ 300 MB/s.
func BenchmarkEgressDownload(b *testing.B) {
	w, inet, _ := egressWorker(b, benchContainersManifest)
	w.startBox(b, "dl", false)
	w.intercept(b, "dl", "http", "*."+fakenet.Domain, "upstream")
	onHost := hostProbe(b)
	const size = "100000000"
	var through, direct []float64
	for range 3 * b.N {
		out, errOut, code := w.run(b, "dl", "probe", "download", "http://"+fakenet.Name("dl")+"/bytes?n="+size)
		require.Equal(b, 0, code, errOut)
		require.Equal(b, 100e6, probeField(b, out, "bytes"))
		through = append(through, probeField(b, out, "mbps"))
		direct = append(direct, probeField(b, onHost("download", "http://"+inet.Addr.String()+"/bytes?n="+size), "mbps"))
	}
	t, d := testutil.Median(through), testutil.Median(direct)
	b.ReportMetric(t, "intercepted-MB/s")
	b.ReportMetric(d, "direct-MB/s")
	b.ReportMetric(t/d, "ratio")
}
