// Package build builds container images from Dockerfiles with BuildKit,
// never a Docker daemon: wharf starts a buildkitd of its own for the
// builds, with the containerd worker on wharf's containerd (in the
// namespace containerd.BuildNamespace, so its cache never mixes with wharf's
// containers), drives it through BuildKit's Go client, and imports the
// result into wharf's namespace. buildkitd runs only while wharf builds.
package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	bkclient "github.com/moby/buildkit/client"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/keptthread"
)

// Platform is the one platform wharf builds for.
const Platform = "linux/amd64"

// ErrMissingBuildkitd means the buildkitd program was not found.
var ErrMissingBuildkitd = errors.New("buildkitd not found")

// Engine is a running buildkitd wharf started, and a client to it.
type Engine struct {
	client  *bkclient.Client
	backend *containerd.Backend
	cmd     *exec.Cmd
	done    chan error
	logs    *os.File
	dir     string
	logger  *slog.Logger
	pids    int   // the limit of the build steps' processes (LimitBuilds)
	memory  int64 // the limit of their memory, in bytes (LimitBuilds)
}

// EngineOptions configure the buildkitd wharf starts.
type EngineOptions struct {
	// InsecureRegistries (host[:port]) are spoken to over plain HTTP;
	// loopback registries always are.
	InsecureRegistries []string
	// Logger receives the engine's start and stop.
	Logger *slog.Logger
	// Pids caps the processes and threads of all RUN steps together
	// (0: containerd.DefaultBuildPids).
	Pids int
	// Memory caps the memory of all RUN steps together, in bytes (0:
	// containerd.DefaultBuildMemory).
	Memory int64
}

// Binary finds buildkitd: next to the running program (where `make build`
// puts it), then on PATH.
func Binary() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "buildkitd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("buildkitd"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w next to wharf or on PATH: build it with `make build` (go build -o bin/ github.com/moby/buildkit/cmd/buildkitd)", ErrMissingBuildkitd)
}

// Dir is where the engine keeps its state under wharf's data directory.
func Dir(dataDir string) string { return containerd.BuildDir(dataDir) }

// Start runs buildkitd with its state under the backend's data directory
// and waits until it answers.
func Start(ctx context.Context, b *containerd.Backend, opts EngineOptions) (*Engine, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir := Dir(b.DataDir)
	root, tmp := filepath.Join(dir, "root"), filepath.Join(dir, "tmp")
	sock := containerd.SocketPath(dir, "buildkitd.sock")
	conf := configPath(dir)
	if err := RecoverKilled(ctx, b); err != nil {
		return nil, err
	}
	for _, d := range []string{root, tmp, filepath.Dir(sock)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	os.Remove(sock) // left by a killed run
	pids := opts.Pids
	if pids == 0 {
		pids = containerd.DefaultBuildPids
	}
	memory := opts.Memory
	if memory == 0 {
		memory = containerd.DefaultBuildMemory()
	}
	if err := b.LimitBuilds(pids, memory); err != nil {
		// Builds without a limit rather than none.
		logger.Warn("the build steps' processes or memory are not limited", "err", err)
	}
	cniBin, err := cniPlugins(bin)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cniConfigPath(dir), []byte(containerd.BuildCNIConfig()), 0o600); err != nil {
		return nil, err
	}
	if err := b.OpenBuildNetwork(); err != nil {
		return nil, fmt.Errorf("the build steps' network: %w", err)
	}
	if err := os.WriteFile(conf, []byte(config(root, sock, cniBin, cniConfigPath(dir), b, opts.InsecureRegistries)), 0o600); err != nil {
		return nil, errors.Join(err, b.RemoveBuildLeftovers(ctx))
	}
	logs, err := os.OpenFile(filepath.Join(dir, "buildkitd.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, errors.Join(err, b.RemoveBuildLeftovers(ctx))
	}
	cmd := exec.Command(bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = logs, logs
	// The snapshots it mounts go under its directory, not /tmp, so that
	// what a killed build leaves is found and unmounted.
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "XDG_RUNTIME_DIR="+tmp)
	// Its own process group, so a Ctrl-C aimed at wharf reaches it only
	// through wharf. It is killed outright when wharf dies: asked to
	// stop, it would wait for the containerd that died with wharf,
	// holding its lock on root. (Started from a kept thread: see package
	// keptthread.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := keptthread.StartProcess(cmd); err != nil {
		logs.Close()
		return nil, errors.Join(fmt.Errorf("starting buildkitd: %w", err), b.RemoveBuildLeftovers(ctx))
	}
	e := &Engine{backend: b, cmd: cmd, done: make(chan error, 1), logs: logs, dir: dir, logger: logger, pids: pids, memory: memory}
	go func() { e.done <- cmd.Wait() }()
	if err := e.connect(ctx, "unix://"+sock, 30*time.Second); err != nil {
		e.Close()
		return nil, fmt.Errorf("buildkitd did not start (see %s): %w", logs.Name(), err)
	}
	logger.Info("buildkitd started", "pid", cmd.Process.Pid, "address", sock)
	return e, nil
}

// config is buildkitd's configuration: only the containerd worker, on
// wharf's containerd, building for Platform, each RUN step in a network
// namespace of its own (the CNI network containerd.BuildCNIConfig at cniConf, with the
// plugins in cniBin), its build containers in the backend's cgroup for
// them. With the host's network (networkMode = "host"), a RUN reached
// every service on the host's loopback: wharf's own port, an etcd, a
// database.
func config(root, sock, cniBin, cniConf string, backend *containerd.Backend, insecure []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `root = %q

[grpc]
  address = [%q]

[worker.oci]
  enabled = false

[worker.containerd]
  enabled = true
  address = %q
  namespace = %q
  snapshotter = %q
  platforms = [%q]
  networkMode = "cni"
  cniBinaryPath = %q
  cniConfigPath = %q
  defaultCgroupParent = %q
  gc = true
`, root, "unix://"+sock, backend.Address, containerd.BuildNamespace, containerd.Snapshotter, Platform, cniBin, cniConf, backend.BuildCgroupParent())
	for _, r := range insecure {
		fmt.Fprintf(&b, "\n[registry.%q]\n  http = true\n", r)
	}
	return b.String()
}

func (e *Engine) connect(ctx context.Context, address string, timeout time.Duration) error {
	return containerd.AwaitDaemon(ctx, "buildkitd", e.done, timeout, 50*time.Millisecond, func() error {
		c, err := bkclient.New(ctx, address)
		if err != nil {
			return err
		}
		if _, err := c.ListWorkers(ctx); err != nil {
			c.Close()
			return err
		}
		e.client = c
		return nil
	})
}

// cniPlugins is the directory of the CNI plugins of the build steps'
// network (containerd.BuildCNIConfig) for the buildkitd at bin: cni/ next
// to it, where `make build` puts them (tools of this module).
func cniPlugins(bin string) (string, error) {
	dir := filepath.Join(filepath.Dir(bin), "cni")
	for _, name := range []string{"ptp", "host-local", "tuning", "loopback"} { // loopback: BuildKit's, for each namespace's lo
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("the CNI plugin %s, which the build steps' network needs, is not in %s: build it with `make build`: %w", name, dir, err)
		}
	}
	return dir, nil
}

// cniConfigPath is where the CNI configuration of the buildkitd whose state
// is at dir is written.
func cniConfigPath(dir string) string { return filepath.Join(dir, "cni.conflist") }

// configPath is where the configuration of the buildkitd whose state is at
// dir is written; its command line names it.
func configPath(dir string) string { return filepath.Join(dir, "buildkitd.toml") }

// RecoverKilled removes what the data directory's buildkitd left when
// wharf was killed while building: the
// process itself if it outlived wharf (it would hold its lock on its root,
// so no new one could start), its mounts and its steps' networks (see
// containerd.UnmountBuild), and its build containers, temporary leases
// and nft table (see containerd.RemoveBuildLeftovers). The caller owns
// the data directory, so no buildkitd of it is in use.
func RecoverKilled(ctx context.Context, b *containerd.Backend) error {
	dir := Dir(b.DataDir)
	err := containerd.KillProcesses(func(args []string) bool {
		return filepath.Base(args[0]) == "buildkitd" && slices.Contains(args, configPath(dir))
	})
	if err = errors.Join(err, containerd.UnmountBuild(dir), b.RemoveBuildLeftovers(ctx)); err != nil {
		return fmt.Errorf("cleaning up after an interrupted build: %w", err)
	}
	return nil
}

// Close stops buildkitd (it is killed after 10 s) and removes any mount or
// network namespace it left under its directory, the temporary leases it
// kept and the steps' nft table (see containerd.RemoveBuildLeftovers).
func (e *Engine) Close() error {
	if e.client != nil {
		e.client.Close()
	}
	defer e.logs.Close()
	e.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
		err = errors.New("buildkitd did not stop within 10 s and was killed")
	}
	e.logger.Info("buildkitd stopped")
	return errors.Join(err, containerd.UnmountBuild(e.dir), e.backend.RemoveBuildLeftovers(context.Background()))
}

// PruneCache removes BuildKit's whole build cache (buildkitd is started for
// it when it has state) and returns the bytes freed.
func PruneCache(ctx context.Context, b *containerd.Backend) (int64, error) {
	if _, err := os.Stat(Dir(b.DataDir)); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	e, err := Start(ctx, b, EngineOptions{})
	if err != nil {
		return 0, err
	}
	ch := make(chan bkclient.UsageInfo)
	counted := make(chan int64)
	go func() {
		var freed int64
		for u := range ch {
			freed += u.Size
		}
		counted <- freed
	}()
	err = e.client.Prune(ctx, ch, bkclient.PruneAll)
	close(ch)
	return <-counted, errors.Join(err, e.Close())
}
