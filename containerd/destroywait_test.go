package containerd

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/testutil"
)

// returnsWithin runs f and returns its error and how long it took,
// failing the test if it takes longer than limit; unblock (run then) lets
// an f that hangs return.
func returnsWithin(t *testing.T, limit time.Duration, unblock func(), f func() error) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Errorf("no return within %s", limit)
		unblock()
		return <-done, time.Since(start)
	}
}

// TestShutdownKillsAContainerRuncLostTrackOf: runc's state of a running
// container removed under wharf (its state directory deleted) made the
// kill of a shutdown's destroy find no container, and the task's delete
// waited for ever for an exit: wharf serve never exited on SIGINT. The
// destroy kills the container's init by its pid instead.
func TestShutdownKillsAContainerRuncLostTrackOf(t *testing.T) {
	m, image := testManager(t)
	mc, err := m.Start(context.Background(), "Sandbox", "obj", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	pid := int(mc.Pid())
	t.Cleanup(func() {
		// What a destroy that failed left: once its init is killed, the
		// manager's Close at testManager's cleanup removes the rest.
		if processExists(pid) {
			mc.killInit(context.Background())
			m.mu.Lock()
			m.byID[mc.ID()] = mc
			m.mu.Unlock()
		}
	})
	require.NoError(t, os.RemoveAll(filepath.Join(m.b.RuncRoot, Namespace, mc.ID())))

	err, took := returnsWithin(t, destroyWait, func() { mc.killInit(context.Background()) }, func() error { return m.DestroyAll(context.Background()) })
	assert.NoError(t, err)
	assert.Less(t, took, killWait, "the container exits at the kill")
	assert.False(t, processExists(pid), "the container's init (pid %d) is gone", pid)
}

// TestKillInitSparesAnotherWharfsContainerOfTheSameID: the pid of a
// container whose runc state was lost, found in the cgroup of another
// wharf's container of the same id (another data directory serving the
// same objects: only the runc root's tag in the cgroup's name differs), is
// not the container's init and is not killed; it was, as the cgroup's
// name ended with the container's id.
func TestKillInitSparesAnotherWharfsContainerOfTheSameID(t *testing.T) {
	m, image := testManager(t)
	mc, err := m.Start(context.Background(), "Sandbox", "obj", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	pid := int(mc.Pid())
	own, _, err := processCgroup(pid, "pids")
	require.NoError(t, err)
	other := filepath.Join(filepath.Dir(own), "00000000-"+mc.ID())
	require.NotEqual(t, own, other)
	require.NoError(t, os.Mkdir(other, 0o755))
	moveTo := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	t.Cleanup(func() {
		moveTo(own) // for the manager's Close at testManager's cleanup
		syscall.Rmdir(other)
	})
	require.NoError(t, moveTo(other))
	require.NoError(t, os.RemoveAll(filepath.Join(m.b.RuncRoot, Namespace, mc.ID())))

	require.NoError(t, mc.killInit(context.Background()))
	time.Sleep(100 * time.Millisecond)
	assert.True(t, processExists(pid), "the process (pid %d) in another wharf's cgroup runs on", pid)

	require.NoError(t, moveTo(own))
	require.NoError(t, mc.killInit(context.Background()))
	assert.Eventually(t, func() bool { return !processExists(pid) }, 5*time.Second, 20*time.Millisecond,
		"the container's init (pid %d), back in its cgroup, is killed", pid)
}

// TestShutdownGivesUpADestroyItsShimDoesNotAnswer: a destroy on shutdown
// whose shim does not answer is given up after destroyWait, with a line
// that names the container and what is left, and the firewall that keeps
// the container from the host stays; the next run removes what is left.
func TestShutdownGivesUpADestroyItsShimDoesNotAnswer(t *testing.T) {
	data, logger, b1, m1, spec := crashingHost(t)
	var logs testutil.LogBuffer
	m1.life.log = slog.New(slog.NewTextHandler(&logs, nil))
	mc, err := m1.Start(context.Background(), "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)
	pid := int(mc.Pid())
	t.Cleanup(func() { mc.killInit(context.Background()) }) // if the next run did not
	shimPid := 0
	for _, sh := range shims(b1.Address) {
		if sh.id == mc.ID() {
			shimPid = sh.pid
		}
	}
	require.NotZero(t, shimPid, "the container's shim")
	was := destroyWait
	destroyWait = 2 * time.Second
	t.Cleanup(func() { destroyWait = was })

	thaw := freezeAlone(t, shimPid)
	err, took := returnsWithin(t, destroyWait+10*time.Second, thaw, func() error { return m1.Close(context.Background()) })
	thaw()
	assert.ErrorContains(t, err, "destroying container "+mc.ID())
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, took, destroyWait+5*time.Second)
	assert.Contains(t, logs.String(), `level=WARN msg="container:Sandbox#obj not removed on shutdown: gave up after 2s" container=`+mc.ID())
	assert.True(t, processExists(pid), "the container runs on")
	assert.NotEmpty(t, egress.FirewallLeftovers(Scope(data)), "the firewall that keeps it from the host stays")
	require.NoError(t, b1.Close())

	_, m2 := nextRun(t, data, logger)
	adopted, removed, err := m2.Recover(context.Background(), func(string, bool) *egresspolicy.Policy { return openPolicy() })
	require.NoError(t, err)
	assert.Equal(t, 0, adopted, "a container whose destroy began is not adopted")
	assert.Equal(t, 1, removed)
	assert.False(t, processExists(pid), "the container's init (pid %d) is gone", pid)
}

// freezeAlone freezes process pid in a freezer cgroup of its own, so it
// answers nothing until thaw. A SIGSTOP did not always hold: once in three
// full runs a shim so stopped answered a destroy at once (cause not found;
// any SIGCONT undoes a SIGSTOP, and the kernel sends one, with a SIGHUP, to
// a stopped process group it orphans); only a thaw ends a freeze. Cleanup
// thaws the process, moves it back to its cgroup and removes the one made
// for it.
func freezeAlone(t *testing.T, pid int) (thaw func()) {
	t.Helper()
	own, _, err := processCgroup(pid, "freezer")
	require.NoError(t, err)
	alone := filepath.Join(own, "wharf-test-frozen-"+strconv.Itoa(pid))
	require.NoError(t, os.Mkdir(alone, 0o755))
	moveTo := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	}
	thaw = func() {}
	t.Cleanup(func() {
		thaw()
		moveTo(own)
		assert.NoError(t, syscall.Rmdir(alone), "the frozen process's cgroup is removed")
	})
	require.NoError(t, moveTo(alone))
	thaw, err = freeze(pid)
	require.NoError(t, err)
	frozen, err := freezerOf(pid)
	require.NoError(t, err)
	ok, err := frozen.set(frozen.frozen)
	require.NoError(t, err)
	require.True(t, ok, "process %d is frozen", pid)
	return thaw
}

// processExists reports whether pid is a process that has not exited.
func processExists(pid int) bool { return !exited(pid) }

// TestRecoveryLeavesARemovalItCannotFinish: Recover's removal of a
// container of a crashed run (here: its class is no longer served) that
// does not finish within destroyWait is given up and the container left
// as one Recover could not look at: the start goes on, the firewall stays,
// and the container's journal record stays for the next run, which
// removes it. The record went even so, and the start failed.
func TestRecoveryLeavesARemovalItCannotFinish(t *testing.T) {
	data, logger, _, started, b2, m2 := crashedWithOneContainer(t)
	pid := int(started.Pid())
	was := destroyWait
	destroyWait = time.Nanosecond // nothing finishes
	unserved := func(string, bool) *egresspolicy.Policy { return nil }
	adopted, removed, err := m2.Recover(context.Background(), unserved)
	destroyWait = was
	assert.True(t, OnlyUnexamined(err), "only left as it is: %v", err)
	var left *UnexaminedError
	require.ErrorAs(t, err, &left)
	assert.Equal(t, started.ID(), left.ID)
	assert.ErrorContains(t, err, "removing it: gave up after 1ns")
	assert.Zero(t, adopted+removed)
	assert.True(t, processExists(pid), "the container runs on")
	require.NoError(t, m2.Close(context.Background()))
	assert.NotEmpty(t, egress.FirewallLeftovers(Scope(data)), "the firewall that keeps it from the host stays")
	require.NoError(t, b2.Close())

	_, m3 := nextRun(t, data, logger)
	adopted, removed, err = m3.Recover(context.Background(), unserved)
	require.NoError(t, err)
	assert.Zero(t, adopted)
	assert.Equal(t, 1, removed)
	assert.False(t, processExists(pid), "the container's init (pid %d) is gone", pid)
}

// TestStopAllIsBoundedByItsGrace: the SIGTERM of a shutdown's StopAll to a
// container whose shim does not answer (stopped) waited for ever, before
// the bounded destroy, and wharf serve never exited on SIGINT. It is sent
// within the grace, so StopAll returns once the grace is out.
func TestStopAllIsBoundedByItsGrace(t *testing.T) {
	m, image := testManager(t)
	mc, err := m.Start(context.Background(), "Sandbox", "obj", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	shimPid := 0
	for _, sh := range shims(m.b.Address) {
		if sh.id == mc.ID() {
			shimPid = sh.pid
		}
	}
	require.NotZero(t, shimPid, "the container's shim")
	// Answering again, the shim lets testManager's cleanup remove it.
	t.Cleanup(func() { syscall.Kill(shimPid, syscall.SIGCONT) })

	require.NoError(t, syscall.Kill(shimPid, syscall.SIGSTOP))
	const grace = time.Second
	_, took := returnsWithin(t, grace+10*time.Second, func() { syscall.Kill(shimPid, syscall.SIGCONT) }, func() error {
		m.StopAll(context.Background(), grace)
		return nil
	})
	assert.Less(t, took, grace+2*time.Second, "StopAll returns once its grace is out")
}

// TestStartWaitsForARemovalUnderWay: a start of an object's container
// while its removal is under way (wharf destroy, then a request that
// starts it again) waits for the removal and starts it; it was refused
// with "is being started or removed: try again" (a 503 to the client).
// One whose context ends first says so.
func TestStartWaitsForARemovalUnderWay(t *testing.T) {
	m, image := testManager(t)
	spec := ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}
	first, err := m.Start(context.Background(), "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)
	removing := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		mc, ok := m.byID[first.ID()]
		return ok && mc == nil
	}
	destroyed := make(chan error, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // before the manager's Close, should the test end early
	wg.Go(func() { destroyed <- m.Destroy(context.Background(), "Sandbox", "obj") })
	require.Eventually(t, removing, 5*time.Second, time.Millisecond, "the removal is under way")
	mc, err := m.Start(context.Background(), "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err, "a start during the removal waits for it")
	require.NoError(t, <-destroyed)
	assert.False(t, mc.Exited(), "the new container runs")
	assert.NotEqual(t, first.Pid(), mc.Pid())

	require.NoError(t, m.Destroy(context.Background(), "Sandbox", "obj"))
	m.mu.Lock()
	m.byID[mc.ID()] = nil // as a start under way reserves it
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = m.Start(ctx, "Sandbox", "obj", spec, openPolicy(), 0)
	assert.EqualError(t, err, "the container of Sandbox obj is being started or removed: context deadline exceeded")
	m.mu.Lock()
	delete(m.byID, mc.ID())
	m.endReservationLocked()
	m.mu.Unlock()
}
