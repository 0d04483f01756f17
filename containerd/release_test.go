package containerd

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/egresspolicy"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/keptlog"
)

// ownSubnet is a /24 of its own (10.238.X.0/24, X at random) for a test
// that counts on which /30 a start takes: other wharfs on the host (tests
// side by side) take and free addresses of the default subnet at any
// moment, and a start skips those on the host.
func ownSubnet() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 238, byte(rand.IntN(256)), 0}), 24)
}

// ranWith lists what the containers of m run with on the host: shims, log
// keepers, task bundles, network namespaces and links, cgroups, disk
// mounts and loop devices.
func ranWith(m *Manager) []string {
	out := append(shimProcesses(m.b.Address), logKeepers(m.b.DataDir)...)
	for id := range taskBundles(m.b.DataDir, Namespace) {
		out = append(out, "task bundle "+id)
	}
	out = append(out, NetworkLeftovers(m.b.DataDir)...)
	for _, c := range cgroupsOf(m.b.RuncRoot) {
		out = append(out, "cgroup "+c)
	}
	for _, mnt := range MountsUnder(m.disksDir()) {
		out = append(out, "mount "+mnt)
	}
	for _, l := range loopDevicesOf(m.b.DataDir) {
		out = append(out, "loop device "+l)
	}
	return out
}

// waitReleased waits until the release of mc, an exited container of m,
// is done, and checks that the containers of m then run with nothing on
// the host (see ranWith).
func waitReleased(t *testing.T, m *Manager, mc *Managed) {
	t.Helper()
	released := func() bool {
		mc.relMu.Lock()
		defer mc.relMu.Unlock()
		return mc.released
	}
	for deadline := time.Now().Add(20 * time.Second); !released(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the exited container was not released: it runs with %q", ranWith(m))
		}
	}
	assert.Empty(t, ranWith(m), "an exited container runs with nothing")
}

// readLog is the output kept of the object's container.
func readLog(t *testing.T, m *Manager, class, object string) string {
	t.Helper()
	r, err := keptlog.Open(m.LogPath(class, object))
	require.NoError(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return string(b)
}

// TestExitedContainerReleasesWhatOnlyARunningOneNeeds: once the main
// process of a container has exited, its shim, log keeper, task, network
// namespace and veth pair, cgroup and disks are gone (they stayed until
// the object destroyed or started it again: ~18 MB of processes and a /30
// per exited container), while what ps -a, inspect, logs and a monitor
// read is still there: the container, its exit code, labels and output.
// Signals, execs and agent calls still say it is not running; its /30
// goes to the next container, whose egress a destroy of the exited one
// then leaves alone; a destroy and a start again of the object work, and
// its persistent directories kept what it wrote.
func TestExitedContainerReleasesWhatOnlyARunningOneNeeds(t *testing.T) {
	m, image := testManagerWith(t, ManagerOptions{Subnet: ownSubnet()})
	ctx := context.Background()
	persist := filepath.Join(m.b.DataDir, "objects", "Sandbox", "persist", "obj", "disk.img")
	spec := ContainerSpec{Image: image, DiskMB: 16, Labels: map[string]string{"wharf.label.team": "a"},
		Persistent: PersistentDirs{Paths: []string{"/data"}, Image: persist, SizeMB: 8},
		Entrypoint: []string{"sh", "-c", "echo out; echo err >&2; while [ ! -e /data/go ]; do sleep 0.05; done; exit 3"}}
	mc, err := m.Start(ctx, "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)
	running := strings.Join(ranWith(m), "\n")
	for _, what := range []string{"shim process", "log keeper process", "task bundle", "network namespace", "link", "cgroup", "mount", "loop device"} {
		assert.Contains(t, running, what, "a running container runs with it")
	}
	addr := mc.Endpoint.ContainerIP

	code, _, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"touch", "/data/go"}})
	require.Zero(t, code)
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	code, err = mc.Wait(waitCtx)
	require.NoError(t, err)
	require.Equal(t, uint32(3), code)
	waitReleased(t, m, mc)

	// What ps -a, inspect, logs and a monitor read.
	got, ok := m.Get("Sandbox", "obj")
	require.True(t, ok, "the exited container is still known")
	assert.Same(t, mc, got)
	assert.Contains(t, m.List(), mc)
	assert.True(t, got.Exited())
	code, reason, err := got.WaitExit()
	assert.NoError(t, err)
	assert.Equal(t, uint32(3), code)
	assert.Empty(t, reason)
	assert.Empty(t, got.StopCause())
	assert.False(t, got.OutOfMemory())
	assert.Equal(t, "a", got.Labels(ctx)["wharf.label.team"], "its labels are on the container, kept until the destroy")
	assert.Equal(t, mc.Pid(), got.Pid())
	out := readLog(t, m, "Sandbox", "obj")
	assert.Contains(t, out, "out\n")
	assert.Contains(t, out, "err\n")
	_, err = m.b.Client.LoadContainer(WithNamespace(ctx), mc.ID())
	assert.NoError(t, err, "the containerd container stays until the destroy")

	// It is not running, whatever is asked of it.
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGCONT, syscall.SIGTERM, syscall.SIGKILL} {
		assert.ErrorIs(t, mc.Signal(ctx, sig), hostcontainers.ErrExitedMeanwhile, "%v", sig)
	}
	_, err = mc.Exec(ctx, ExecSpec{Args: []string{"true"}})
	assert.ErrorIs(t, err, hostcontainers.ErrExitedMeanwhile)
	_, err = mc.Stat(ctx, "/etc/passwd", "")
	assert.ErrorIs(t, err, hostcontainers.ErrExitedMeanwhile)
	_, err = mc.Backgrounds(ctx)
	assert.ErrorIs(t, err, hostcontainers.ErrExitedMeanwhile)
	_, err = mc.Stats(ctx)
	assert.Error(t, err)
	assert.NoError(t, m.Stop(ctx, "Sandbox", "obj", time.Second, "stopped by the test"), "a stop of an exited container does nothing")
	_, err = m.Start(ctx, "Sandbox", "obj", spec, openPolicy(), 0)
	assert.ErrorContains(t, err, "already running", "the manager starts it again only once it is destroyed, as before")

	// Its /30 went back to the pool: the next container gets it, and the
	// destroy of the exited one leaves that one's egress alone (its
	// resolver still answers it).
	otherPolicy := openPolicy()
	require.NoError(t, otherPolicy.InterceptHTTP("api.test", "h"))
	other, err := m.Start(ctx, "Sandbox", "other", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, otherPolicy, 0)
	require.NoError(t, err)
	assert.Equal(t, addr, other.Endpoint.ContainerIP, "the exited container's address is free again")
	require.NoError(t, m.Destroy(ctx, "Sandbox", "obj"))
	_, ok = m.Get("Sandbox", "obj")
	assert.False(t, ok)
	code, stdout, stderr := execOut(t, other.Container, ExecSpec{Args: []string{"nslookup", "api.test"}})
	assert.Zero(t, code, "the other container's egress is still attached: %s%s", stdout, stderr)
	require.NoError(t, m.Destroy(ctx, "Sandbox", "other"))

	// A start again (the host destroys an exited container first, as
	// above) runs, with what the persistent directories kept.
	spec.Entrypoint = []string{"sleep", "3600"}
	again, err := m.Start(ctx, "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)
	code, _, _ = execOut(t, again.Container, ExecSpec{Args: []string{"test", "-e", "/data/go"}})
	assert.Zero(t, code, "the persistent directory kept what the container wrote before it exited")
	assert.NotContains(t, readLog(t, m, "Sandbox", "obj"), "out\n", "a new start, a new log")
	require.NoError(t, m.Destroy(ctx, "Sandbox", "obj"))
	// The kernel lets the persistent disk's loop device go once the
	// container's mount namespace, which holds the disk's bind mount, is
	// gone too: a moment after the destroy, under load.
	assert.Eventually(t, func() bool { return len(loopDevicesOf(m.b.DataDir)) == 0 }, 10*time.Second, 20*time.Millisecond,
		"the loop devices go")
}

// TestReleaseRacesDestroyAndStart: a destroy right as the container
// exits (its release under way), a start right after it and a shutdown
// with exited containers being released leave nothing behind and fail
// nothing.
func TestReleaseRacesDestroyAndStart(t *testing.T) {
	m, image := testManager(t)
	ctx := context.Background()
	spec := ContainerSpec{Image: image, DiskMB: 16, Entrypoint: []string{"true"}}
	for i := range 5 {
		mc, err := m.Start(ctx, "Sandbox", "obj", spec, openPolicy(), 0)
		require.NoError(t, err, "start %d", i)
		if i%2 == 1 {
			<-mc.exited
		}
		require.NoError(t, m.Destroy(ctx, "Sandbox", "obj"), "destroy %d", i)
	}
	for i := range 3 {
		_, err := m.Start(ctx, "Sandbox", fmt.Sprint("obj", i), spec, openPolicy(), 0)
		require.NoError(t, err)
	}
	require.NoError(t, m.Close(ctx))
	assert.Empty(t, ranWith(m))
}

// TestCrashInRelease: wharf killed at each step of the
// release of an exited container (before its task is deleted, before
// its network is, before its record says so, before its /30 goes back,
// and after the release) leaves nothing once the next run recovered: the
// exited container is removed, the running one adopted with its /30,
// which the removal does not give to another container.
func TestCrashInRelease(t *testing.T) {
	for _, cutAt := range []string{"task", "network", "record", "slot", ""} {
		t.Run(cmp.Or(cutAt, "after"), func(t *testing.T) { // short: containerd's socket path is at most 104 bytes
			subnet := ownSubnet()
			data, logger, b1, m1, spec := crashingHostWith(t, ManagerOptions{Subnet: subnet})
			reached := make(chan struct{})
			var once sync.Once
			releaseCut = func(step string) bool {
				if step != cutAt {
					return false
				}
				once.Do(func() { close(reached) })
				return true
			}
			defer func() { releaseCut = nil }()
			exits := spec
			exits.Entrypoint = []string{"sh", "-c", "echo bye; exit 7"}
			gone, err := m1.Start(context.Background(), "Sandbox", "exits", exits, offlinePolicy("", false), 0)
			require.NoError(t, err)
			<-gone.exited
			if cutAt != "" {
				<-reached
			} else {
				waitReleased(t, m1, gone)
			}
			// Started after the exit: with the release complete it takes
			// the exited container's /30, which the exited one's record
			// still names.
			kept, err := m1.Start(context.Background(), "Sandbox", "kept", spec, offlinePolicy("", false), 0)
			require.NoError(t, err)
			if cutAt == "" {
				assert.Equal(t, gone.Endpoint.slot, kept.Endpoint.slot)
			}
			require.NoError(t, b1.Close())
			m1.Gateway().Close()

			b2 := reopened(t, data, logger)
			m2, err := NewManager(b2, ManagerOptions{Logger: logger, Subnet: subnet})
			require.NoError(t, err)
			adopted, removed, err := m2.Recover(context.Background(), func(string, bool) *egresspolicy.Policy { return offlinePolicy("", false) })
			require.NoError(t, err)
			assert.Equal(t, 1, adopted, "the running container")
			assert.Equal(t, 1, removed, "the exited one")
			_, ok := m2.Get("Sandbox", "exits")
			assert.False(t, ok)
			mc, ok := m2.Get("Sandbox", "kept")
			require.True(t, ok)
			m2.net.mu.Lock()
			assert.True(t, m2.net.used[mc.Endpoint.slot], "the adopted container's /30 stays reserved")
			m2.net.mu.Unlock()
			code, _, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"true"}})
			assert.Zero(t, code)
			require.NoError(t, m2.Close(context.Background()))
			require.NoError(t, RemoveImage(context.Background(), b2.Client, spec.Image, false))
		})
	}
}
