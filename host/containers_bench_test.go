package host

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// BenchmarkContainerFromGuest compares, in one run: exec of `true` from a
// guest (p50, timed inside the guest) and exec stdout streamed into a
// guest, through wharf-init (class Box) and through runc (class RuncBox,
// init = false); writing then reading 1 GiB through the files API; and a
// GetTCPPort fetch from a guest with an HTTP request
// straight to the container's address.
func BenchmarkContainerFromGuest(b *testing.B) {
	data := b.TempDir()
	fixture.ImportBusybox(b, data)
	w := serveGuestB(b, data)
	call := func(binding, method string, args any) string {
		b.Helper()
		code, body := w.call(b, binding, "bench", method, args)
		require.Equal(b, 200, code, body)
		return body
	}
	call("BOX", "Start", []string{"httpd", "-f", "-p", "8080", "-h", "/etc"})
	call("RUNCBOX", "Start", []string{"sleep", "3600"})
	mc, ok := w.services.containers.Backend().Get("Box", idFor(b, w, "bench"))
	require.True(b, ok)
	url := fmt.Sprintf("http://%s:8080/passwd", mc.Info().Address)
	require.Eventually(b, func() bool { resp, err := http.Get(url); return err == nil && resp.Body.Close() == nil }, 10*time.Second, 10*time.Millisecond)

	measure := func(binding, method string, args any) float64 {
		v, err := strconv.ParseFloat(call(binding, method, args), 64)
		require.NoError(b, err)
		return v
	}
	var agentExec, runcExec, agentMBps, runcMBps, guestFetch, directFetch, fileWrite, fileRead []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		agentExec = append(agentExec, measure("BOX", "TimeExecTrue", 20)/1000)
		runcExec = append(runcExec, measure("RUNCBOX", "TimeExecTrue", 20)/1000)
		agentMBps = append(agentMBps, measure("BOX", "ExecThroughput", 512))
		runcMBps = append(runcMBps, measure("RUNCBOX", "ExecThroughput", 512))

		var rt struct{ WriteMBps, ReadMBps float64 }
		require.NoError(b, json.Unmarshal([]byte(call("BOX", "FilesRoundTrip", map[string]any{"MB": 1024})), &rt))
		fileWrite, fileRead = append(fileWrite, rt.WriteMBps), append(fileRead, rt.ReadMBps)

		guestFetch = append(guestFetch, measure("BOX", "TimeFetch", map[string]int{"Port": 8080, "N": 50}))
		start := time.Now()
		for j := 0; j < 50; j++ {
			resp, err := http.Get(url)
			require.NoError(b, err)
			resp.Body.Close()
		}
		directFetch = append(directFetch, float64(time.Since(start).Microseconds())/50)
	}
	b.ReportMetric(testutil.Median(agentExec), "guest_exec_true_p50_ms")
	b.ReportMetric(testutil.Median(runcExec), "guest_exec_true_runc_p50_ms")
	b.ReportMetric(testutil.Median(agentExec)/testutil.Median(runcExec), "exec_ratio_to_runc")
	b.ReportMetric(testutil.Median(agentMBps), "guest_exec_stdout_MB/s")
	b.ReportMetric(testutil.Median(runcMBps), "guest_exec_stdout_runc_MB/s")
	b.ReportMetric(testutil.Median(agentMBps)/testutil.Median(runcMBps), "stdout_ratio_to_runc")
	b.ReportMetric(testutil.Median(fileWrite), "files_write_1GiB_MB/s")
	b.ReportMetric(testutil.Median(fileRead), "files_read_1GiB_MB/s")
	b.ReportMetric(min(testutil.Median(fileWrite), testutil.Median(fileRead))/500, "files_ratio_to_500MB/s_target")
	b.ReportMetric(testutil.Median(guestFetch), "guest_fetch_µs")
	b.ReportMetric(testutil.Median(directFetch), "direct_fetch_µs")
	b.ReportMetric(testutil.Median(guestFetch)/testutil.Median(directFetch), "fetch_ratio")
}
