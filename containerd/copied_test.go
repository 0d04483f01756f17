package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testimages"
)

// eth0Addresses is how many IPv4 addresses the container's eth0 has: 1
// while it has its network, 0 once its link is gone.
func eth0Addresses(t *testing.T, c *Container) string {
	t.Helper()
	_, out, _ := execOut(t, c, ExecSpec{Args: []string{"sh", "-c", "ip -4 addr show eth0 2>/dev/null | grep -c inet"}})
	return out
}

// TestRecoveryOfACopyLeavesTheOriginalsContainers: a copy (cp -a) of the
// data directory of a wharf killed with its containers running has their
// records, its scope, and its containerd's state, where the containers are
// labelled with the original's data directory. Recover took each such
// record for one whose container is gone and tore down the network it
// names: the original's container's veth link and network namespace (the
// scope is the same), so the container ran on without a network and the
// original's next run removed it (its gateway address found no link); and
// the copy's clean shutdown removed the firewall table, which is the
// original's too, so the container, had it kept its network, could reach
// any service on the host. The copy leaves the container, network, record
// and firewall, and says whose it is, as long as the original records the
// container.
func TestRecoveryOfACopyLeavesTheOriginalsContainers(t *testing.T) {
	// The wharf is killed, then its data is copied.
	data, logger, spec, started, tag, network := killedWithAContainer(t)
	copied, second := filepath.Join(t.TempDir(), "copy"), filepath.Join(t.TempDir(), "second")
	for _, dir := range []string{copied, second} {
		out, err := exec.Command("cp", "-a", data, dir).CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Cleanup(func() { os.RemoveAll(dir) })
	}

	serveCopy := func(copied string) (adopted, removed int, err error) {
		t.Helper()
		b, err := OpenBackend(context.Background(), copied, "", logger)
		require.NoError(t, err)
		defer b.Close()
		m, err := NewManager(b, ManagerOptions{Logger: logger})
		require.NoError(t, err)
		defer func() { require.NoError(t, m.Close(context.Background())) }()
		adopted, removed, err = m.Recover(context.Background(), offlinePolicy)
		if err != nil {
			_, startErr := m.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
			assert.ErrorContains(t, startErr, "which this one is a copy of", "the copy starts no second container of the object")
			assert.ErrorContains(t, startErr, "stop this wharf, remove "+scopeFile(copied)+" to give this copy a network scope of its own, "+
				"and start it again: it then runs a container of its own for the object", "what to do")
			assert.NotContains(t, startErr.Error(), "look at it again", "restarting alone does not help")
		}
		return adopted, removed, err
	}
	adopted, removed, err := serveCopy(copied)
	assert.True(t, OnlyUnexamined(err), "%v", err)
	assert.True(t, OnlyCopied(err), "%v", err)
	assert.ErrorContains(t, err, "it is the container of the data directory "+data+", which this one is a copy of: serve that one to adopt or remove it")
	assert.Equal(t, 0, adopted)
	assert.Equal(t, 0, removed, "the original's container is not the copy's")
	assert.Equal(t, network, networkNamesOf(tag), "the original's container keeps its network")

	// A copy given a scope of its own (its network-scope removed) leaves
	// nothing of its own on its clean stop: the original's container is
	// behind the original's firewall, which stays, not the copy's.
	require.NoError(t, os.Remove(filepath.Join(second, "containerd", "network-scope")))
	_, _, err = serveCopy(second)
	require.NoError(t, err)
	own := Scope(second)
	require.NotEqual(t, tag, own)
	assert.Empty(t, egress.FirewallLeftovers(own), "the copy's table")
	assert.Equal(t, network, networkNamesOf(tag), "the original's container keeps its network")
	assert.NotEmpty(t, egress.FirewallLeftovers(tag), "the firewall that keeps the original's container from the host stays")

	// The original's next run adopts its container, network and all.
	b3, m3 := nextRun(t, data, logger)
	adopted, removed, err = m3.Recover(context.Background(), offlinePolicy)
	require.NoError(t, err)
	assert.Equal(t, 1, adopted)
	assert.Equal(t, 0, removed)
	mc, ok := m3.Get("Sandbox", "obj1")
	require.True(t, ok)
	assert.Equal(t, started.Pid(), mc.Pid())
	assert.Equal(t, "1\n", eth0Addresses(t, mc.Container), "with its network")
	require.NoError(t, m3.Close(context.Background()))
	require.NoError(t, RemoveImage(context.Background(), b3.Client, spec.Image, false))

	// Once the original has removed its container, the copy's record of
	// it names nothing of the original's: it goes.
	adopted, removed, err = serveCopy(copied)
	require.NoError(t, err)
	assert.Equal(t, 0, adopted)
	assert.Equal(t, 1, removed)
	assert.Empty(t, journalAt(copied).leftovers())
	assert.Empty(t, egress.FirewallLeftovers(tag))
}

// TestACopyStartsTheContainersItsOriginalRan: a copy (cp -a) of the data
// directory of a running wharf has, in its containerd, the container
// entries and task state of the original's containers. Served (with a
// scope of its own while the original runs, with the original's once it
// has stopped), it left those entries as another wharf's: the object's
// next start in the copy failed with containerd's "already exists", for
// good. Its containerd also took the task state that came with the copy
// for its own: it connected to the original's shims and listed the
// original's running container (the restarted one too: its shim's socket
// is named after the original's containerd and the id) as its task. The
// copy now starts the object's container afresh, and the original's
// container runs on untouched.
func TestACopyStartsTheContainersItsOriginalRan(t *testing.T) {
	data, logger, b1, m1, spec := crashingHost(t)
	removeAllIfFailed(t, data, logger, spec)
	first, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	tag := m1.net.scope
	copies := map[string]string{}
	for _, name := range []string{"own", "later", "same"} {
		dir := filepath.Join(t.TempDir(), name)
		out, err := exec.Command("cp", "-a", data, dir).CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Cleanup(func() { os.RemoveAll(dir) })
		copies[name] = dir
	}
	for _, name := range []string{"own", "later"} {
		require.NoError(t, os.Remove(scopeFile(copies[name])), "given a scope of its own, as the refusal says")
	}
	// stillRuns checks that the original's container of obj1 runs on,
	// with its network.
	stillRuns := func(mc *Managed, what string) {
		t.Helper()
		got, ok := m1.Get("Sandbox", "obj1")
		require.True(t, ok, what)
		assert.Equal(t, mc.Pid(), got.Pid(), what)
		assert.False(t, got.Exited(), what)
		assert.Equal(t, "1\n", eth0Addresses(t, got.Container), "%s: with its network", what)
	}
	// serveCopy serves the copy dir, starts its container of obj1, and
	// stops it, leaving nothing.
	serveCopy := func(dir string) (removed int) {
		t.Helper()
		b, err := OpenBackend(context.Background(), dir, "", logger)
		require.NoError(t, err)
		defer b.Close()
		m, err := NewManager(b, ManagerOptions{Logger: logger})
		require.NoError(t, err)
		defer func() {
			require.NoError(t, m.Close(context.Background()))
			require.NoError(t, RemoveImage(context.Background(), b.Client, spec.Image, false))
			left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
			require.NoError(t, err)
			assert.Empty(t, left, "the copy %s leaves nothing", dir)
			assert.Empty(t, journalAt(dir).leftovers())
		}()
		adopted, removed, err := m.Recover(context.Background(), offlinePolicy)
		require.NoError(t, err)
		assert.Equal(t, 0, adopted, "the original's container is not the copy's")
		mc, err := m.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
		require.NoError(t, err, "the copy starts the object's container")
		code, out, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"sh", "-c", "echo copy > /f && cat /f"}})
		assert.Equal(t, uint32(0), code)
		assert.Equal(t, "copy\n", out)
		assert.Equal(t, "1\n", eth0Addresses(t, mc.Container), "with its network")
		assert.NotEqual(t, first.Pid(), mc.Pid())
		return removed
	}

	// A second wharf from a copy, while the original runs the object.
	serveCopy(copies["own"])
	stillRuns(first, "the original's container, after a copy served")

	// The original restarts the object: the shim the copies' task state
	// names is gone, and a new container has the same id.
	require.NoError(t, m1.Destroy(context.Background(), "Sandbox", "obj1"))
	second, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	serveCopy(copies["later"])
	stillRuns(second, "the original's restarted container, after a copy made before the restart served")

	// The original stops (removing its container); the copy that kept its
	// scope is served, as a backup is.
	closeLeavingNothing(t, b1, m1, spec)
	assert.Equal(t, 1, serveCopy(copies["same"]), "the copy's record of the original's container")
	assert.Empty(t, egress.FirewallLeftovers(tag))
}

// killedWithAContainer is a wharf killed (kill -9) while the container of
// Sandbox obj1 ran: its containerd is gone, its firewall table and the
// container with its network stay, and its scope is free. It returns the
// host's data directory, logger and spec, the container, the scope and
// the container's network names.
func killedWithAContainer(t *testing.T) (data string, logger *slog.Logger, spec ContainerSpec, started *Managed, tag string, network []string) {
	t.Helper()
	data, logger, b1, m1, spec := crashingHost(t)
	removeAllIfFailed(t, data, logger, spec)
	started, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	tag = m1.net.scope
	network = networkNamesOf(tag)
	require.Len(t, network, 2, "the container's link and network namespace")
	require.NoError(t, b1.Close())
	require.NoError(t, m1.Gateway().CloseKeepingFirewall())
	m1.releaseScope()
	return data, logger, spec, started, tag, network
}

// TestAMovedDataDirsKilledContainersAreRemoved: the data directory of a
// wharf killed with its container running, moved (mv) before its next
// run. The container's shim kept working in it (a process's directory
// moves with it) but names its containerd's socket and runc's state by
// the old path: the container could be neither adopted nor stopped, ran
// on for good, and its object never started again ("already exists").
// With a directory made anew at the old path, the move was taken for a
// copy of that one. The next run stops the container, with its shim, and
// says so; its object starts afresh.
func TestAMovedDataDirsKilledContainersAreRemoved(t *testing.T) {
	for _, oldPathMadeAnew := range []bool{false, true} {
		t.Run(fmt.Sprintf("old path made anew %v", oldPathMadeAnew), func(t *testing.T) {
			data, _, spec, started, tag, _ := killedWithAContainer(t)
			moved := filepath.Join(t.TempDir(), "moved")
			require.NoError(t, os.Rename(data, moved))
			if oldPathMadeAnew {
				// Not served: TestAMovedDataDirsOldPathServedFirst serves it.
				require.NoError(t, os.Mkdir(data, 0o700))
			}
			// The lock file of the killed wharf names the old path.
			raw, err := json.Marshal(scopeHolder{PID: 1 << 22, DataDir: data})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(scopeLockPath(tag), raw, 0o644))

			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			b, m := nextRun(t, moved, logger)
			adopted, removed, err := m.Recover(context.Background(), offlinePolicy)
			require.NoError(t, err)
			assert.Equal(t, 0, adopted)
			assert.Equal(t, 1, removed)
			assert.True(t, exited(int(started.Pid())), "the container's process is stopped")
			assert.Empty(t, shimsAmong(processes(), EmbeddedAddress(data)), "and its shim")
			assert.Contains(t, logs.String(), `level=WARN msg="this data directory was moved from `+data+` while the containers of the wharf killed there ran: `+
				`they named the old path, so they could be neither adopted nor stopped, and were stopped now; their objects start afresh" moved_from=`+data+` removed="shim `)
			assert.NotContains(t, logs.String(), "copy")

			mc, err := m.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
			require.NoError(t, err, "the object starts afresh")
			assert.Equal(t, "1\n", eth0Addresses(t, mc.Container), "with its network")
			assert.Equal(t, tag, m.net.scope, "on the scope the data directory keeps")
			require.NoError(t, m.Close(context.Background()))
			assert.Empty(t, MountsUnder(moved))
			require.NoError(t, RemoveImage(context.Background(), b.Client, spec.Image, false))
		})
	}
}

// TestAMovedDataDirsOldPathServedFirst: the data directory of a wharf
// killed with its container running, moved (mv), and a data directory
// made anew at the old path and served before the moved one. The moved
// container's shim and cgroup are named after the old path's containerd,
// and so are those of the new wharf's container of the same object: its
// start found the moved shim serving the socket, and its stop (runc kill
// --all signals the whole cgroup) killed the moved container's processes,
// leaving their mounts in the moved directory, whose next run was then
// refused as a copy with something mounted. The wharf at the old path
// stops the moved containers before its containerd starts, and says so;
// both data directories then serve the object, and nothing is left.
func TestAMovedDataDirsOldPathServedFirst(t *testing.T) {
	data, _, spec, started, tag, _ := killedWithAContainer(t)
	moved := filepath.Join(t.TempDir(), "moved")
	require.NoError(t, os.Rename(data, moved))
	require.NoError(t, os.Mkdir(data, 0o700))
	removeAllIfFailed(t, moved, slog.New(slog.DiscardHandler), spec)
	// The lock file of the killed wharf names the old path.
	raw, err := json.Marshal(scopeHolder{PID: 1 << 22, DataDir: data})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(scopeLockPath(tag), raw, 0o644))

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	serve := func(dir string, removedWant int) {
		t.Helper()
		b, err := OpenBackend(context.Background(), dir, "", logger)
		require.NoError(t, err)
		defer b.Close()
		archivePath, err := testimages.Busybox(t.TempDir())
		require.NoError(t, err)
		_, err = ImportArchive(context.Background(), b.Client, archivePath, "")
		require.NoError(t, err)
		m, err := NewManager(b, ManagerOptions{Logger: logger})
		require.NoError(t, err)
		adopted, removed, err := m.Recover(context.Background(), offlinePolicy)
		require.NoError(t, err)
		assert.Equal(t, 0, adopted)
		assert.Equal(t, removedWant, removed)
		assert.True(t, exited(int(started.Pid())), "the moved container's process is stopped")
		assert.Empty(t, MountsUnder(moved), "and what it had mounted")
		mc, err := m.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
		require.NoError(t, err, "%s serves the object", dir)
		assert.Equal(t, "1\n", eth0Addresses(t, mc.Container), "with its network")
		require.NoError(t, m.Close(context.Background()))
		require.NoError(t, RemoveImage(context.Background(), b.Client, spec.Image, false))
		left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
		require.NoError(t, err)
		assert.Empty(t, left)
		assert.Empty(t, journalAt(dir).leftovers())
		assert.Empty(t, MountsUnder(dir))
	}
	serve(data, 0)
	assert.Contains(t, logs.String(), `level=WARN msg="the data directory that was at `+data+` was moved to `+moved+` while the containers of the wharf killed there ran: `+
		`they still used this path's names (its containerd's socket, its containers' shims and cgroups), which this wharf's containers take, `+
		`and were stopped now; their objects start afresh when `+moved+` is served" moved_to=`+moved+` removed="shim `)
	serve(moved, 1)
	assert.Empty(t, networkNamesOf(tag), "the moved container's network is gone")
	assert.Empty(t, egress.FirewallLeftovers(tag))
	assert.Empty(t, shimsAmong(processes(), EmbeddedAddress(data)))
}

// TestTheOldPathOfARunningWharfsMovedDataDirIsRefused: the data directory
// of a running wharf moved (mv), and one made anew at the old path. Its
// containers are the running wharf's, named after the old path: a wharf
// of the new directory is refused rather than stop them or share their
// names, and says why.
func TestTheOldPathOfARunningWharfsMovedDataDirIsRefused(t *testing.T) {
	data, logger, b1, m1, spec := crashingHost(t)
	removeAllIfFailed(t, data, logger, spec)
	started, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	moved := filepath.Join(t.TempDir(), "moved")
	require.NoError(t, os.Rename(data, moved))
	require.NoError(t, os.Mkdir(data, 0o700))
	b2, err := OpenBackend(context.Background(), data, "", logger)
	if err == nil {
		b2.Close()
	}
	assert.ErrorContains(t, err, "the data directory that was at "+data+" was moved to "+moved+" while its wharf ran, which still runs its containers "+
		"under this path's names (its containerd's socket, its containers' shims and cgroups), which this one's containers would take: stop that wharf first")
	assert.False(t, exited(int(started.Pid())), "the running wharf's container runs on")

	// Moved back, the running wharf stops cleanly.
	require.NoError(t, os.RemoveAll(data))
	require.NoError(t, os.Rename(moved, data))
	closeLeavingNothing(t, b1, m1, spec)
}

// closeLeavingNothing closes m and b, removing spec's image, and checks
// that nothing of them is left.
func closeLeavingNothing(t *testing.T, b *Backend, m *Manager, spec ContainerSpec) {
	t.Helper()
	require.NoError(t, m.Close(context.Background()))
	require.NoError(t, RemoveImage(context.Background(), b.Client, spec.Image, false))
	left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
	require.NoError(t, err)
	assert.Empty(t, left)
	require.NoError(t, b.Close())
}
