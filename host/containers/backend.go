package containers

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"golang.org/x/sys/unix"
)

// Backend runs the objects' containers, at most one per object (package
// containerd implements it).
type Backend interface {
	// Start starts the object's container from spec; policy governs its
	// egress. It fails if one is already running, and with
	// ErrMaxInstances if maxPerClass (when positive) containers of the
	// class already run.
	Start(ctx context.Context, class, object string, spec Spec, policy *Policy, maxPerClass int) (Container, error)
	// Get returns the object's container, running or exited, if it has
	// one.
	Get(class, object string) (Container, bool)
	// List returns every container.
	List() []Container
	// Stop sends SIGTERM to the object's container and destroys it if it
	// has not exited after grace; reason is why, for StopCause and
	// WaitExit. An exited container is left as it is.
	Stop(ctx context.Context, class, object string, grace time.Duration, reason string) error
	// Destroy removes the object's container and its network; reason, if
	// not empty, is why, for WaitExit. A start (or a removal) of the
	// object's container under way is waited for first, so the object has
	// no container once it returns.
	Destroy(ctx context.Context, class, object, reason string) error
	// LogPath is the file that keeps the output of the object's container.
	LogPath(class, object string) string
	// CountExec counts an exec into a container of class in the metrics.
	CountExec(class string)
	// StopAll stops every container (SIGTERM, and SIGKILL after grace; 0
	// kills them at once) and removes it, as a shutdown does, leaving what
	// runs them open.
	StopAll(ctx context.Context, grace time.Duration) error
	// Close stops and removes the containers as StopAll does and releases
	// what runs them.
	Close(ctx context.Context, grace time.Duration) error
}

// OutOfMemory is why a container ended whose main process the kernel
// killed for lack of memory, in the log, wharf ps and a monitor's error.
const OutOfMemory = "out of memory (killed at the instance type's memory limit)"

// Container is an object's container.
type Container interface {
	// Info describes the container.
	Info() Info
	// Exited reports whether its main process has exited.
	Exited() bool
	// WaitExit waits for the main process to exit and returns its code,
	// the destroy reason if it was destroyed with one, and any error
	// waiting.
	WaitExit() (code uint32, reason string, err error)
	// SetDestroyReason records why the container is being destroyed, for
	// WaitExit.
	SetDestroyReason(reason string)
	// NoteObjectSignal records a signal the object sends the main
	// process, so an exit it caused is told as the object's doing.
	NoteObjectSignal(sig syscall.Signal)
	// StopCause says why the main process stopped when someone asked it
	// to (a destroy reason, a host stop, or the object's signal if the
	// exit came of it); empty when nobody asked.
	StopCause() string
	// OutOfMemory reports whether the main process, once exited, was
	// killed for lack of memory.
	OutOfMemory() bool
	// Signal sends sig to the main process (ErrExitedMeanwhile if it has
	// exited).
	Signal(ctx context.Context, sig syscall.Signal) error
	// Paused reports whether SIGSTOP paused the running container.
	Paused() bool
	// Pid is the main process's pid on the host; 0 once an exited
	// container was released.
	Pid() uint32
	// Labels are the container's labels.
	Labels(ctx context.Context) map[string]string
	// Stats reads the container's resource use.
	Stats(ctx context.Context) (Stats, error)
	// Exec starts a process in the container. A program that does not
	// exist is an error matching fs.ErrNotExist, one that may not be run
	// fs.ErrPermission.
	Exec(ctx context.Context, spec ExecSpec) (Process, error)

	// OpenFile opens a file of the container for reading, or creates
	// (or truncates) it for writing with mode (0: 0644), as user (a
	// name or uid of the image; empty for the image's user).
	OpenFile(ctx context.Context, path, user string, write bool, mode uint32) (*os.File, error)
	// Watch streams the changes to path as JSON lines until closed.
	Watch(ctx context.Context, path, user string) (io.ReadCloser, error)
	// Stat describes path.
	Stat(ctx context.Context, path, user string) (FileInfo, error)
	// ListDir describes the entries of directory path.
	ListDir(ctx context.Context, path, user string) ([]FileInfo, error)
	// MkdirAll makes directory path and its parents.
	MkdirAll(ctx context.Context, path, user string) error
	// Remove removes path (with recursive, a directory and its content).
	Remove(ctx context.Context, path, user string, recursive bool) error
	// Rename moves from to to.
	Rename(ctx context.Context, from, to, user string) error

	// StartBackground starts a background process: id is the id it gets
	// (empty: a new one).
	StartBackground(ctx context.Context, spec ExecSpec, id string) (ProcessInfo, error)
	// Backgrounds lists the background processes, running or exited.
	Backgrounds(ctx context.Context) ([]ProcessInfo, error)
	// Background describes background process id.
	Background(ctx context.Context, id string) (ProcessInfo, error)
	// KillBackground sends sig to background process id and its process
	// group.
	KillBackground(ctx context.Context, id string, sig int) error
	// BackgroundLogs streams the output of background process id: what
	// its buffer keeps (fromStart), or what it writes from now on;
	// dropped is how many bytes from the start were overwritten.
	BackgroundLogs(ctx context.Context, id string, fromStart bool) (r io.ReadCloser, dropped int64, err error)
	// WaitBackground waits until background process id has exited and
	// returns its description.
	WaitBackground(ctx context.Context, id string) (ProcessInfo, error)
}

// Info describes a container.
type Info struct {
	// Class and Object name the Durable Object it belongs to.
	Class, Object string
	// ID is the backend's name for it.
	ID string
	// Address is the container's own address, where its ports are; none
	// once an exited container's network was released.
	Address netip.Addr
	// Started is when it started (for one adopted from a previous run,
	// when it was created).
	Started time.Time
	// Policy governs its egress; it outlives the object's instance, which
	// finds it here when it is activated again.
	Policy *Policy
}

// Policy is a container's egress policy: what it may reach, and which of
// its requests the Worker's outbound handlers answer.
type Policy = egresspolicy.Policy

// Spec is what the host decides of a container to start.
type Spec struct {
	Image  string            // an image in the backend
	Labels map[string]string // on the container
	// Env is added to (and overrides) the image's environment.
	Env []string
	// Entrypoint replaces the image's entrypoint and command if set.
	Entrypoint []string
	Resources  Resources
	// Capabilities are added to the default set, e.g. "CAP_NET_RAW".
	Capabilities []string
	// DiskMB caps the writable layer; 0 is no cap.
	DiskMB int
	// Persistent are directories kept across starts on a disk of their
	// own.
	Persistent PersistentDirs
	// NoInit runs the entrypoint as PID 1, without wharf-init (no files
	// or background processes then).
	NoInit bool
}

// Resources are a container's limits: cgroup memory limit, CFS CPU quota
// and a pids limit.
type Resources struct {
	VCPU        float64 // fraction of one CPU, e.g. 0.25; 0 = unlimited
	MemoryBytes uint64  // 0 = unlimited
	Pids        int64   // 0 = unlimited
}

// PersistentDirs are directories of a container kept across its starts,
// all on one disk image.
type PersistentDirs struct {
	// Paths are absolute paths in the container.
	Paths []string
	// Image is the disk image file holding them (created on first use).
	Image string
	// SizeMB caps them all together.
	SizeMB int
}

// ExecSpec describes a process to run in a container.
type ExecSpec struct {
	Args []string
	// Env is added to (and overrides) the container's environment.
	Env  []string
	Cwd  string
	User string // a user name from the image's /etc/passwd, or a uid
	// Stdin, Stdout and Stderr may be nil: no input (EOF), output dropped.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Terminal runs the process on a pseudo-terminal: Stdout gets both
	// output streams and Stderr is unused.
	Terminal bool
}

// Process is a process started with Exec.
type Process interface {
	// Pid is the process's pid: in the container's PID namespace through
	// the agent, on the host through runc.
	Pid() uint32
	// Resize sets the size of the process's terminal.
	Resize(ctx context.Context, cols, rows uint32) error
	// Wait waits for the process to exit and all its output to be
	// delivered, releases it and returns its exit code.
	Wait(ctx context.Context) (uint32, error)
	// Kill sends sig to the process.
	Kill(ctx context.Context, sig syscall.Signal) error
	// End kills the process, and through the agent the processes it
	// started in its process group too, without waiting: nobody waits for
	// it any more.
	End()
}

// Stats are a container's resource use.
type Stats struct {
	// CPUNanos is the CPU time used since the container started.
	CPUNanos uint64
	// MemoryBytes is memory in use without the inactive page cache (what
	// `docker stats` shows); MemoryLimitBytes is the cgroup's limit.
	MemoryBytes, MemoryLimitBytes uint64
	// Pids is the number of processes and threads.
	Pids uint64
	// ReadBytes and WriteBytes are block I/O since the container started.
	ReadBytes, WriteBytes uint64
}

// ProcessInfo describes a background process of a container.
type ProcessInfo = wire.ProcessInfo

// FileInfo describes a file of a container.
type FileInfo = wire.FileInfo

// Errors a Backend returns that the service maps to the caller's status.
var (
	// ErrMaxInstances is a start beyond a class's max_instances.
	ErrMaxInstances = errors.New("too many containers")
	// ErrUnknownUser is an exec user the image does not know.
	ErrUnknownUser = errors.New("unknown user")
	// ErrExitedMeanwhile is an exec, a signal, a file or a background
	// process call that failed because the container's main process
	// exited as it went: the object is told the container is not running.
	ErrExitedMeanwhile = errors.New("the container's main process exited")
	// ErrBadExec is an exec the kernel cannot run as given: a NUL byte
	// in an argument, the environment or the directory, an argument or
	// environment entry (or all of them together) over the kernel's limit
	// or the container agent's, a relative directory, an empty program
	// name, a user:group as an exec's (or a file operation's) user, an
	// entrypoint the agent could not start (not in the image), an image
	// whose USER its /etc/passwd or /etc/group does not resolve, or an
	// image whose /etc/passwd or /etc/group is there but not a regular
	// file (a named pipe, a directory, a device), or a link into /dev,
	// /proc or /sys (in the container, the runtime's: /dev/zero).
	ErrBadExec = errors.New("bad exec")
	// ErrNoAgent is a files operation on a container without wharf-init.
	ErrNoAgent = errors.New("the container does not run wharf-init (init = false): files need it")
	// ErrTooManyWatches is a watch over the container's limit.
	ErrTooManyWatches = errors.New("too many watches")
	// ErrNoAgentBackground is a background process asked of a container
	// without wharf-init.
	ErrNoAgentBackground = errors.New("the container does not run wharf-init (init = false): background processes need it")
	// ErrLimit is an operation the container's agent refused because a
	// limit is reached (e.g. too many background processes).
	ErrLimit = errors.New("limit reached")
)

// pipeSize is the capacity of the pipes Pipe creates (the kernel's
// default, 64 KiB, costs a context switch per 64 KiB).
const pipeSize = 1 << 20

// Pipe returns a pipe for a process's stream, with a large buffer.
func Pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if raw, err := w.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
	return r, w, nil
}
