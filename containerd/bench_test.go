package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

func benchBackend(b *testing.B) (*client.Client, string, string) {
	d, err := StartDaemon(context.Background(), b.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	b.Cleanup(func() { d.Stop() })
	c, err := Connect(context.Background(), d.Address)
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	archive, err := testimages.Busybox(b.TempDir())
	require.NoError(b, err)
	imgs, err := ImportArchive(context.Background(), c, archive, "")
	require.NoError(b, err)
	return c, imgs[0].Name, d.RuncRoot
}

// BenchmarkContainerStart measures Start → running and Start → the first
// successful HTTP fetch on a port of the container (network setup
// included), for busybox httpd. The ratio is port-ready p50 against the
// 150 ms target.
func BenchmarkContainerStart(b *testing.B) {
	c, image, runcRoot := benchBackend(b)
	n := NewNetwork(DefaultSubnet, b.Name())
	var running, ready []float64
	for i := 0; i < 20*b.N; i++ {
		id := fmt.Sprintf("start-%d", i)
		start := time.Now()
		ep, err := n.Setup(id)
		require.NoError(b, err)
		ctr, err := StartContainer(context.Background(), c, ContainerSpec{
			ID: id, Image: image, RuncRoot: runcRoot, NetNSPath: ep.NetNSPath,
			Entrypoint: []string{"httpd", "-f", "-p", "8080", "-h", "/etc"},
		})
		require.NoError(b, err)
		running = append(running, float64(time.Since(start).Microseconds())/1000)
		url := fmt.Sprintf("http://%s:8080/passwd", ep.ContainerIP)
		for {
			resp, err := http.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		ready = append(ready, float64(time.Since(start).Microseconds())/1000)
		require.NoError(b, ctr.Destroy(context.Background()))
		require.NoError(b, ep.Teardown())
	}
	b.ReportMetric(testutil.Percentile(running, 0.5), "running_p50_ms")
	b.ReportMetric(testutil.Percentile(running, 0.9), "running_p90_ms")
	b.ReportMetric(testutil.Percentile(ready, 0.5), "port_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(ready, 0.9), "port_ready_p90_ms")
	b.ReportMetric(testutil.Percentile(ready, 0.5)/150, "ratio_to_150ms_target")
}

// BenchmarkExecTrue measures an exec of `true` through the containerd
// client: the baseline a guest's Exec will be compared with.
func BenchmarkExecTrue(b *testing.B) {
	c, image, runcRoot := benchBackend(b)
	ctr, err := StartContainer(context.Background(), c, ContainerSpec{ID: "exec-bench", Image: image, RuncRoot: runcRoot,
		Entrypoint: []string{"sleep", "3600"}})
	require.NoError(b, err)
	defer ctr.Destroy(context.Background())
	var lat []float64
	for i := 0; i < 50*b.N; i++ {
		start := time.Now()
		p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"true"}})
		require.NoError(b, err)
		_, err = p.Wait(context.Background())
		require.NoError(b, err)
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	b.ReportMetric(testutil.Percentile(lat, 0.5), "exec_true_p50_ms")
	b.ReportMetric(testutil.Percentile(lat, 0.9), "exec_true_p90_ms")
}
