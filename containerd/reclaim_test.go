package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestKilledTestsContainersAreReclaimed: a test binary killed with SIGKILL
// (a -timeout, an impatient developer) runs no cleanup. Its containerd
// goes with it, but its container keeps running, with its shim, network,
// disk and cgroup. The next test process removes all of it, and leaves the
// containers of running tests alone.
func TestKilledTestsContainersAreReclaimed(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_RECLAIM_CHILD_DATA"); data != "" {
		startAndWaitToBeKilled(t, data)
	}
	running, image := testManager(t) // this test process's: it must be left alone
	mc, err := running.Start(context.Background(), "Box", "running", ContainerSpec{Image: image,
		Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)

	data, release := killedTestsContainer(t)
	left := HostLeftovers(data)
	require.NotEmpty(t, left, "the killed test's container outlives it")
	t.Logf("left by the killed test: %s", strings.Join(left, "; "))
	release()

	reclaimEndedAndWait(t, data)
	assert.Empty(t, HostLeftovers(data), "left after reclaiming")
	assert.False(t, mc.Exited(), "this process's container runs on")
}

// killedTestsContainer runs a child test that starts a container in a data
// directory, kills it with SIGKILL and returns that directory once the
// child's containerd has stopped. The directory stays locked until release
// is called, so that another test process starting meanwhile does not
// reclaim it before the test has looked at what the child left.
func killedTestsContainer(t *testing.T) (data string, release func()) {
	return killedTestsContainerAt(t, "started")
}

// killedTestsContainerAt is killedTestsContainer with the child killed as
// soon as it says when: "starting" (its container), "started", or
// "half-destroyed" (its task and shim gone, as a destroy removes them
// first; its network, disk and record not yet).
func killedTestsContainerAt(t *testing.T, when string) (data string, release func()) {
	return testutil.KillChildTestWith(t, "TestKilledTestsContainersAreReclaimed", "WHARF_TEST_RECLAIM_CHILD_DATA", when)
}

// reclaimEndedAndWait calls ReclaimEnded, then waits for the lock of data,
// the killed child's data directory: a test process of another package
// that started once the test released it may be reclaiming it, and
// ReclaimEnded leaves it to that process.
func reclaimEndedAndWait(t *testing.T, data string) {
	_, err := ReclaimEnded(context.Background(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	testutil.LockDir(t, data)()
}

// TestReclaimEndedLeavesWhatAnotherProcessReclaimed: a data directory that
// another test process reclaimed between ReclaimEnded's list and its lock
// (and that its test may be removing, or that a test may have started on
// since) is left alone: no containerd of ReclaimEnded's starts there.
func TestReclaimEndedLeavesWhatAnotherProcessReclaimed(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	data := t.TempDir()
	mark := os.Getenv(ephemeral.Env)
	t.Setenv(ephemeral.Env, strconv.Itoa(ended.Process.Pid)) // registered by an ended test
	require.NoError(t, ephemeral.Register(data))
	os.Setenv(ephemeral.Env, mark)
	t.Cleanup(func() { ephemeral.Forget(data) })
	beforeRecheck = func(dir string) {
		if dir == data {
			ephemeral.Forget(dir) // the other process reclaimed it
		}
	}
	t.Cleanup(func() { beforeRecheck = func(string) {} })

	dirs, err := ReclaimEnded(context.Background(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.NotContains(t, dirs, data)
	assert.NoDirExists(t, daemonDir(data), "a containerd started in the data directory")
}

// TestKilledTestsHalfStartedContainerIsReclaimed: a test killed while its
// container starts may leave its network, disk and journal record before
// any shim runs (or after it is gone, while it destroys it): the data
// directory the test registered is reclaimed all the same.
func TestKilledTestsHalfStartedContainerIsReclaimed(t *testing.T) {
	data, release := killedTestsContainerAt(t, "starting")
	t.Logf("left by the killed test: %s", strings.Join(HostLeftovers(data), "; "))
	release()

	reclaimEndedAndWait(t, data)
	assert.Empty(t, HostLeftovers(data), "left after reclaiming")
}

// TestKilledTestsHalfDestroyedContainerIsReclaimed: a test killed while it
// destroyed a container, after its task and shim were gone, leaves no
// process carrying its mark, but the container's network, disk and record
// stay. The next test process finds them by the data directory the killed
// test registered.
func TestKilledTestsHalfDestroyedContainerIsReclaimed(t *testing.T) {
	data, release := killedTestsContainerAt(t, "half-destroyed")
	left := HostLeftovers(data)
	require.NotEmpty(t, left, "the network, disk and record outlive the killed test")
	require.Empty(t, shimProcesses(EmbeddedAddress(data)), "the half-destroyed container has no shim")
	t.Logf("left by the killed test: %s", strings.Join(left, "; "))
	release()

	reclaimEndedAndWait(t, data)
	assert.Empty(t, HostLeftovers(data), "left after reclaiming")
}

// TestContainersAWharfAdoptedAreLeft: a killed test's containers that a
// wharf serve on the same data directory (wharftest's Options.DataDir may
// be the plugin's .wharf) adopted are that wharf's, though their shims
// carry the test's mark: once it is killed too they are left for its next
// start to adopt.
func TestContainersAWharfAdoptedAreLeft(t *testing.T) {
	data, release := killedTestsContainer(t)
	logger := slog.New(slog.DiscardHandler)
	t.Setenv(ephemeral.Env, "") // a wharf serve, not a test
	b, err := OpenBackend(context.Background(), data, "", logger)
	require.NoError(t, err)
	require.NoError(t, b.Close()) // its containers stay, as a kill -9 leaves them
	require.NotEmpty(t, HostLeftovers(data))
	release()

	_, err = ReclaimEnded(context.Background(), logger)
	require.NoError(t, err)
	assert.NotEmpty(t, HostLeftovers(data), "the container is left for the wharf to adopt")

	require.NoError(t, os.Remove(adoptablePath(data))) // as a test's OpenBackend does
	_, err = ReclaimEnded(context.Background(), logger)
	require.NoError(t, err)
	testutil.LockDir(t, data)() // another test process may be reclaiming it
	assert.Empty(t, HostLeftovers(data), "reclaimed once no longer adoptable")
}

// startAndWaitToBeKilled is the child of the tests above: a container with
// a network and a disk in data, its task and shim then destroyed, then
// nothing until killed.
func startAndWaitToBeKilled(t *testing.T, data string) {
	logger := slog.New(slog.DiscardHandler)
	b, err := OpenBackend(context.Background(), data, "", logger)
	require.NoError(t, err)
	archive, err := testimages.Busybox(data) // not t.TempDir(): the kill leaves those
	require.NoError(t, err)
	imgs, err := ImportArchive(context.Background(), b.Client, archive, "")
	require.NoError(t, err)
	m, err := NewManager(b, ManagerOptions{Logger: logger})
	require.NoError(t, err)
	fmt.Println("starting")
	mc, err := m.Start(context.Background(), "Box", "obj", ContainerSpec{Image: imgs[0].Name, DiskMB: 10,
		Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	fmt.Println("started")
	// As Manager.Destroy begins: the exit that comes of it releases
	// nothing (see Manager.release), the destroy removes it all.
	mc.relMu.Lock()
	mc.destroying = true
	mc.relMu.Unlock()
	require.NoError(t, mc.Container.Destroy(context.Background()))
	fmt.Println("half-destroyed")
	select {}
}
