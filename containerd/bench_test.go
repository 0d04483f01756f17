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
		spec := ContainerSpec{ID: fmt.Sprintf("start-%d", i), Image: image, RuncRoot: runcRoot}
		d := disk{image: filepath.Join(disks, spec.ID+".img"), dir: filepath.Join(disks, spec.ID)}
		var mountMs float64 // making the disk is part of the start
		if quota == 1 {
			began := time.Now()
			require.NoError(b, d.mount(filepath.Join(disks, "templates"), 2000))
			mountMs = float64(time.Since(began).Microseconds()) / 1000
			spec.WritableDir = d.dir
		}
		r, p := startToPortReady(b, c, n, spec)
		running[quota], ready[quota] = append(running[quota], r+mountMs), append(ready[quota], p+mountMs)
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

// BenchmarkSandboxCost measures what the sandbox (seccomp profile, dropped
// capabilities, AppArmor where present) adds to start → port ready:
// alternating starts with and without it; the ratio is sandboxed p50 over
// unconfined p50.
func BenchmarkSandboxCost(b *testing.B) {
	c, image, runcRoot := benchBackend(b)
	n := NewNetwork(DefaultSubnet, b.Name())
	var sandboxed, unconfined []float64
	for i := 0; i < 20*b.N; i++ {
		spec := ContainerSpec{ID: fmt.Sprintf("sandbox-%d", i), Image: image, RuncRoot: runcRoot, unconfined: i%2 == 1}
		_, ready := startToPortReady(b, c, n, spec)
		if spec.unconfined {
			unconfined = append(unconfined, ready)
		} else {
			sandboxed = append(sandboxed, ready)
		}
	}
	b.ReportMetric(testutil.Percentile(sandboxed, 0.5), "sandboxed_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(unconfined, 0.5), "unconfined_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(sandboxed, 0.5)/testutil.Percentile(unconfined, 0.5), "ratio_to_unconfined")
}

// startToPortReady starts spec (busybox httpd on port 8080) in a network
// of n, waits until the host fetches a page from it, removes it, and
// returns the milliseconds to running and to port ready.
func startToPortReady(b *testing.B, c *client.Client, n *Network, spec ContainerSpec) (running, ready float64) {
	start := time.Now()
	ep, err := n.Setup(spec.ID)
	require.NoError(b, err)
	spec.NetNSPath = ep.NetNSPath
	spec.Entrypoint = []string{"httpd", "-f", "-p", "8080", "-h", "/etc"}
	ctr, err := StartContainer(context.Background(), c, spec)
	require.NoError(b, err)
	running = float64(time.Since(start).Microseconds()) / 1000
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
	ready = float64(time.Since(start).Microseconds()) / 1000
	require.NoError(b, ctr.Destroy(context.Background()))
	require.NoError(b, ep.Teardown())
	return running, ready
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
