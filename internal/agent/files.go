package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/execpath"
)

// watchEvents are the inotify events a watch reports.
const watchEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// file runs one file operation for wharf, as the user it names (or the
// main process's), on the container's file system: paths and symlinks
// resolve here, in the container's mount namespace.
func (a *agent) file(c *net.UnixConn, op wire.File) {
	cred := a.user
	if op.User != nil {
		cred = *op.User
	}
	var r wire.Reply
	var send []*os.File
	asUser(cred, func() { r, send = doFile(op) })
	reply(c, r, send...)
	for _, f := range send {
		f.Close()
	}
}

// asUser runs fn on a thread of its own whose file-system identity is
// cred, so permissions are checked as the user. The thread is never given
// back: it ends with fn, and its identity with it.
func asUser(cred wire.Cred, fn func()) {
	if cred.UID == 0 && cred.GID == 0 && len(cred.Groups) == 0 {
		fn()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked: the thread exits with this goroutine
		groups := make([]int, len(cred.Groups))
		for i, g := range cred.Groups {
			groups[i] = int(g)
		}
		// Raw system calls: they change this thread only.
		if err := unix.Setgroups(groups); err != nil {
			panic(err)
		}
		unix.Setfsgid(int(cred.GID))
		unix.Setfsuid(int(cred.UID))
		fn()
	}()
	<-done
}

func doFile(op wire.File) (wire.Reply, []*os.File) {
	if !filepath.IsAbs(op.Path) {
		return wire.Reply{Error: "the path must be absolute: " + op.Path, Kind: wire.KindInvalid}, nil
	}
	switch op.Op {
	case wire.FileRead, wire.FileWrite:
		f, err := openFile(op)
		if err != nil {
			return errorReply(err), nil
		}
		return wire.Reply{}, []*os.File{f}
	case wire.FileStat:
		st, err := os.Lstat(op.Path)
		if err != nil {
			return errorReply(err), nil
		}
		info := fileInfo(op.Path, st)
		return wire.Reply{Info: &info}, nil
	case wire.FileList:
		list, err := listDir(op.Path)
		if err != nil {
			return errorReply(err), nil
		}
		return wire.Reply{Entries: list}, nil
	case wire.FileMkdir:
		return errorReply(os.MkdirAll(op.Path, 0o755)), nil
	case wire.FileRemove:
		if op.Recursive {
			if _, err := os.Lstat(op.Path); err != nil {
				return errorReply(err), nil
			}
			return errorReply(os.RemoveAll(op.Path)), nil
		}
		return errorReply(os.Remove(op.Path)), nil
	case wire.FileRename:
		if !filepath.IsAbs(op.To) {
			return wire.Reply{Error: "the path must be absolute: " + op.To, Kind: wire.KindInvalid}, nil
		}
		return errorReply(os.Rename(op.Path, op.To)), nil
	case wire.FileWatch:
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
		if err != nil {
			return errorReply(err), nil
		}
		if _, err := unix.InotifyAddWatch(fd, op.Path, watchEvents); err != nil {
			unix.Close(fd)
			return errorReply(&fs.PathError{Op: "watch", Path: op.Path, Err: err}), nil
		}
		return wire.Reply{}, []*os.File{os.NewFile(uintptr(fd), "inotify")}
	}
	return wire.Reply{Error: "unknown file operation " + op.Op, Kind: wire.KindInvalid}, nil
}

// openFile opens op.Path for reading, or creates or truncates it for
// writing. The open never waits: a named pipe would block it until a
// process of the container opens the other end, so a pipe or a socket is
// refused, as is a directory.
func openFile(op wire.File) (*os.File, error) {
	flag, perm := os.O_RDONLY, fs.FileMode(0)
	if op.Op == wire.FileWrite {
		flag, perm = os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fs.FileMode(op.Mode)&fs.ModePerm
		if perm == 0 {
			perm = 0o644
		}
	}
	f, err := os.OpenFile(op.Path, flag|unix.O_NONBLOCK|unix.O_NOCTTY, perm)
	if errors.Is(err, unix.ENXIO) { // a pipe without a reader, a socket
		return nil, notAFile(op.Path)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case st.IsDir():
		err = &fs.PathError{Op: "open", Path: op.Path, Err: unix.EISDIR}
	case st.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0:
		err = notAFile(op.Path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// listDir describes the entries of the directory at path, in name order.
// A listing larger than a reply may be (wire.MaxMessage) is refused as it
// grows, not once whole: the agent lives within the container's memory
// limit, and made whole, 100000 entries took more than 64 MiB of it (the
// kernel killed the agent, and so the container).
func listDir(path string) ([]wire.FileInfo, error) {
	d, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	list := []wire.FileInfo{}
	size := 0
	for {
		entries, err := d.ReadDir(1024)
		for _, e := range entries {
			st, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			info := fileInfo(filepath.Join(path, e.Name()), st)
			size += listedBytes + len(info.Path) + len(info.Name) + len(info.Target)
			if size > wire.MaxMessage {
				return nil, &kindError{wire.KindLimit, fmt.Errorf("listing %s: it has more entries than one answer holds (%d bytes of JSON)", path, wire.MaxMessage)}
			}
			list = append(list, info)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(list, func(a, b wire.FileInfo) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// listedBytes is about the JSON of a wire.FileInfo but for its strings.
const listedBytes = 100

// notAFile is the error for a path that is a named pipe or a socket.
func notAFile(path string) error {
	return &kindError{wire.KindInvalid, &fs.PathError{Op: "open", Path: path,
		Err: errors.New("not a file (a named pipe or a socket): the files API reads and writes files")}}
}

func fileInfo(path string, st os.FileInfo) wire.FileInfo {
	info := wire.FileInfo{Path: path, Name: st.Name(), Size: st.Size(), Mode: uint32(st.Mode()),
		ModTime: st.ModTime().UnixMilli(), IsDir: st.IsDir()}
	if st.Mode()&fs.ModeSymlink != 0 {
		info.Target, _ = os.Readlink(path)
	}
	return info
}

// errorReply is the reply for err (an empty one for nil), with the kind
// wharf maps to a status.
func errorReply(err error) wire.Reply {
	if err == nil {
		return wire.Reply{}
	}
	r := wire.Reply{Error: err.Error()}
	var errno unix.Errno
	var kind *kindError
	switch {
	case errors.As(err, &kind):
		r.Kind = kind.kind
	case errors.Is(err, execpath.ErrNotFound):
		r.Kind = wire.KindNotFound
	case errors.As(err, &errno):
		switch errno {
		case unix.ENOENT:
			r.Kind = wire.KindNotFound
		case unix.ENOTDIR:
			r.Kind = wire.KindNotDir
		case unix.EACCES, unix.EPERM, unix.EROFS, unix.ENOEXEC: // ENOEXEC: a program of no format the kernel runs may not be run
			r.Kind = wire.KindPermission
		case unix.EISDIR:
			r.Kind = wire.KindIsDir
		case unix.EEXIST, unix.ENOTEMPTY:
			r.Kind = wire.KindExists
		case unix.EINVAL, unix.ENAMETOOLONG, unix.ELOOP: // a NUL byte, a huge path, a link loop
			r.Kind = wire.KindInvalid
		}
	}
	return r
}
