package containerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/client"
	contribapparmor "github.com/containerd/containerd/v2/contrib/apparmor"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/agent"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/execpath"
	"github.com/wharfhq/wharf/internal/keptlog"
	"github.com/wharfhq/wharf/internal/procstat"
)

// Resources are a container's limits: cgroup memory limit, CFS CPU quota
// and a pids limit.
type Resources = hostcontainers.Resources

// cfsPeriod is the CFS period quotas are expressed in (100 ms).
const cfsPeriod = 100_000

// ContainerSpec describes a container to start.
type ContainerSpec struct {
	ID     string            // unique within wharf's namespace
	Image  string            // an image in wharf's namespace
	Labels map[string]string // on the container and its snapshot
	// Env is added to (and overrides) the image's environment.
	Env []string
	// Entrypoint replaces the image's entrypoint and command if set.
	Entrypoint []string
	Resources  Resources
	// NetNSPath is the network namespace to join (see Network.Setup);
	// empty gives the container a private namespace with no links.
	NetNSPath string
	// RuncRoot keeps runc's state for this daemon apart from any other
	// containerd on the host (runc's default root is shared).
	RuncRoot string
	// Mounts are added to the image's.
	Mounts []specs.Mount
	// Capabilities are added to the default set (containerd's, without
	// CAP_NET_RAW), e.g. "CAP_NET_RAW".
	Capabilities []string
	// OwnedDirs are host directories (bind-mounted in Mounts) handed to
	// the user the container runs as, so an image with a USER can write
	// to them.
	OwnedDirs []string
	// DiskMB caps the writable layer (Manager.Start puts it on a disk of
	// that size); 0 is no cap.
	DiskMB int
	// Persistent are directories Manager.Start keeps across starts on a
	// disk of their own.
	Persistent PersistentDirs
	// WritableDir, if set, holds the container's writable layer (the
	// overlay's upper and work directories) instead of the snapshotter's
	// directory: a disk mounted there caps it.
	WritableDir string
	// unconfined leaves the sandbox out: the baseline of
	// BenchmarkSandboxCost.
	unconfined bool
	// LogPath, if set, receives the main process's stdout and stderr,
	// kept within LogMaxBytes (DefaultLogMaxBytes if 0) by LogKeeper,
	// the wharf-init binary, which the shim runs, so it outlives wharf
	// (see package keptlog); otherwise they are discarded.
	LogPath, LogKeeper string
	LogMaxBytes        int64
	// Init, if set, is the path of wharf-init: it becomes PID 1, runs the
	// entrypoint as its child and serves exec on a socket in AgentDir, a
	// host directory it creates that only root may enter. Empty keeps
	// runc's way: the entrypoint is PID 1 and execs go through runc.
	Init, AgentDir string
	// NoInit, for Manager.Start, keeps runc's way for this container.
	NoInit bool
}

// PersistentDirs are directories of a container kept across its starts,
// all on one disk image.
type PersistentDirs = hostcontainers.PersistentDirs

// Container is a running container: its containerd container and task.
type Container struct {
	c      *client.Client
	ctr    client.Container
	task   client.Task
	exited chan struct{} // closed when the main process has exited
	code   uint32
	err    error
	// oom: the kernel killed the main process for lack of memory.
	oom bool
	// agent serves execs if the container runs wharf-init; agentDir is
	// the host directory of its socket.
	agent    *agent.Client
	agentDir string
	// process is the spec's process, the base of every exec: it never
	// changes, so it is fetched from containerd once (processMu).
	processMu sync.Mutex
	process   *specs.Process
	// watches counts the open watches of its files (MaxWatches).
	watches atomic.Int32
	// pauseMu keeps a SIGSTOP's freeze of the container's cgroup from
	// thawing another's.
	pauseMu sync.Mutex
}

// watch records the main process's exit from exitCh.
func (c *Container) watch(exitCh <-chan client.ExitStatus) {
	c.exited = make(chan struct{})
	go func() {
		st := <-exitCh
		c.code, _, c.err = st.Result()
		// Killed (SIGKILL) with an OOM kill in the cgroup: the
		// kernel's doing, unless the host killed it too (a stop
		// cause says so). The cgroup stays until the task is deleted.
		c.oom = c.err == nil && c.code == 128+uint32(syscall.SIGKILL) && c.oomKills() > 0
		close(c.exited)
	}()
}

// OutOfMemory reports whether the main process, now exited, was killed
// for lack of memory (the kernel's OOM killer, at the container's memory
// limit).
func (c *Container) OutOfMemory() bool {
	<-c.exited
	return c.oom
}

// Paused reports whether SIGSTOP paused the running container: its main
// process is stopped (with wharf-init, the init's first child, the
// entrypoint; execs that started after the pause run). It reads the
// process's state, so it holds for a container a previous run of wharf
// paused.
func (c *Container) Paused() bool {
	if c.Exited() {
		return false
	}
	pid := int(c.task.Pid())
	if c.agent == nil {
		return procstat.Stopped(pid)
	}
	others, err := allButInit(pid)
	if err != nil {
		return false
	}
	var main procstat.Stat
	mainPid := 0
	for _, other := range others {
		st := procstat.Read(other)
		if st.PPid == pid && (mainPid == 0 || st.Start < main.Start || st.Start == main.Start && other < mainPid) {
			main, mainPid = st, other
		}
	}
	return main.State == 'T'
}

// Exited reports whether the main process has exited.
func (c *Container) Exited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

// StartContainer creates and starts a container from spec. It returns
// without waiting for anything inside to be ready. Its network namespace is
// private (loopback only) until wharf's networking joins it to the host.
func StartContainer(ctx context.Context, c *client.Client, spec ContainerSpec) (*Container, error) {
	ctx = WithNamespace(ctx)
	img, err := c.GetImage(ctx, spec.Image)
	if errdefs.IsNotFound(err) {
		return nil, MissingImage(spec.Image)
	}
	if err != nil {
		return nil, err // containerd's error names the image
	}
	// An import or pull cut short while it unpacked (wharf images import
	// interrupted or killed) leaves the image with no snapshot to start
	// from ("parent snapshot ... does not exist"): unpack it now.
	if unpacked, err := img.IsUnpacked(ctx, Snapshotter); err == nil && !unpacked {
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", spec.Image, err)
		}
	}
	config, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration of %s: %w", spec.Image, err)
	}
	var entrypointUser imageUser
	opts := []oci.SpecOpts{withImage(img, config.Config.User, &entrypointUser), oci.WithHostname(shortID(spec.ID)), oci.WithCgroup(cgroupPath(spec.RuncRoot, spec.ID))}
	if len(spec.Entrypoint) > 0 {
		opts = append(opts, oci.WithProcessArgs(spec.Entrypoint...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if len(spec.Mounts) > 0 {
		opts = append(opts, oci.WithMounts(spec.Mounts))
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	}
	if r := spec.Resources; r.MemoryBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(r.MemoryBytes))
	}
	if r := spec.Resources; r.VCPU > 0 {
		opts = append(opts, oci.WithCPUCFS(int64(r.VCPU*cfsPeriod), cfsPeriod))
	}
	if r := spec.Resources; r.Pids > 0 {
		opts = append(opts, oci.WithPidsLimit(r.Pids))
	}
	if !spec.unconfined {
		opts = append(opts, sandbox(spec.Capabilities)...)
	}
	var user specs.User // the image's (or the entrypoint's) user
	opts = append(opts, captureUser(&user))
	if spec.Init != "" {
		if err := makeAgentDir(spec.AgentDir); err != nil {
			return nil, fmt.Errorf("the agent's directory: %w", err)
		}
		opts = append(opts, withInit(spec.Init, spec.AgentDir, &entrypointUser.Home))
	}
	var process *specs.Process
	opts = append(opts, withUserCapabilities, // for the process's user, the agent's if it runs
		captureProcess(&process)) // last: the process as containerd keeps it
	// The container is made whole even if ctx ends meanwhile, as its task
	// is below: containerd may make it (and its snapshot) although the
	// call returns ctx's error, which left them for every later start of
	// the object to find ("already exists").
	create, cancel := context.WithTimeout(context.WithoutCancel(ctx), createWait)
	ctr, err := newContainer(c, create, spec.ID,
		client.WithRuntime(plugins.RuntimeRuncV2, &options.Options{Root: spec.RuncRoot}),
		client.WithImage(img),
		client.WithSnapshotter(Snapshotter),
		client.WithNewSnapshot(spec.ID+"-rootfs", img),
		client.WithContainerLabels(spec.Labels),
		client.WithNewSpec(opts...),
	)
	cancel()
	if err == nil && ctx.Err() != nil {
		removeUnstarted(ctx, ctr, spec.AgentDir)
		return nil, fmt.Errorf("creating container %s: %w", spec.ID, context.Cause(ctx))
	}
	if err != nil {
		// The snapshot may exist even though the container does not.
		cleanup, cancel := cleanupContext(ctx)
		c.SnapshotService(Snapshotter).Remove(cleanup, spec.ID+"-rootfs")
		cancel()
		removeAgentDir(spec.AgentDir)
		return nil, fmt.Errorf("creating container %s: %w", spec.ID, err)
	}
	if err := chownTo(user, spec.OwnedDirs); err != nil {
		removeUnstarted(ctx, ctr, spec.AgentDir)
		return nil, err
	}
	creator, err := outputTo(spec)
	if err != nil {
		removeUnstarted(ctx, ctr, spec.AgentDir)
		return nil, err
	}
	var taskOpts []client.NewTaskOpts
	if spec.WritableDir != "" {
		rootfs, err := writableOn(ctx, c, spec.ID+"-rootfs", spec.WritableDir)
		if err != nil {
			removeUnstarted(ctx, ctr, spec.AgentDir)
			return nil, err
		}
		taskOpts = append(taskOpts, client.WithRootFS(rootfs))
	}
	// The task is made whole even if ctx ends meanwhile: containerd cut
	// short leaves the shim's state directory, on which the next start
	// fails ("failed to start shim: mkdir …: file exists").
	create, cancel = context.WithTimeout(context.WithoutCancel(ctx), createWait)
	task, err := ctr.NewTask(create, creator, taskOpts...)
	cancel()
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		removeUnstarted(ctx, ctr, spec.AgentDir)
		if refused := runcRefusedEntrypoint(spec, process, err); refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("creating task %s: %w", spec.ID, err)
	}
	cont := &Container{c: c, ctr: ctr, task: task, process: process}
	if spec.Init != "" {
		cont.agentDir = spec.AgentDir
		cont.agent = agent.New(spec.AgentDir, int(task.Pid()))
	}
	exitCh, err := task.Wait(context.WithoutCancel(ctx)) // outlives the caller's context
	if err == nil {
		cont.watch(exitCh)
		err = task.Start(ctx)
	}
	if err != nil {
		cont.Destroy(context.Background())
		if refused := runcRefusedEntrypoint(spec, process, err); refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("starting %s: %w", spec.ID, err)
	}
	if cont.agent != nil {
		if err := cont.agent.Started(ctx, cont.exited); err != nil {
			cont.Destroy(context.Background())
			return nil, badEntrypoint(process, err) // the agent tells only why it could not start it
		}
	}
	return cont, nil
}

// cleanupContext is ctx (its namespace) without its cancellation, for at
// most killWait: what a start made is removed even when the start was
// canceled (its caller went away), as its next try would find it ("snapshot
// … already exists").
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), killWait)
}

// createWait bounds the making of a container, and that of its task.
const createWait = time.Minute

// newContainer is the call StartContainer creates a container with; a
// test swaps it to end the start's context as containerd answers.
var newContainer = (*client.Client).NewContainer

// removeUnstarted removes ctr, a container StartContainer made but did not
// start, with the task it may have made, its snapshot and the agent's
// directory.
func removeUnstarted(ctx context.Context, ctr client.Container, agentDir string) {
	ctx, cancel := cleanupContext(ctx)
	defer cancel()
	if task, err := ctr.Task(ctx, nil); err == nil {
		task.Delete(ctx, client.WithProcessKill)
	}
	ctr.Delete(ctx, client.WithSnapshotCleanup)
	removeAgentDir(agentDir)
}

// badEntrypoint is err, why the entrypoint of p (the container's process)
// could not be started, as ErrBadExec naming it.
func badEntrypoint(p *specs.Process, err error) error {
	return fmt.Errorf("%w: entrypoint %s: %w", ErrBadExec, shownArgs(entrypoint(p)), err)
}

// runcRefusedEntrypoint is err, a failure to create or start the task of
// the container of spec (whose process is p), as badEntrypoint if runc
// refused its entrypoint, read as an exec's refusal is (runcStartError:
// it matches fs.ErrNotExist or fs.ErrPermission too); nil if err is not
// that. With the agent, runc runs the agent, not the entrypoint: a
// refusal there is not the entrypoint's.
func runcRefusedEntrypoint(spec ContainerSpec, p *specs.Process, err error) error {
	var refused kindError
	if spec.Init != "" || !errors.As(runcStartError(err), &refused) {
		return nil
	}
	return badEntrypoint(p, refused)
}

// DefaultLogMaxBytes is how much of a container's output is kept when
// its spec does not say.
const DefaultLogMaxBytes = 10 << 20

// outputTo is where the main process's output goes: spec's log, kept by
// its keeper, or nowhere.
func outputTo(spec ContainerSpec) (cio.Creator, error) {
	if spec.LogPath == "" {
		return cio.NullIO, nil
	}
	if spec.LogKeeper == "" {
		return nil, errors.New("a container log needs its keeper, " + wire.InitName)
	}
	// Created here, so a keeper that cannot open it never leaves the
	// container writing into a closed pipe.
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("the container's log: %w", err)
	}
	f.Close()
	return cio.BinaryIO(spec.LogKeeper, keptlog.Args(spec.LogPath, cmp.Or(spec.LogMaxBytes, DefaultLogMaxBytes))), nil
}

// writableOn returns the rootfs mounts of snapshot key with its overlay's
// upper and work directories moved to dir.
func writableOn(ctx context.Context, c *client.Client, key, dir string) ([]mount.Mount, error) {
	mounts, err := c.SnapshotService(Snapshotter).Mounts(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" {
		return nil, fmt.Errorf("the %s snapshot of %s is not one overlay mount: cannot move its writable layer", Snapshotter, key)
	}
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	if err := errors.Join(os.Mkdir(upper, 0o755), os.Mkdir(work, 0o700)); err != nil {
		return nil, err
	}
	m := mounts[0]
	m.Options = slices.Clone(m.Options)
	for i, o := range m.Options {
		switch {
		case strings.HasPrefix(o, "upperdir="):
			m.Options[i] = "upperdir=" + upper
		case strings.HasPrefix(o, "workdir="):
			m.Options[i] = "workdir=" + work
		}
	}
	return []mount.Mount{m}, nil
}

// sandbox confines a container's root as Docker does: containerd's default
// capabilities without CAP_NET_RAW (plus those asked for), its default
// seccomp profile (Docker's rules, which follow the capabilities: no
// unshare, mount or keyctl without CAP_SYS_ADMIN), no-new-privileges (in
// containerd's default spec) and, where the host has AppArmor, its default
// profile.
func sandbox(capabilities []string) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithDroppedCapabilities([]string{"CAP_NET_RAW"}), oci.WithAddedCapabilities(capabilities),
		seccomp.WithDefaultProfile()} // after the capabilities
	if apparmor.HostSupports() {
		opts = append(opts, contribapparmor.WithDefaultProfile(appArmorProfile))
	}
	return opts
}

// appArmorProfile is the name wharf loads containerd's default AppArmor
// profile under.
const appArmorProfile = "wharf-default"

// logSandbox says once, at start, whether containers get the AppArmor
// profile: a host without AppArmor confines them without it.
func logSandbox(log *slog.Logger) {
	if apparmor.HostSupports() {
		log.Info("containers get the AppArmor profile " + appArmorProfile)
		return
	}
	log.Warn("AppArmor is not available on this host: containers run without an AppArmor profile " +
		"(seccomp, the capability set and no-new-privileges still confine them)")
}

func shortID(id string) string {
	if len(id) > 63 {
		return id[:63]
	}
	return id
}

// ID is the container's id.
func (c *Container) ID() string { return c.ctr.ID() }

// Pid is the host pid of the container's init process.
func (c *Container) Pid() uint32 { return c.task.Pid() }

// Wait blocks until the container's main process exits and returns its
// exit code.
func (c *Container) Wait(ctx context.Context) (uint32, error) {
	select {
	case <-c.exited:
		return c.code, c.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Signal sends sig to the container's main process. With wharf-init as
// the container's init, that is through the init, which passes on every
// signal it can catch. SIGSTOP it cannot catch, and a stopped agent would
// hold every exec, file and background call of the container: SIGSTOP
// goes to each process of the container but the init, and SIGCONT to each
// as well as to the init, so a stopped container goes on whole.
func (c *Container) Signal(ctx context.Context, sig syscall.Signal) error {
	resumed := false // SIGCONT reached the container's processes
	// Once the main process has exited its pid may be another process's
	// (and its task deleted, see Manager.release): the kill below says it
	// is not found.
	if c.agent != nil && !c.Exited() && (sig == syscall.SIGSTOP || sig == syscall.SIGCONT) {
		var err error
		if sig == syscall.SIGSTOP {
			c.pauseMu.Lock()
			err = stopAllButInit(int(c.task.Pid()))
			c.pauseMu.Unlock()
		} else {
			err = signalAllButInit(int(c.task.Pid()), sig)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist): // the container exited: the kill below says so
		case err != nil:
			return err
		case sig == syscall.SIGSTOP:
			return nil
		default:
			resumed = true
		}
	}
	err := c.task.Kill(WithNamespace(ctx), sig)
	if errdefs.IsNotFound(err) && resumed {
		// The CONT went on a paused container whose pending signal
		// (a TERM sent in the pause) ended it: it was sent.
		return nil
	}
	if errdefs.IsNotFound(err) { // "process already finished"
		return fmt.Errorf("%w: %w", hostcontainers.ErrExitedMeanwhile, err)
	}
	return err
}

// Terminate sends SIGTERM to the container's main process, then SIGCONT,
// so that a container its object paused (SIGSTOP) gets it now, not only
// when the grace after it runs out.
func (c *Container) Terminate(ctx context.Context) error {
	if err := c.Signal(ctx, syscall.SIGTERM); err != nil {
		return err
	}
	if err := c.Signal(ctx, syscall.SIGCONT); err != nil && !errdefs.IsNotFound(err) { // not found: it exited already
		return err
	}
	return nil
}

// signalAllButInit sends sig to each process in the cgroup of the
// container whose init is the host's process initPid, but that init.
func signalAllButInit(initPid int, sig syscall.Signal) error {
	pids, err := allButInit(initPid)
	for _, pid := range pids {
		syscall.Kill(pid, sig) // one that exited meanwhile needs nothing
	}
	return err
}

// allButInit lists the processes in the cgroup of the container whose
// init is the host's process initPid, but that init.
func allButInit(initPid int) ([]int, error) {
	dir, _, err := processCgroup(initPid, "pids")
	if err != nil {
		return nil, err
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, field := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(field); err == nil && pid != initPid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// freezeWait bounds the wait of a stop for its container's processes to
// be frozen: one in an uninterruptible sleep gets there only when it
// wakes.
const freezeWait = 2 * time.Second

// stopAllButInit sends SIGSTOP to each process of the container whose
// init is initPid, but that init, with the container's cgroup frozen: a
// process that forked between the read of the cgroup's processes and its
// own SIGSTOP left a child that got none and ran on. Frozen, no process
// forks, and one that was forking has finished (a child forked into a
// freezing cgroup freezes too). Thawed, each stops on its SIGSTOP and
// the init goes on. A child of the init that is still the init's binary
// is an exec it is starting: stopped before its exec, it held the agent
// (a vfork) and every exec after it; it starts as new execs do.
func stopAllButInit(initPid int) error {
	thaw, err := freeze(initPid)
	if err != nil {
		return err
	}
	defer thaw()
	initExe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", initPid))
	if err != nil {
		return err
	}
	pids, err := allButInit(initPid)
	for _, pid := range pids {
		if !startingExec(pid, initPid, initExe) {
			syscall.Kill(pid, syscall.SIGSTOP) // one that exited meanwhile needs nothing
		}
	}
	return err
}

// startingExec reports whether pid is a child of the init initPid that
// has not executed its program yet: it runs the init's binary, initExe.
func startingExec(pid, initPid int, initExe os.FileInfo) bool {
	if procstat.Read(pid).PPid != initPid {
		return false
	}
	exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && os.SameFile(exe, initExe)
}

// freezer is the freezer of a container's cgroup: the file that freezes
// and thaws it with its two values, and the file and line that tell it is
// frozen.
type freezer struct{ file, thawed, frozen, events, frozenLine string }

// freezerOf is the freezer of the cgroup of the container whose init is
// initPid (cgroup.freeze, or the freezer controller's on cgroup v1).
func freezerOf(initPid int) (freezer, error) {
	dir, v2, err := processCgroup(initPid, "freezer")
	if err != nil {
		return freezer{}, err
	}
	if !v2 {
		state := filepath.Join(dir, "freezer.state")
		return freezer{state, "THAWED", "FROZEN", state, "FROZEN"}, nil
	}
	return freezer{filepath.Join(dir, "cgroup.freeze"), "0", "1", filepath.Join(dir, "cgroup.events"), "frozen 1"}, nil
}

// set reports whether the freezer's file reads value (an error if it
// cannot be read).
func (f freezer) set(value string) (bool, error) {
	was, err := os.ReadFile(f.file)
	return err == nil && strings.TrimSpace(string(was)) == value, err
}

// freeze freezes the cgroup of the container whose init is initPid and
// waits until it is frozen, up to freezeWait; thaw thaws it. A cgroup
// that is frozen already (paused through containerd) is left so. One that
// cannot be frozen is signalled as it is: thaw is then a no-op.
func freeze(initPid int) (thaw func(), err error) {
	noop := func() {}
	f, err := freezerOf(initPid)
	if err != nil {
		return nil, err
	}
	switch thawed, err := f.set(f.thawed); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, err
	case !thawed:
		return noop, nil
	}
	if err := os.WriteFile(f.file, []byte(f.frozen), 0); err != nil {
		return noop, nil
	}
	thaw = func() { os.WriteFile(f.file, []byte(f.thawed), 0) }
	for wait, deadline := time.Millisecond/4, time.Now().Add(freezeWait); time.Now().Before(deadline); wait = min(2*wait, 10*time.Millisecond) {
		b, err := os.ReadFile(f.events)
		if err != nil || slices.Contains(strings.Split(string(b), "\n"), f.frozenLine) {
			break
		}
		time.Sleep(wait)
	}
	return thaw, nil
}

// thawLeftFreeze thaws the cgroup of a container a previous run of wharf
// adopted from left frozen: killed between a stop's freeze and its thaw,
// it left the container, its agent too, frozen for good. Its processes
// that got their SIGSTOP stay stopped.
func thawLeftFreeze(initPid int) {
	if f, err := freezerOf(initPid); err == nil {
		if frozen, _ := f.set(f.frozen); frozen {
			os.WriteFile(f.file, []byte(f.thawed), 0)
		}
	}
}

// killWait is how long a destroy waits for the main process to exit after
// SIGKILL.
const killWait = 10 * time.Second

// Destroy kills the container's processes and removes its task, container
// and snapshot. It returns when ctx is done, with what is left.
func (c *Container) Destroy(ctx context.Context) error {
	ctx = WithNamespace(ctx)
	var errs []error
	if st, err := c.task.Status(ctx); err == nil && st.Status != client.Stopped {
		err := c.task.Kill(ctx, syscall.SIGKILL, client.WithKillAll)
		if errdefs.IsNotFound(err) {
			err = c.killInit(ctx)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("killing its task: %w", err))
		}
		select {
		case <-c.exited:
		case <-time.After(killWait):
			errs = append(errs, errors.New("the container did not exit after SIGKILL"))
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("waiting for the container to exit after SIGKILL: %w", ctx.Err()))
		}
	}
	if _, err := c.task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting its task: %w", err))
	}
	return errors.Join(append(errs, c.deleteContainer(ctx))...)
}

// killInit sends SIGKILL to the container's init by its pid, which takes
// every process of the container's pid namespace with it: containerd's
// kill did not find the container, as runc's state of it was removed
// under it (its state directory, or the data directory, deleted), and its
// delete would wait for ever for an exit. The pid is killed only while it
// is in the container's cgroup, so never another process that took it:
// not one of another wharf's container of the same id either (another
// data directory serving the same objects), whose cgroup differs only by
// its runc root's tag. The pid is opened as a pidfd before its cgroup is
// read and killed through it, so a process that takes the pid between the
// two is not killed.
func (c *Container) killInit(ctx context.Context) error {
	spec, err := c.ctr.Spec(WithNamespace(ctx))
	if err != nil {
		return fmt.Errorf("runc lost the container's state and its cgroup cannot be learned: %w", err)
	}
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return errors.New("runc lost the container's state and its spec names no cgroup")
	}
	pid := int(c.task.Pid())
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return nil // gone
	}
	if err != nil {
		return fmt.Errorf("runc lost the container's state and its init (pid %d) cannot be opened: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dir, _, err := processCgroup(pid, "pids")
	if errors.Is(err, fs.ErrNotExist) || err == nil && !strings.HasSuffix(dir, spec.Linux.CgroupsPath) {
		return nil // gone, or no longer the container's
	}
	if err != nil {
		return fmt.Errorf("runc lost the container's state and its init's cgroup cannot be read: %w", err)
	}
	// Through the pidfd: the process whose cgroup was read if it still
	// lives (its pid cannot have been reused), else no one.
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("runc lost the container's state and its init (pid %d) cannot be killed: %w", pid, err)
	}
	return nil
}

// deleteContainer deletes the container, which has no task left, with its
// snapshot, and the directory of its agent's socket; what is gone already
// is deleted.
func (c *Container) deleteContainer(ctx context.Context) error {
	err := c.ctr.Delete(ctx, client.WithSnapshotCleanup)
	if err != nil && !errdefs.IsNotFound(err) {
		return errors.Join(fmt.Errorf("deleting the container and its snapshot: %w", err), removeAgentDir(c.agentDir))
	}
	return removeAgentDir(c.agentDir)
}

// adoptAgent connects to the agent of a container a previous run of wharf
// started, if it runs one, and thaws what a stop of that run left frozen.
func (c *Container) adoptAgent(ctx context.Context) {
	s, err := c.ctr.Spec(ctx)
	if err != nil {
		return
	}
	if dir := agentDir(s); dir != "" {
		c.agentDir = dir
		if c.task != nil {
			c.agent = agent.New(dir, int(c.task.Pid()))
			thawLeftFreeze(int(c.task.Pid()))
		}
	}
}

// processSpec returns a copy of the container's process spec, fetched from
// containerd on first use by a container this run of wharf did not start.
func (c *Container) processSpec(ctx context.Context) (specs.Process, error) {
	c.processMu.Lock()
	defer c.processMu.Unlock()
	if c.process == nil {
		s, err := c.ctr.Spec(ctx)
		if err != nil {
			return specs.Process{}, err
		}
		c.process = s.Process
	}
	return *c.process, nil
}

// ExecSpec describes a process to run in a container.
type ExecSpec = hostcontainers.ExecSpec

// Process is a process started with Exec.
type Process = hostcontainers.Process

// runcProcess is a process runc started (a container without the agent).
type runcProcess struct {
	proc   client.Process
	exitCh <-chan client.ExitStatus
	// program is the program runc was given; errHead keeps the head of
	// what the process wrote on stderr (on its terminal with one), where
	// runc tells that the kernel refused it (see execveFailure).
	program string
	errHead *headWriter
	// outHead is stdout's without a terminal: a process that wrote
	// there ran, so its exit is its own (runc writes nothing there).
	outHead *headWriter
}

var execSeq atomic.Uint64

// Exec starts a process in the container: through its agent if it runs
// one, else through runc. A start that failed as the main process exited
// is hostcontainers.ErrExitedMeanwhile, whatever it met.
func (c *Container) Exec(ctx context.Context, spec ExecSpec) (Process, error) {
	p, err := c.exec(ctx, spec)
	if err != nil {
		return nil, c.exitedMeanwhile(err)
	}
	return p, nil
}

// exitedMeanwhile is err, the failure of a call that needs the running
// container (an exec, a call of its agent), as
// hostcontainers.ErrExitedMeanwhile if it failed as the main process
// exited (see exitedAsCallFailed), else err itself.
func (c *Container) exitedMeanwhile(err error) error {
	if err != nil && c.exitedAsCallFailed(err) {
		return fmt.Errorf("%w: %w", hostcontainers.ErrExitedMeanwhile, err)
	}
	return err
}

// exitWait is how long a failed call that lost the agent, init or runc
// waits to learn whether the main process exited (its exit is told a
// moment after they are gone).
const exitWait = 250 * time.Millisecond

// exitedAsCallFailed reports whether the main process is gone, told or no
// longer in its namespaces (a zombie has none: runc says "cannot exec in a
// stopped container"), or, if err is what a call meets when the agent or
// init go from under it (not an answer, such as a missing program or
// file), exits within exitWait.
func (c *Container) exitedAsCallFailed(err error) bool {
	if _, statErr := os.Stat(fmt.Sprintf("/proc/%d/ns/pid", c.task.Pid())); c.Exited() || errors.Is(statErr, fs.ErrNotExist) {
		return true
	}
	lost := slices.ContainsFunc([]error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, syscall.ESRCH, io.EOF, io.ErrUnexpectedEOF, agent.ErrGone},
		func(gone error) bool { return errors.Is(err, gone) })
	if !lost {
		return false
	}
	select {
	case <-c.exited:
		return true
	case <-time.After(exitWait):
		return false
	}
}

// exec is Exec without the reading of a failure.
func (c *Container) exec(ctx context.Context, spec ExecSpec) (Process, error) {
	ctx = WithNamespace(ctx)
	if len(spec.Args) == 0 {
		return nil, errors.New("exec needs a command")
	}
	pspec, user, err := c.execProcess(ctx, spec)
	if err != nil {
		return nil, err
	}
	if c.agent != nil {
		p, err := c.agentExec(ctx, spec, wire.Exec{Args: pspec.Args, Env: pspec.Env, Cwd: pspec.Cwd, User: user, Terminal: spec.Terminal})
		if err != nil {
			return nil, fmt.Errorf("exec %s: %w", shownArgs(spec.Args), err)
		}
		return p, nil
	}
	if err := c.checkUserFilesForRunc(); err != nil {
		return nil, err
	}
	id := fmt.Sprintf("exec-%d", execSeq.Add(1))
	stdin := &stdinCloser{r: spec.Stdin, started: make(chan client.Process, 1)}
	var in io.Reader = stdin
	switch {
	case spec.Terminal:
		// The end of the input leaves the terminal open until the process
		// exits, as the agent and Docker's exec -t do: told to close stdin,
		// the shim closes the terminal's master, which hangs the session up
		// (SIGHUP, exit 129) however the process would have ended. Without
		// input the shim opens no stdin pipe at all.
		in = spec.Stdin
	case spec.Stdin == nil:
		// No input: the shim opens no stdin pipe and the process reads
		// /dev/null. A pipe closed at once raced the shim's opening of it,
		// and a process left waiting for its EOF now and then hung a test.
		in = nil
	}
	stdout, stderr := orDiscard(spec.Stdout), orDiscard(spec.Stderr)
	errHead := &headWriter{w: stderr, keep: maxExecveMessage}
	var outHead *headWriter
	if spec.Terminal { // one stream: the terminal's output
		errHead.w, stdout = stdout, errHead
	} else {
		outHead = &headWriter{w: stdout} // keeps nothing: was anything written
		stdout, stderr = outHead, errHead
	}
	streams := []cio.Opt{cio.WithStreams(in, stdout, stderr)}
	if spec.Terminal {
		streams = append(streams, cio.WithTerminal)
	}
	// The start is not canceled with ctx: the shim may go on and start the
	// process after a canceled call returned, and a removal then (which
	// finds it not yet started) leaves it running, owned by nobody. A
	// caller whose ctx ends has its answer at once; the start runs to its
	// end and what it started is killed and removed.
	done := make(chan runcStart, 1)
	go func() {
		run, cancel := context.WithTimeout(context.WithoutCancel(ctx), runcExecTimeout)
		defer cancel()
		proc, err := c.task.Exec(run, id, &pspec, cio.NewCreator(streams...))
		if err != nil {
			stdin.started <- nil // no stdin to close
			done <- runcStart{err: err}
			return
		}
		p := &runcProcess{proc: proc, program: spec.Args[0], errHead: errHead, outHead: outHead}
		if p.exitCh, err = proc.Wait(context.WithoutCancel(ctx)); err == nil {
			err = proc.Start(run)
		}
		if err != nil {
			proc.Delete(run, client.WithProcessKill)
			stdin.started <- nil
			done <- runcStart{err: err}
			return
		}
		stdin.started <- proc
		done <- runcStart{p: p}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			err := runcStartError(r.err)
			if errors.Is(err, fs.ErrNotExist) {
				if refused := c.refusedInPath(pspec.Args[0], pspec.Env, pspec.Cwd); refused != nil {
					err = refused
				}
			}
			return nil, fmt.Errorf("exec %s: %w", shownArgs(spec.Args), err)
		}
		return r.p, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.p != nil {
				r.p.remove()
			}
		}()
		return nil, fmt.Errorf("exec %s: %w", shownArgs(spec.Args), context.Cause(ctx))
	}
}

// runcStartError is err, a start runc refused, matching fs.ErrNotExist if
// the program does not exist and fs.ErrPermission if it may not be run,
// as the agent's refusals do: runc tells it in words only, after
// `exec: "PROGRAM": ` or, for runc 1.1's own check of the program's
// execute permission (which a noexec mount denies), `eaccess PROGRAM: `.
// Other failures in those words (a working directory runc cannot enter, a
// shim's socket that is gone) are not the program's.
func runcStartError(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, `exec: "`) && !strings.Contains(msg, "eaccess ") {
		return err
	}
	if kind := programKind(msg); kind != nil {
		return kindError{err, kind}
	}
	return err
}

// refusedInPath is why a shell would not run program, a command runc
// reported not found: files named so in the directories of env's $PATH in
// the container, none of which may be run (runc's search passes over
// them, a shell's refuses them: 126, not 127), relative ones taken from
// cwd. nil if there are none, or if the main process may be gone (its
// pid then perhaps another process's).
func (c *Container) refusedInPath(program string, env []string, cwd string) error {
	root, err := openProcRoot(int(c.task.Pid()))
	if err != nil {
		return nil
	}
	defer unix.Close(root)
	// An exit told by now was perhaps reaped before the root was opened,
	// and the pid taken by another process: its root is not searched.
	if c.Exited() {
		return nil
	}
	_, err = execpath.Find(program, execpath.FromEnv(env), cwd, func(path string) (fs.FileInfo, error) {
		// The container's path, its symlinks resolved in its root.
		fd, err := unix.Openat2(root, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), path)
		defer f.Close()
		return f.Stat()
	})
	if !errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}

// openProcRoot opens the root directory of process pid (/proc/PID/root)
// as O_PATH, that of the process that had the pid when it was called: one
// reaped and its pid reused meanwhile is an error, not the root of the
// process that took the pid.
func openProcRoot(pid int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	return openRootOf(pidfd, fmt.Sprintf("/proc/%d/root", pid))
}

// openRootOf opens procRoot, the root directory (/proc/PID/root) of the
// process of pidfd, and checks that the process has not been reaped since:
// its pid, the name of procRoot, was then still its, not reused by
// another process whose root was opened instead.
func openRootOf(pidfd int, procRoot string) (int, error) {
	root, err := unix.Open(procRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		unix.Close(root)
		return -1, fmt.Errorf("%s: its process may be gone, the pid another's: %w", procRoot, err)
	}
	return root, nil
}

// programKind is the kind of runc's words for why a program cannot run
// (fs.ErrNotExist for one that does not exist, or whose #! interpreter or
// loader does not; fs.ErrPermission for one that may not be run, or is of
// no format the kernel runs), nil if they say neither.
func programKind(why string) error {
	switch {
	case strings.Contains(why, "executable file not found"), strings.Contains(why, syscall.ENOENT.Error()):
		return fs.ErrNotExist
	case strings.Contains(why, syscall.EACCES.Error()), strings.Contains(why, syscall.ENOEXEC.Error()):
		return fs.ErrPermission
	}
	return nil
}

// execveFailure is why the kernel refused to run program (runc's words,
// matching programKind's kind) if the process's exit code and all it wrote
// on stderr (out) are runc's init failing at its execve: a program found
// and allowed, but whose #! interpreter does not exist, or of no
// executable format. runc has then told the shim the process started, so
// it can tell the failure only there, as `exec /PATH: exec format error`,
// exiting 1 (runc 1.1) or 255 (since 1.2). nil if they are not that.
func execveFailure(program string, code uint32, out string) error {
	line, ok := strings.CutSuffix(out, "\n")
	line = strings.TrimSuffix(line, "\r") // a terminal's line end
	rest, isExec := strings.CutPrefix(line, "exec ")
	i := strings.LastIndex(rest, ": ")
	if code != 1 && code != 255 || !ok || !isExec || i < 0 || strings.Contains(line, "\n") {
		return nil
	}
	path, why := rest[:i], rest[i+2:]
	// runc ran program itself, or found it in a directory of $PATH.
	if path != program && (strings.Contains(program, "/") || !strings.HasSuffix(path, "/"+program)) {
		return nil
	}
	if kind := programKind(why); kind != nil {
		return kindError{errors.New(line), kind}
	}
	return nil
}

// headWriter passes writes on to w and keeps the first keep bytes of them.
type headWriter struct {
	w    io.Writer
	keep int
	mu   sync.Mutex
	head []byte
	more bool // more was written than head holds
}

// maxExecveMessage bounds the line runc writes when an execve fails: a
// path and the system's words.
const maxExecveMessage = unix.PathMax + 64

func (h *headWriter) Write(b []byte) (int, error) {
	h.mu.Lock()
	n := min(len(b), h.keep-len(h.head))
	h.head = append(h.head, b[:n]...)
	h.more = h.more || n < len(b)
	h.mu.Unlock()
	return h.w.Write(b)
}

// written is all that was written, and whether head holds it all.
func (h *headWriter) written() (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.head), !h.more
}

// wroteAny is whether anything was written to h (nil: nothing).
func (h *headWriter) wroteAny() bool {
	if h == nil {
		return false
	}
	head, whole := h.written()
	return head != "" || !whole
}

// kindError is an error that also matches a kind (errors.Is).
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// runcStart is what starting an exec through runc gave.
type runcStart struct {
	p   *runcProcess
	err error
}

// runcExecTimeout bounds the start of an exec through runc, which runs on
// when its caller gives up, and the removal of one nobody took.
const runcExecTimeout = time.Minute

// remove kills and removes a process nobody took.
func (p *runcProcess) remove() {
	ctx, cancel := context.WithTimeout(WithNamespace(context.Background()), runcExecTimeout)
	defer cancel()
	if p.proc.Kill(ctx, syscall.SIGKILL) == nil {
		select {
		case <-p.exitCh:
		case <-ctx.Done():
		}
	}
	p.proc.Delete(ctx)
}

// execProcess is the process spec runc runs spec with: the container's
// environment, directory and user with spec's changes, and that user's
// capabilities (capabilitiesFor); and the user for the agent (nil: the
// main process's). Through the agent, an environment without HOME gets
// the user's home directory, as runc gives its execs.
func (c *Container) execProcess(ctx context.Context, spec ExecSpec) (specs.Process, *wire.Cred, error) {
	if err := checkExec(spec); err != nil {
		return specs.Process{}, nil, err
	}
	pspec, err := c.processSpec(ctx)
	if err != nil {
		return pspec, nil, err
	}
	mainUID := agentUID(pspec) // with the agent: read before the exec's args replace its
	pspec.Args = spec.Args
	pspec.Terminal = spec.Terminal
	pspec.Env = mergeEnv(pspec.Env, spec.Env)
	if spec.Terminal && !setsEnv(pspec.Env, "TERM") {
		pspec.Env = append(pspec.Env, "TERM=xterm") // as Docker's exec -t: what draws on a terminal needs it
	}
	if spec.Cwd != "" {
		pspec.Cwd = spec.Cwd
	}
	var user *wire.Cred
	var home string
	if spec.User != "" {
		u, h, err := resolveUser(c.task.Pid(), spec.User)
		if err != nil {
			return pspec, nil, err
		}
		pspec.User, user, home = u, credOf(u), h
	}
	if c.agent != nil && !setsEnv(pspec.Env, "HOME") {
		if user == nil {
			// As the main process's user, the exec needs no user file: one
			// that cannot be read leaves the home of a user it lacks.
			if _, home, _, err = lookPasswd(inProcRoot(c.task.Pid()), strconv.FormatUint(uint64(mainUID), 10), true, uint64(mainUID)); err != nil {
				home = defaultHome
			}
		}
		pspec.Env = append(pspec.Env, "HOME="+home)
	}
	if err := checkArgTotal(c.task.Pid(), pspec.Args, pspec.Env); err != nil {
		return pspec, nil, err
	}
	pspec.Capabilities = capabilitiesFor(pspec.Capabilities, pspec.User.UID)
	return pspec, user, nil
}

// capabilitiesFor is caps, a process spec's, for a process run as uid: a
// user not root has no effective or permitted capabilities, root has its
// bounding set (the container's capabilities), as in Docker (moby
// #36587). A process not root loses them at its execve (wharf gives none
// ambient), but runc would make the execve with them: CAP_DAC_OVERRIDE
// ran a program the user may not run (a root-only script's interpreter
// then could not read it and exited 2, where a shell and the agent refuse
// it: 126). Root's are restored for an exec as root into a container
// whose main process is not root.
func capabilitiesFor(caps *specs.LinuxCapabilities, uid uint32) *specs.LinuxCapabilities {
	if caps == nil {
		return nil
	}
	c := *caps
	c.Effective, c.Permitted = nil, nil
	if uid == 0 {
		c.Effective, c.Permitted = slices.Clone(c.Bounding), slices.Clone(c.Bounding)
	}
	return &c
}

// withUserCapabilities gives the spec's process the capabilities of its
// user (see capabilitiesFor).
func withUserCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	s.Process.Capabilities = capabilitiesFor(s.Process.Capabilities, s.Process.User.UID)
	return nil
}

// ErrBadExec is an exec the kernel cannot run as given (see
// hostcontainers.ErrBadExec).
var ErrBadExec = hostcontainers.ErrBadExec

// maxArgBytes is the most bytes an argument or an environment entry may
// have (the kernel's MAX_ARG_STRLEN).
const maxArgBytes = 128 << 10

// checkExec refuses what execve and chdir cannot take, with what is wrong
// (the kernel would only say "invalid argument" or "argument list too
// long").
func checkExec(spec ExecSpec) error {
	if len(spec.Args) > 0 && spec.Args[0] == "" {
		return fmt.Errorf("%w: the program name is empty", ErrBadExec)
	}
	for _, l := range []struct {
		what  string
		items []string
	}{{"argument", spec.Args}, {"environment entry", spec.Env}} {
		for i, s := range l.items {
			if len(s) > maxArgBytes {
				return fmt.Errorf("%w: %s %d is %d bytes, over the kernel's limit of %d", ErrBadExec, l.what, i, len(s), maxArgBytes)
			}
			if strings.IndexByte(s, 0) >= 0 {
				return fmt.Errorf("%w: %s %q contains a NUL byte", ErrBadExec, l.what, s)
			}
		}
	}
	switch {
	case len(spec.Cwd) >= maxPath:
		return fmt.Errorf("%w: cwd is %d bytes, over the kernel's limit of %d", ErrBadExec, len(spec.Cwd), maxPath-1)
	case strings.IndexByte(spec.Cwd, 0) >= 0:
		return fmt.Errorf("%w: cwd %q contains a NUL byte", ErrBadExec, spec.Cwd)
	case spec.Cwd != "" && !strings.HasPrefix(spec.Cwd, "/"):
		return fmt.Errorf("%w: cwd must be an absolute path, got %q", ErrBadExec, spec.Cwd)
	}
	return nil
}

// checkArgTotal refuses arguments and an environment that execve would
// refuse as a whole ("argument list too long") in a process with the
// stack limit of process pid (the container's init): each entry counts its
// bytes, its NUL and its pointer, against a quarter of the stack limit, at
// most 6 MiB and at least 128 KiB (the kernel's bprm_stack_limits).
func checkArgTotal(pid uint32, args, env []string) error {
	stack, err := stackLimit(pid)
	if err != nil {
		return fmt.Errorf("reading the container's stack limit: %w", err)
	}
	limit := max(min(stack/4, 6<<20), 128<<10)
	var total uint64
	for _, s := range slices.Concat(args, env) {
		total += uint64(len(s)) + 1 + 8
	}
	if total > limit {
		return fmt.Errorf("%w: the arguments and environment are %d bytes, over the kernel's limit of %d", ErrBadExec, total, limit)
	}
	return nil
}

// stackLimit is the soft stack limit of process pid, read from
// /proc/PID/limits, which anyone may read: prlimit(2) on a process of
// another user (a main process not root) needs CAP_SYS_RESOURCE, which
// wharf may not have (run in a container with Docker's capabilities).
func stackLimit(pid uint32) (uint64, error) {
	path := fmt.Sprintf("/proc/%d/limits", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max stack size "); ok {
			soft, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
			if soft == "unlimited" {
				return unix.RLIM_INFINITY, nil
			}
			n, err := strconv.ParseUint(soft, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: the stack size %q is not a number", path, soft)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no line \"Max stack size\"", path)
}

// shownArgs is args as an error quotes them, cut after 200 bytes: a
// command line may be megabytes.
func shownArgs(args []string) string {
	const most = 200
	s := fmt.Sprint(args)
	if len(s) <= most {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(s[:most], ""), len(s))
}

// stdinCloser feeds the stdin pipe of a process without a terminal and, at
// the end of the input, closes it so the process sees EOF: the shim keeps
// its stdin pipe open until told.
type stdinCloser struct {
	r       io.Reader
	started chan client.Process
	once    sync.Once
}

func (s *stdinCloser) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil { // the end of the input, or its writer gave up: EOF either way
		s.closeStdin()
	}
	return n, err
}

func (s *stdinCloser) closeStdin() {
	s.once.Do(func() {
		go func() {
			if proc := <-s.started; proc != nil { // nil: the process never started
				proc.CloseIO(WithNamespace(context.Background()), client.WithStdinCloser)
			}
		}()
	})
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func (p *runcProcess) Pid() uint32 { return p.proc.Pid() }

func (p *runcProcess) Resize(ctx context.Context, cols, rows uint32) error {
	return p.proc.Resize(WithNamespace(ctx), cols, rows)
}

func (p *runcProcess) Wait(ctx context.Context) (uint32, error) {
	ctx = WithNamespace(ctx)
	select {
	case st := <-p.exitCh:
		code, _, err := st.Result()
		p.proc.IO().Wait() // all output delivered
		p.proc.Delete(ctx)
		if out, whole := p.errHead.written(); whole && err == nil && !p.outHead.wroteAny() {
			if failed := execveFailure(p.program, code, out); failed != nil {
				code = uint32(hostcontainers.ExecExitCode(failed)) // as a shell exits
			}
		}
		return code, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *runcProcess) Kill(ctx context.Context, sig syscall.Signal) error {
	return p.proc.Kill(WithNamespace(ctx), sig)
}

// End kills the process (runc starts it in the container's process group:
// what it started lives on).
func (p *runcProcess) End() { go p.Kill(context.Background(), syscall.SIGKILL) }

// mergeEnv overrides base KEY=VALUE entries with extra ones.
func mergeEnv(base, extra []string) []string {
	out := append([]string{}, base...)
	for _, kv := range extra {
		key := kv
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				key = kv[:i]
				break
			}
		}
		replaced := false
		for i, old := range out {
			if len(old) > len(key) && old[:len(key)] == key && old[len(key)] == '=' {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// chownTo gives dirs to u, the user the container's main process runs as
// (the image's USER, resolved in its own /etc/passwd).
func chownTo(u specs.User, dirs []string) error {
	for _, d := range dirs {
		if err := os.Chown(d, int(u.UID), int(u.GID)); err != nil {
			return fmt.Errorf("giving %s to uid %d: %w", d, u.UID, err)
		}
	}
	return nil
}
