// Package containerd is wharf's container backend: the containerd daemon it
// supervises, images, and (next) containers, tasks, exec and networking. It
// knows nothing about Wasm.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/keptthread"
)

// Namespace is the containerd namespace wharf keeps everything in.
const Namespace = "wharf"

// ErrMissingBinary names a program wharf needs and the package that has it.
var ErrMissingBinary = errors.New("missing program")

// requiredBinaries are the programs the embedded daemon needs, in the
// order they are checked, with their Debian packages.
var requiredBinaries = []struct{ name, pkg string }{
	{"containerd", "containerd"},
	{"containerd-shim-runc-v2", "containerd"},
	{"runc", "runc"},
}

// Daemon is a containerd wharf started and supervises, with a private root,
// state and socket.
type Daemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	// RuncRoot is where runc keeps the state of this daemon's containers.
	RuncRoot string
	dir      string
	cmd      *exec.Cmd
	done     chan error
	logs     *os.File
	logger   *slog.Logger
}

// CheckBinaries reports the first program the daemon needs that is not on
// PATH, with the package to install.
func CheckBinaries() error {
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b.name); err != nil {
			return fmt.Errorf("%w: %s is not on PATH; install the Debian package %q (apt-get install containerd runc)",
				ErrMissingBinary, b.name, b.pkg)
		}
	}
	return nil
}

// disabledPlugins are containerd plugins wharf does not use.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.internal.v1.tracing",
}

// SocketPath puts the unix socket name under dir unless the path would be
// too long for a unix socket, in which case it goes to a short directory in
// /run or the temp dir named after dir. Too long is longer than
// maxSocketPath with containerd's ".ttrpc" added: containerd opens its
// ttrpc socket next to its gRPC one, and refuses to start if that name is.
func SocketPath(dir, name string) string {
	p := filepath.Join(dir, name)
	if len(p+ttrpcSuffix) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(dir))
	base := "/run"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = os.TempDir()
	}
	return filepath.Join(base, "wharf-"+hex.EncodeToString(sum[:6]), name)
}

// maxSocketPath is the longest unix socket path containerd accepts.
const maxSocketPath = 104

// ttrpcSuffix names containerd's ttrpc socket after its gRPC one.
const ttrpcSuffix = ".ttrpc"

// EmbeddedAddress is the socket of the containerd that wharf serve starts
// for the data directory dataDir (an absolute path).
func EmbeddedAddress(dataDir string) string {
	return SocketPath(daemonDir(dataDir), "containerd.sock")
}

// daemonDir is where the containerd that wharf serve starts for the data
// directory dataDir keeps its state.
func daemonDir(dataDir string) string { return filepath.Join(dataDir, "containerd") }

// runcRoot is where runc keeps the state of the containers of the daemon
// whose state is at dir (see daemonDir).
func runcRoot(dir string) string { return filepath.Join(dir, "runc") }

// StartDaemon starts containerd with its root and state under dir and waits
// until it answers. Its log goes to dir/containerd.log.
func StartDaemon(ctx context.Context, dir string, logger *slog.Logger) (*Daemon, error) {
	if err := CheckBinaries(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := discardForeignRuntimeState(dir, logger); err != nil {
		return nil, err
	}
	sock := SocketPath(dir, "containerd.sock")
	for _, d := range []string{filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Dir(sock)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), quoteAll(disabledPlugins), sock, sock+ttrpcSuffix)
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logs, err := os.OpenFile(filepath.Join(dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("containerd", "--config", configPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	// Its own process group, so a Ctrl-C aimed at wharf does not stop it
	// before wharf has cleaned up; and it goes when wharf dies (started
	// from a kept thread: see package keptthread).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := keptthread.StartProcess(cmd); err != nil {
		logs.Close()
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	d := &Daemon{Address: sock, RuncRoot: runcRoot(dir), dir: dir, cmd: cmd, done: make(chan error, 1), logs: logs, logger: logger}
	go func() { d.done <- cmd.Wait() }()
	if err := d.waitReady(ctx, 15*time.Second); err != nil {
		d.Stop()
		return nil, fmt.Errorf("containerd did not start (see %s): %w", logs.Name(), err)
	}
	logger.Info("containerd started", "address", sock, "pid", cmd.Process.Pid)
	return d, nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func (d *Daemon) waitReady(ctx context.Context, timeout time.Duration) error {
	return AwaitDaemon(ctx, "containerd", d.done, timeout, 20*time.Millisecond, func() error { return Answers(ctx, d.Address) })
}

// Answers asks the containerd at address for its version: nil once it
// serves.
func Answers(ctx context.Context, address string) error {
	c, err := Connect(ctx, address)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Version(ctx)
	return err
}

// AwaitDaemon calls ready every interval until it succeeds, and fails with
// its last error once timeout has passed, at once if the daemon called name
// exits first (done delivers its exit, which is put back for others to
// see), or with ctx's error if ctx ends.
func AwaitDaemon(ctx context.Context, name string, done chan error, timeout, interval time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case exitErr := <-done:
			done <- exitErr
			return fmt.Errorf("%s exited: %v", name, exitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

// Stop asks containerd to exit and waits; it is killed after 10 s. It then
// removes the temporary mounts containerd left: containerd exits without
// waiting for the requests it serves, so a layer it was unpacking for a
// client that gave up (an import or pull cut short by Ctrl-C, just before
// Stop) stayed mounted under root/tmpmounts until its next start. It
// first waits, up to sharedWait, for the commands that use this daemon
// through a Share (wharf images while wharf serve runs) to end.
func (d *Daemon) Stop() error {
	defer d.logs.Close()
	if unshared := d.awaitShares(); unshared != nil {
		defer unshared.Close() // until containerd is gone: a command waiting for a share then finds it stopped
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		err = errors.New("containerd did not stop within 10 s and was killed")
	}
	return errors.Join(err, UnmountUnder(filepath.Join(d.dir, "root", "tmpmounts")), d.removeSockets())
}

// sharedWait is how long Stop waits for the commands that share the
// daemon: an import takes seconds, but a wharf serve must stop even
// under a pull that never ends.
const sharedWait = time.Minute

// sharesFile is the file, in a daemon's directory, that each Share holds
// a shared lock on, and Stop an exclusive one.
func sharesFile(dir string) string { return filepath.Join(dir, "shares.lock") }

// awaitShares takes the exclusive lock on the daemon's shares file, once
// no Share holds it or sharedWait has passed, and returns the file that
// holds it (nil without one: the lock is best effort).
func (d *Daemon) awaitShares() *os.File {
	f, err := os.OpenFile(sharesFile(d.dir), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		d.logger.Warn("stopping containerd without waiting for the commands that use it", "err", err)
		return nil
	}
	deadline := time.Now().Add(sharedWait)
	for said := false; ; said = true {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			d.logger.Warn("stopping containerd under the wharf commands that still use it", "address", d.Address, "err", err)
			return f
		}
		if !said {
			d.logger.Warn("waiting for the wharf commands that use this containerd to end", "address", d.Address, "at_most", sharedWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ErrNoEmbedded is a data directory without a running embedded
// containerd: its owner uses another (wharf serve --containerd-address),
// or it stopped.
var ErrNoEmbedded = errors.New("no containerd of its own is running there")

// ErrEmbeddedStopped is an embedded containerd that stopped while
// ShareEmbedded waited for its owner to let it share it.
var ErrEmbeddedStopped = errors.New("the containerd stopped")

// Share is a use of the embedded containerd of a data directory that
// another wharf started: that wharf's Stop waits until it is released.
type Share struct {
	// Address is the daemon's socket.
	Address string
	lock    *os.File
}

// ShareEmbedded takes a share of the embedded containerd of dataDir (an
// absolute path, resolved through symlinks). It is ErrNoEmbedded if no
// socket is there, ErrEmbeddedStopped if the daemon stopped while this
// waited for the share (its owner was stopping it).
func ShareEmbedded(dataDir string) (*Share, error) {
	dir, sock := daemonDir(dataDir), EmbeddedAddress(dataDir)
	if !isSocket(sock) {
		return nil, ErrNoEmbedded
	}
	f, err := os.OpenFile(sharesFile(dir), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sharing the containerd at %s: %w", sock, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil { // waits while the owner stops it
		f.Close()
		return nil, fmt.Errorf("sharing the containerd at %s: %w", sock, err)
	}
	if !isSocket(sock) {
		f.Close()
		return nil, ErrEmbeddedStopped
	}
	return &Share{Address: sock, lock: f}, nil
}

// Release ends the share.
func (s *Share) Release() { s.lock.Close() }

// isSocket reports whether path is a unix socket.
func isSocket(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().Type() == fs.ModeSocket
}

// removeSockets removes the ttrpc socket, which containerd leaves when it
// stops (it removes only its gRPC socket), and the short directory of
// their own the sockets had outside dir (SocketPath), which would stay in
// /run for every data directory with a long path.
func (d *Daemon) removeSockets() error {
	if err := os.Remove(d.Address + ttrpcSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if short := filepath.Dir(d.Address); short != d.dir {
		if err := os.Remove(short); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Connect opens a client to the daemon at address.
func Connect(ctx context.Context, address string) (*client.Client, error) {
	return client.New(address, client.WithDefaultNamespace(Namespace), client.WithTimeout(5*time.Second))
}

// WithNamespace scopes ctx to wharf's containerd namespace.
func WithNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}

// Backend is a connection to containerd: the one at an address the operator
// gave, or a daemon wharf started under its data directory.
type Backend struct {
	Client *client.Client
	// Address is the daemon's socket; RuncRoot keeps runc's state apart.
	Address, RuncRoot string
	// DataDir is wharf's data directory; it scopes network names.
	DataDir string
	daemon  *Daemon
}

// OpenBackend connects to address (a socket path, relative to the working
// directory, or a URL), or starts an embedded daemon under
// dataDir/containerd when address is empty. The first embedded one an
// ephemeral process (a test) opens first reclaims what ended ones left
// running (see ReclaimEnded), and registers the data directory for them.
func OpenBackend(ctx context.Context, dataDir, address string, logger *slog.Logger) (*Backend, error) {
	if address == "" {
		reclaimEndedOnce(ctx, logger)
		abs, err := filepath.Abs(dataDir)
		if err == nil {
			err = markAdoptable(abs)
		}
		if err != nil {
			return nil, err
		}
		if err := ephemeral.Register(abs); err != nil {
			logger.Warn("registering the data directory for removal after a kill", "err", err)
		}
	}
	return openBackend(ctx, dataDir, address, logger)
}

// openBackend is OpenBackend without the reclaiming.
func openBackend(ctx context.Context, dataDir, address string, logger *slog.Logger) (*Backend, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if address != "" && !strings.Contains(address, "://") {
		// gRPC takes a relative path for an authority, and buildkitd
		// runs elsewhere.
		if address, err = filepath.Abs(address); err != nil {
			return nil, err
		}
		// gRPC would wait out its dial timeout for a missing socket and
		// then say "timeout", and "connection refused" for a file.
		if err := checkSocket(address); err != nil {
			return nil, err
		}
	}
	b := &Backend{Address: address, RuncRoot: runcRoot(daemonDir(dataDir)), DataDir: dataDir}
	if address == "" {
		d, err := StartDaemon(ctx, daemonDir(dataDir), logger)
		if err != nil {
			return nil, err
		}
		b.daemon, b.Address, b.RuncRoot = d, d.Address, d.RuncRoot
	}
	c, err := Connect(ctx, b.Address)
	if err == nil {
		_, err = c.Version(ctx)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("containerd at %s: %w", b.Address, err)
	}
	b.Client = c
	return b, nil
}

// checkSocket says what is wrong with a containerd address that names no
// socket.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("containerd at %s: no such socket: is containerd running, and is this its address?", path)
	}
	if err != nil {
		return fmt.Errorf("containerd at %s: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("containerd at %s: not a socket: the address is containerd's socket, e.g. /run/containerd/containerd.sock", path)
	}
	return nil
}

// Close disconnects and stops the embedded daemon, if wharf started one.
func (b *Backend) Close() error {
	var err error
	if b.Client != nil {
		err = b.Client.Close()
	}
	if b.daemon != nil {
		err = errors.Join(err, b.daemon.Stop())
	}
	return err
}
