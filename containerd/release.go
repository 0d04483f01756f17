package containerd

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// An exited container is kept until its object destroys it or starts it
// again, so that ps -a, inspect, logs and a late Monitor see how it ended.
// What only a running container needs is released as soon as its main
// process has exited (Manager.release): its task (so its shim exits, and
// with it the log keeper, once it has written the last output), its
// network namespace and veth pair (its /30 goes back to the pool, its
// address leaves the egress gateway), its cgroup and its disks (the
// writable layer is removed, the persistent disk unmounted). The exit
// status stays in memory (Managed), the output in its log file, the
// labels on the containerd container, which stays with its snapshot (no
// process: a directory and a few records) until the destroy.

// Released reports whether what the exited container ran with was
// released (see Manager.release): its address may be another container's.
func (mc *Managed) Released() bool {
	mc.relMu.Lock()
	defer mc.relMu.Unlock()
	return mc.released
}

// releaseOnExit releases what only a running container needs once mc's
// main process has exited (see release).
func (m *Manager) releaseOnExit(mc *Managed) {
	go func() {
		<-mc.exited
		m.release(mc)
	}()
}

// releaseCut, if set by a test, is asked before each step of a release
// (task, network, record, slot) and ends the release there when it
// returns true, as a wharf killed at that moment would.
var releaseCut func(step string) bool

// release removes the task, network, cgroup and disks of mc, whose main
// process has exited, and marks its record released. It does nothing to
// a container a destroy began to remove, or one whose exit was an error
// waiting for it (it may still run); what a step fails to remove is left
// for the destroy, which removes the rest. The network is torn down and
// the record says so before the /30 goes back to the pool: a record that
// names a slot is never one another container took (Recover would give
// it back to the pool while that one uses it).
func (m *Manager) release(mc *Managed) {
	mc.relMu.Lock()
	defer mc.relMu.Unlock()
	if mc.destroying || mc.released || mc.err != nil {
		return
	}
	id, ep := mc.ID(), mc.Endpoint
	cut := func(step string) bool { return releaseCut != nil && releaseCut(step) }
	ctx, cancel := context.WithTimeout(WithNamespace(context.Background()), destroyWait)
	defer cancel()
	if cut("task") {
		return
	}
	if err := deleteExitedTask(ctx, mc.task); err != nil {
		m.life.log.Warn(Tag(mc.Class, mc.Object)+" exited: its task is left until it is destroyed", "container", id, "err", err)
		return
	}
	if cut("network") {
		return
	}
	// Its links are gone before its address may go to another container.
	err := errors.Join(removeCgroup(cgroupPath(m.b.RuncRoot, id)), m.gw.Detach(ep.ContainerIP), ep.teardownKeepingSlot(),
		m.writableDisk(id).unmount(false), m.persistentDisk(id, "").unmount(true), removeAgentDir(mc.agentDir))
	if err != nil {
		m.life.log.Warn(Tag(mc.Class, mc.Object)+" exited: some of what it ran with is left until it is destroyed", "container", id, "err", err)
		return
	}
	if cut("record") {
		return
	}
	if err := m.jnl.put(id, record{Class: mc.Class, Object: mc.Object, Slot: ep.slot, HostIP: ep.HostIP, ContainerIP: ep.ContainerIP,
		Started: true, Released: true}); err != nil {
		m.life.log.Warn(Tag(mc.Class, mc.Object)+" exited: its network address is kept until it is destroyed", "container", id,
			"err", fmt.Errorf("recording container %s: %w", id, err))
		return
	}
	if cut("slot") {
		return
	}
	m.net.release(ep.slot)
	ep.released = true
	mc.released = true
}

// deleteExitedTask deletes task, whose process has exited: its shim exits,
// closing the output pipes, so the log keeper writes the rest and exits
// too. A task that is gone already is deleted.
func deleteExitedTask(ctx context.Context, task client.Task) error {
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading its task's status: %w", err)
	}
	if st.Status != client.Stopped {
		return fmt.Errorf("its task is %s, not stopped", st.Status)
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting its task: %w", err)
	}
	return nil
}

// teardownKeepingSlot removes the endpoint's veth pair and namespace as
// Teardown does, but keeps its /30 reserved.
func (ep *Endpoint) teardownKeepingSlot() error {
	was := ep.released
	ep.released = true
	err := ep.Teardown()
	ep.released = was
	return err
}
