package host

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// BenchmarkContainerFromGuest compares, in one run: exec of `true` from a
// guest (timed inside the guest) with the same exec through the containerd
// client directly, and a GetTCPPort fetch from a guest with an HTTP request
// straight to the container's address.
func BenchmarkContainerFromGuest(b *testing.B) {
	data := b.TempDir()
	fixture.ImportBusybox(b, data)
	w := serveGuestB(b, data)
	call := func(method string, args any) string {
		b.Helper()
		code, body := w.call(b, "BOX", "bench", method, args)
		require.Equal(b, 200, code, body)
		return body
	}
	call("Start", []string{"httpd", "-f", "-p", "8080", "-h", "/etc"})
	mc, ok := w.services.containers.Get("Box", idFor(b, w, "bench"))
	require.True(b, ok)
	url := fmt.Sprintf("http://%s:8080/passwd", mc.Endpoint.ContainerIP)
	require.Eventually(b, func() bool { resp, err := http.Get(url); return err == nil && resp.Body.Close() == nil }, 10*time.Second, 10*time.Millisecond)

	var guestExec, directExec, guestFetch, directFetch, guestMBps, directMBps []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		v, _ := strconv.ParseFloat(call("TimeExecTrue", 10), 64)
		guestExec = append(guestExec, v/1000)
		start := time.Now()
		for j := 0; j < 10; j++ {
			p, err := mc.Exec(context.Background(), containerd.ExecSpec{Args: []string{"true"}})
			require.NoError(b, err)
			_, err = p.Wait(context.Background())
			require.NoError(b, err)
		}
		directExec = append(directExec, float64(time.Since(start).Microseconds())/10/1000)

		v, _ = strconv.ParseFloat(call("TimeFetch", map[string]int{"Port": 8080, "N": 50}), 64)
		guestFetch = append(guestFetch, v)
		start = time.Now()
		for j := 0; j < 50; j++ {
			resp, err := http.Get(url)
			require.NoError(b, err)
			resp.Body.Close()
		}
		directFetch = append(directFetch, float64(time.Since(start).Microseconds())/50)

		v, _ = strconv.ParseFloat(call("ExecThroughput", 512), 64)
		guestMBps = append(guestMBps, v)
		start = time.Now()
		p, err := mc.Exec(context.Background(), containerd.ExecSpec{Args: []string{"dd", "if=/dev/zero", "bs=1048576", "count=512"}, Stdout: io.Discard})
		require.NoError(b, err)
		_, err = p.Wait(context.Background())
		require.NoError(b, err)
		directMBps = append(directMBps, 512*1048576/1e6/time.Since(start).Seconds())
	}
	b.ReportMetric(testutil.Median(guestMBps), "guest_exec_stdout_MB/s")
	b.ReportMetric(testutil.Median(directMBps), "client_exec_stdout_MB/s")
	b.ReportMetric(testutil.Median(guestExec), "guest_exec_true_ms")
	b.ReportMetric(testutil.Median(directExec), "client_exec_true_ms")
	b.ReportMetric(testutil.Median(guestExec)/testutil.Median(directExec), "exec_ratio")
	b.ReportMetric(testutil.Median(guestFetch), "guest_fetch_µs")
	b.ReportMetric(testutil.Median(directFetch), "direct_fetch_µs")
	b.ReportMetric(testutil.Median(guestFetch)/testutil.Median(directFetch), "fetch_ratio")
}
