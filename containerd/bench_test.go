package containerd

import (
	"context"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
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
			_, err := d.mount(filepath.Join(disks, "templates"), 2000)
			require.NoError(b, err)
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
	compareReady(b, "sandboxed", "unconfined", func(i int, with bool, spec *ContainerSpec) {
		spec.ID, spec.unconfined = fmt.Sprintf("sandbox-%d", i), !with
	})
}

// BenchmarkLogKeeperCost measures what keeping the main process's output
// (the shim starting wharf-init as its log keeper) adds to start → port
// ready: alternating starts with it and with the output discarded; the
// ratio is kept p50 over discarded p50.
func BenchmarkLogKeeperCost(b *testing.B) {
	keeper, err := FindInit()
	require.NoError(b, err)
	logs := b.TempDir()
	compareReady(b, "kept", "discarded", func(i int, with bool, spec *ContainerSpec) {
		spec.ID = fmt.Sprintf("logs-%d", i)
		if with {
			spec.LogPath, spec.LogKeeper = filepath.Join(logs, spec.ID+".log"), keeper
		}
	})
}

// compareReady starts 20·b.N containers, alternately with a feature and
// without (set sets it up on the spec), and reports each side's start →
// port ready p50 and their ratio.
func compareReady(b *testing.B, with, without string, set func(i int, with bool, spec *ContainerSpec)) {
	c, image, runcRoot := benchBackend(b)
	n := NewNetwork(DefaultSubnet, b.Name())
	var ready [2][]float64 // with, without
	for i := 0; i < 20*b.N; i++ {
		spec := ContainerSpec{Image: image, RuncRoot: runcRoot}
		set(i, i%2 == 0, &spec)
		_, ms := startToPortReady(b, c, n, spec)
		ready[i%2] = append(ready[i%2], ms)
	}
	b.ReportMetric(testutil.Percentile(ready[0], 0.5), with+"_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[1], 0.5), without+"_ready_p50_ms")
	b.ReportMetric(testutil.Percentile(ready[0], 0.5)/testutil.Percentile(ready[1], 0.5), "ratio_to_"+without)
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

// BenchmarkExec measures the container side of exec and files, without a
// guest: `exec true` (p50) and exec stdout throughput through the agent
// against runc in the same run (alternating rounds), and writing then
// reading a 1 GiB file through the agent's descriptors against the 500 MB/s
// target.
func BenchmarkExec(b *testing.B) {
	c, image, runcRoot := benchBackend(b)
	init, err := FindInit()
	require.NoError(b, err)
	start := func(id, agentDir string) *Container {
		spec := ContainerSpec{ID: id, Image: image, RuncRoot: runcRoot, Entrypoint: []string{"sleep", "3600"}}
		if agentDir != "" {
			spec.Init, spec.AgentDir = init, agentDir
		}
		ctr, err := StartContainer(context.Background(), c, spec)
		require.NoError(b, err)
		b.Cleanup(func() { ctr.Destroy(context.Background()) })
		return ctr
	}
	withAgent, withRunc := start("exec-agent", filepath.Join(b.TempDir(), "agent")), start("exec-runc", "")

	var agentMs, runcMs, agentMBps, runcMBps, writeMBps, readMBps []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		agentMs = append(agentMs, execTrueP50(b, withAgent, 20))
		runcMs = append(runcMs, execTrueP50(b, withRunc, 20))
		agentMBps = append(agentMBps, execStdoutMBps(b, withAgent, 1024))
		runcMBps = append(runcMBps, execStdoutMBps(b, withRunc, 256))
		w, r := filesRoundTripMBps(b, withAgent, 1024)
		writeMBps, readMBps = append(writeMBps, w), append(readMBps, r)
	}
	b.ReportMetric(testutil.Median(agentMs), "exec_true_agent_p50_ms")
	b.ReportMetric(testutil.Median(runcMs), "exec_true_runc_p50_ms")
	b.ReportMetric(testutil.Median(agentMs)/testutil.Median(runcMs), "exec_ratio_to_runc")
	b.ReportMetric(testutil.Median(agentMBps), "exec_stdout_agent_MB/s")
	b.ReportMetric(testutil.Median(runcMBps), "exec_stdout_runc_MB/s")
	b.ReportMetric(testutil.Median(agentMBps)/testutil.Median(runcMBps), "stdout_ratio_to_runc")
	b.ReportMetric(testutil.Median(writeMBps), "files_write_1GiB_MB/s")
	b.ReportMetric(testutil.Median(readMBps), "files_read_1GiB_MB/s")
	b.ReportMetric(min(testutil.Median(writeMBps), testutil.Median(readMBps))/500, "files_ratio_to_500MB/s_target")
}

// execTrueP50 runs `true` n times in ctr and returns the median in ms.
func execTrueP50(b *testing.B, ctr *Container, n int) float64 {
	var lat []float64
	for range n {
		start := time.Now()
		p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"true"}})
		require.NoError(b, err)
		code, err := p.Wait(context.Background())
		require.NoError(b, err)
		require.Zero(b, code)
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	return testutil.Median(lat)
}

// execStdoutMBps reads mb MiB of zeros from an exec's stdout through a pipe
// (as wharf hands it to a guest's stream) and returns MB/s.
func execStdoutMBps(b *testing.B, ctr *Container, mb int) float64 {
	r, w, err := hostcontainers.Pipe()
	require.NoError(b, err)
	defer r.Close()
	start := time.Now()
	p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"dd", "if=/dev/zero", "bs=1048576", fmt.Sprintf("count=%d", mb)}, Stdout: w})
	if err != nil {
		w.Close()
		require.NoError(b, err)
	}
	var n int64
	read := make(chan error, 1)
	go func() {
		var err error
		n, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 1<<20))
		read <- err
	}()
	_, err = p.Wait(context.Background())
	w.Close() // as wharf does: runc's copy writes into it until the process is waited for
	require.NoError(b, err)
	require.NoError(b, <-read)
	require.Equal(b, int64(mb)<<20, n)
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

// filesRoundTripMBps writes mb MiB to a file of ctr through the agent,
// reads it back, and returns both rates in MB/s.
func filesRoundTripMBps(b *testing.B, ctr *Container, mb int) (write, read float64) {
	ctx := context.Background()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	start := time.Now()
	f, err := ctr.OpenFile(ctx, "/tmp/roundtrip.bin", "", true, 0)
	require.NoError(b, err)
	for range mb {
		_, err := f.Write(chunk)
		require.NoError(b, err)
	}
	require.NoError(b, f.Close())
	write = float64(mb) * 1.048576 / time.Since(start).Seconds()
	start = time.Now()
	f, err = ctr.OpenFile(ctx, "/tmp/roundtrip.bin", "", false, 0)
	require.NoError(b, err)
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, chunk)
	f.Close()
	require.NoError(b, err)
	require.Equal(b, int64(mb)<<20, n)
	read = float64(n) / 1e6 / time.Since(start).Seconds()
	require.NoError(b, ctr.Remove(ctx, "/tmp/roundtrip.bin", "", false))
	return write, read
}
