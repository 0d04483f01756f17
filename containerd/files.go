package containerd

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

// FileInfo describes a file of a container.
type FileInfo = wire.FileInfo

// ErrNoAgent is a files operation on a container without wharf-init.
var ErrNoAgent = hostcontainers.ErrNoAgent

// maxPath is the kernel's PATH_MAX: a path has fewer bytes.
const maxPath = 4096

// fileOp runs op through the agent as user (a name or uid of the image;
// empty for the image's user). One that failed as the main process exited
// is hostcontainers.ErrExitedMeanwhile, whatever it met.
func (c *Container) fileOp(ctx context.Context, op wire.File, user string) (wire.Reply, []*os.File, error) {
	if c.agent == nil {
		return wire.Reply{}, nil, ErrNoAgent
	}
	for _, p := range []string{op.Path, op.To} {
		if len(p) >= maxPath {
			return wire.Reply{}, nil, fmt.Errorf("%w: a path of %d bytes: the limit is %d", fs.ErrInvalid, len(p), maxPath-1)
		}
	}
	if user != "" {
		u, _, err := resolveUser(c.task.Pid(), user)
		if err != nil {
			return wire.Reply{}, nil, c.exitedMeanwhile(err)
		}
		op.User = credOf(u)
	}
	r, files, err := c.agent.File(ctx, op)
	return r, files, c.exitedMeanwhile(err)
}

// OpenFile opens a file of the container for reading, or creates (or
// truncates) it for writing with mode (0: 0644), as user.
func (c *Container) OpenFile(ctx context.Context, path, user string, write bool, mode uint32) (*os.File, error) {
	op := wire.File{Op: wire.FileRead, Path: path}
	if write {
		op.Op, op.Mode = wire.FileWrite, mode
	}
	_, files, err := c.fileOp(ctx, op, user)
	if err != nil {
		return nil, err
	}
	return renamed(files[0], path)
}

// renamed is f (which it closes) as a file named name: the errors of its
// reads and writes name the container's file ("write /x: no space left
// on device"), not the descriptor the agent passed ("agent-fd").
func renamed(f *os.File, name string) (*os.File, error) {
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if cerr := raw.Control(func(old uintptr) { fd, err = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Stat describes path (a symbolic link itself, not its target).
func (c *Container) Stat(ctx context.Context, path, user string) (FileInfo, error) {
	r, _, err := c.fileOp(ctx, wire.File{Op: wire.FileStat, Path: path}, user)
	if err != nil {
		return FileInfo{}, err
	}
	return *r.Info, nil
}

// ListDir describes the entries of the directory path.
func (c *Container) ListDir(ctx context.Context, path, user string) ([]FileInfo, error) {
	r, _, err := c.fileOp(ctx, wire.File{Op: wire.FileList, Path: path}, user)
	return r.Entries, err
}

// MkdirAll creates a directory and its missing parents.
func (c *Container) MkdirAll(ctx context.Context, path, user string) error {
	_, _, err := c.fileOp(ctx, wire.File{Op: wire.FileMkdir, Path: path}, user)
	return err
}

// Remove removes a file or an empty directory, or with recursive a
// directory and everything in it.
func (c *Container) Remove(ctx context.Context, path, user string, recursive bool) error {
	_, _, err := c.fileOp(ctx, wire.File{Op: wire.FileRemove, Path: path, Recursive: recursive}, user)
	return err
}

// Rename renames (moves) from to to.
func (c *Container) Rename(ctx context.Context, from, to, user string) error {
	_, _, err := c.fileOp(ctx, wire.File{Op: wire.FileRename, Path: from, To: to}, user)
	return err
}

// MaxWatches is how many watches of a container's files may be open at
// once. Each is an inotify instance of the agent, which runs as root, and
// the kernel allows root 128 instances on the whole host by default
// (fs.inotify.max_user_instances): without a cap one object could take
// them all from the host's own root processes.
const MaxWatches = 16

// ErrTooManyWatches is a watch over MaxWatches.
var ErrTooManyWatches = hostcontainers.ErrTooManyWatches

// Watch streams the changes to path (a directory: its entries; a file:
// the file) as JSON lines, one FileEvent each, until closed, or until
// path is removed (or its file system unmounted): the stream then ends
// after delete_self.
func (c *Container) Watch(ctx context.Context, path, user string) (io.ReadCloser, error) {
	if c.watches.Add(1) > MaxWatches {
		c.watches.Add(-1)
		return nil, fmt.Errorf("%w: %d are open on this container, the limit is %d: close one first", ErrTooManyWatches, MaxWatches, MaxWatches)
	}
	_, files, err := c.fileOp(ctx, wire.File{Op: wire.FileWatch, Path: path}, user)
	if err != nil {
		c.watches.Add(-1)
		return nil, err
	}
	return &watchReader{f: files[0], dir: path, release: func() { c.watches.Add(-1) }}, nil
}

// FileEvent is a change Watch reports.
type FileEvent struct {
	// Op is create, delete, modify, close_write, moved_from, moved_to,
	// attrib, delete_self or move_self.
	Op string `json:"op"`
	// Path is the file changed (for a watched file, the file itself).
	Path  string `json:"path"`
	IsDir bool   `json:"is_dir,omitempty"`
}

var inotifyOps = []struct {
	mask uint32
	op   string
}{
	{unix.IN_CREATE, "create"}, {unix.IN_DELETE, "delete"}, {unix.IN_MODIFY, "modify"},
	{unix.IN_CLOSE_WRITE, "close_write"}, {unix.IN_MOVED_FROM, "moved_from"}, {unix.IN_MOVED_TO, "moved_to"},
	{unix.IN_ATTRIB, "attrib"}, {unix.IN_DELETE_SELF, "delete_self"}, {unix.IN_MOVE_SELF, "move_self"},
}

// watchReader turns inotify events into JSON lines.
type watchReader struct {
	f       *os.File
	dir     string
	pending bytes.Buffer
	// gone is set once the kernel dropped the watch (IN_IGNORED): no
	// event will come.
	gone bool
	buf  [64 << 10]byte
	// release gives the watch back to its container, once.
	release func()
	closed  sync.Once
}

func (w *watchReader) Read(p []byte) (int, error) {
	for w.pending.Len() == 0 {
		if w.gone {
			return 0, io.EOF
		}
		n, err := w.f.Read(w.buf[:])
		if err != nil {
			return 0, err
		}
		w.decode(w.buf[:n])
	}
	return w.pending.Read(p)
}

func (w *watchReader) decode(b []byte) {
	enc := json.NewEncoder(&w.pending)
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			return
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		if mask&unix.IN_IGNORED != 0 {
			w.gone = true
		}
		path := w.dir
		if name != "" {
			path = filepath.Join(w.dir, name)
		}
		for _, o := range inotifyOps {
			if mask&o.mask != 0 {
				enc.Encode(FileEvent{Op: o.op, Path: path, IsDir: mask&unix.IN_ISDIR != 0})
			}
		}
	}
}

func (w *watchReader) Close() error {
	w.closed.Do(w.release)
	return w.f.Close()
}
