package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
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
// included), for busybox httpd, in alternating rounds without and with a
// disk quota (a 2000 MB disk for the writable layer, as the lite instance
// type gets). The ratios are port-ready p50 with the quota against the
// 150 ms target and against the rounds without.
func BenchmarkContainerStart(b *testing.B) {
	c, image, runcRoot := benchBackend(b)
	n := NewNetwork(DefaultSubnet, b.Name())
	disks := b.TempDir()
	var running, ready [2][]float64
	for i := 0; i < 40*b.N; i++ {
		quota := i % 2
		id := fmt.Sprintf("start-%d", i)
		start := time.Now()
		ep, err := n.Setup(id)
		require.NoError(b, err)
		spec := ContainerSpec{
			ID: id, Image: image, RuncRoot: runcRoot, NetNSPath: ep.NetNSPath,
			Entrypoint: []string{"httpd", "-f", "-p", "8080", "-h", "/etc"},
		}
		d := disk{image: filepath.Join(disks, id+".img"), dir: filepath.Join(disks, id)}
		if quota == 1 {
			require.NoError(b, d.mount(filepath.Join(disks, "templates"), 2000))
			spec.WritableDir = d.dir
		}
		ctr, err := StartContainer(context.Background(), c, spec)
		require.NoError(b, err)
		running[quota] = append(running[quota], float64(time.Since(start).Microseconds())/1000)
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
		ready[quota] = append(ready[quota], float64(time.Since(start).Microseconds())/1000)
		require.NoError(b, ctr.Destroy(context.Background()))
		require.NoError(b, ep.Teardown())
		if quota == 1 {
			require.NoError(b, d.unmount(false))
		}
	}
	b.ReportMetric(testutil.Percentile(running[0], 0.5), "running_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[0], 0.5), "port_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[0], 0.9), "port_ready_p90_ms")
	b.ReportMetric(testutil.Percentile(running[1], 0.5), "quota_running_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[1], 0.5), "quota_port_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[1], 0.9), "quota_port_ready_p90_ms")
	b.ReportMetric(testutil.Percentile(ready[1], 0.5)/150, "ratio_to_150ms_target")
	b.ReportMetric(testutil.Percentile(ready[1], 0.5)/testutil.Percentile(ready[0], 0.5), "quota_ratio_to_none")
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
