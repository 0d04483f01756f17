package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Files is the file system of the running container, through wharf-init
// (classes with init = false have none). Paths are absolute and resolved
// in the container (its symbolic links included), never on the host.
// Every call runs as the image's user, or as the user given to As.
// Errors are *fs.PathError (Rename's *os.LinkError): errors.Is(err,
// fs.ErrNotExist) for a missing file, fs.ErrPermission for one the user
// may not touch.
type Files struct {
	container *Container
	user      string
}

// Files returns the container's file system, acting as the image's user.
func (c *Container) Files() *Files { return &Files{container: c} }

// As returns the file system acting as user (a name from the image's
// /etc/passwd, or a uid).
func (f *Files) As(user string) *Files { return &Files{container: f.container, user: user} }

// FileInfo describes a file of the container.
type FileInfo struct {
	Path    string      `json:"path"`
	Name    string      `json:"name"`
	Size    int64       `json:"size"`
	Mode    fs.FileMode `json:"mode"`
	ModTime int64       `json:"mtime"` // Unix milliseconds
	IsDir   bool        `json:"is_dir"`
	// Target is a symbolic link's target.
	Target string `json:"target,omitempty"`
}

// Modified is the file's modification time.
func (i FileInfo) Modified() time.Time { return time.UnixMilli(i.ModTime) }

// FileEvent is one change Watch reports.
type FileEvent struct {
	// Op is create, delete, modify, close_write, moved_from, moved_to,
	// attrib, delete_self or move_self.
	Op    string `json:"op"`
	Path  string `json:"path"`
	IsDir bool   `json:"is_dir,omitempty"`
}

// encode encodes o, run as the user of f.
func (f *Files) encode(o abi.FileOptions) []byte {
	o.User = f.user
	return o.Encode(nil)
}

// pathError turns a host error into an *fs.PathError. The path is said
// once: the host's words lose the "lstat /x: " they begin with, or the
// ": /x" they end with, when they name the same path; and "wharf: "
// not at all, as the error begins with the op ("read /x: no such file
// or directory").
func pathError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: wharf.Within(hostFileError(err, func(msg string) (string, bool) { return withoutPath(msg, path) }))}
}

// linkError turns a host error of a rename into an *os.LinkError. The
// paths are said once: the host's words lose the "rename /a /b: " they
// begin with, and "wharf: " as pathError's do.
func linkError(op, from, to string, err error) error {
	if err == nil {
		return nil
	}
	return &os.LinkError{Op: op, Old: from, New: to, Err: wharf.Within(hostFileError(err, func(msg string) (string, bool) {
		return strings.CutPrefix(msg, op+" "+from+" "+to+": ")
	}))}
}

// hostFileError is the host's error of a file call with its words
// trimmed by trim (of the paths the caller's error names), matching
// ErrNotRunning, fs.ErrNotExist or fs.ErrPermission as it says.
func hostFileError(err error, trim func(msg string) (string, bool)) error {
	if e, ok := err.(*wharf.Error); ok {
		if rest, found := trim(e.Message); found {
			once := *e
			once.Message = rest
			err = &once
		}
	}
	switch {
	case notRunning(err):
		return withSentinel(ErrNotRunning, err)
	case errors.Is(err, abi.StatusNotFound):
		return kindError{err, fs.ErrNotExist}
	case errors.Is(err, abi.StatusDenied):
		return kindError{err, fs.ErrPermission}
	}
	return err
}

// withoutPath returns the host's words msg without the path they repeat:
// a leading "lstat /x: " or a trailing ": /x".
func withoutPath(msg, path string) (string, bool) {
	if hostOp, rest, found := strings.Cut(msg, " "+path+": "); found && hostPathOps[hostOp] {
		return rest, true
	}
	if path == "" {
		return msg, false
	}
	return strings.CutSuffix(msg, ": "+path)
}

// hostPathOps are the ops of the *fs.PathError the host's file calls
// return ("lstat /x: …"); a message that begins another way ("unknown
// user: …", with the path "user") keeps its words.
var hostPathOps = map[string]bool{"open": true, "lstat": true, "stat": true, "mkdir": true, "remove": true,
	"unlinkat": true, "openfdat": true, "readdirent": true, "fdopendir": true, "watch": true, "read": true, "write": true}

// kindError is a host error that also matches an fs error.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

func (f *Files) open(o abi.FileOptions) (*Stream, error) {
	ev, err := f.container.obj.current()
	if err != nil {
		return nil, pathError(o.Mode, o.Path, err)
	}
	h, err := ev.FileOpen(f.encode(o))
	if err != nil {
		return nil, pathError(o.Mode, o.Path, err)
	}
	return &Stream{ev: ev, handle: h}, nil
}

// Open opens a file for reading as a stream (the file is never held in
// memory whole).
func (f *Files) Open(path string) (*Stream, error) {
	return f.open(abi.FileOptions{Path: path, Mode: "read"})
}

// Create creates or truncates a file (mode 0644) and returns a writer
// that streams into it; Close it to finish.
func (f *Files) Create(path string) (*FileWriter, error) {
	return f.create(abi.FileOptions{Path: path})
}

// CreateMode is Create with the file's permission bits.
func (f *Files) CreateMode(path string, perm fs.FileMode) (*FileWriter, error) {
	return f.create(abi.FileOptions{Path: path, Perm: uint32(perm.Perm())})
}

func (f *Files) create(o abi.FileOptions) (*FileWriter, error) {
	o.Mode = "write"
	s, err := f.open(o)
	if err != nil {
		return nil, err
	}
	return &FileWriter{s: s, files: f, path: o.Path}, nil
}

// FileWriter writes a file of the container as a stream.
type FileWriter struct {
	s       *Stream
	files   *Files
	path    string
	written int64
}

// Write writes p to the file, waiting for room in the stream.
func (w *FileWriter) Write(p []byte) (int, error) {
	n, err := w.s.Write(p)
	w.written += int64(n)
	return n, pathError("write", w.path, err)
}

// ReadFrom copies r into the file in large chunks; io.Copy uses it.
func (w *FileWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(onlyWriter{w}, r, make([]byte, copyBufferSize))
}

// Close finishes the file and returns once it holds every byte written,
// or with the error that kept some from it (its disk is full, say).
func (w *FileWriter) Close() error {
	for {
		info, err := w.files.Stat(w.path)
		if err != nil || info.Size >= w.written {
			return errors.Join(err, w.s.Close())
		}
		// Bytes the host could not write never reach the file: an empty
		// write tells whether the stream failed, else the file would be
		// waited for until the event's deadline.
		if _, err := w.s.TryWrite(nil); err != nil {
			w.s.Close()
			return pathError("write", w.path, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Abort stops writing; the file keeps what it got.
func (w *FileWriter) Abort(reason string) error { return w.s.Abort(reason) }

// ReadFile reads a whole (small) file.
func (f *Files) ReadFile(path string) ([]byte, error) {
	s, err := f.Open(path)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return io.ReadAll(s)
}

// WriteFile creates or truncates path with the bytes of r.
func (f *Files) WriteFile(path string, r io.Reader) error {
	s, err := f.Create(path)
	if err != nil {
		return err
	}
	if _, err := s.ReadFrom(r); err != nil {
		s.Abort(err.Error())
		if pe, ok := err.(*fs.PathError); ok && pe.Op == "write" && pe.Path == path { // the file's, not r's
			return err
		}
		return pathError("write", path, err)
	}
	return s.Close()
}

func (f *Files) op(o abi.FileOptions, out any) error {
	ev, err := f.container.obj.current()
	if err != nil {
		return opError(o, err)
	}
	raw, err := ev.FileOp(f.encode(o))
	if err == nil && out != nil {
		err = json.Unmarshal(raw, out)
	}
	return opError(o, err)
}

// opError names the paths of o in err: an *os.LinkError for a rename,
// an *fs.PathError otherwise.
func opError(o abi.FileOptions, err error) error {
	if o.Op == "rename" {
		return linkError(o.Op, o.Path, o.To, err)
	}
	return pathError(o.Op, o.Path, err)
}

// Stat describes path (a symbolic link itself, not what it points to).
func (f *Files) Stat(path string) (FileInfo, error) {
	var info FileInfo
	return info, f.op(abi.FileOptions{Op: "stat", Path: path}, &info)
}

// List describes the entries of the directory path.
func (f *Files) List(path string) ([]FileInfo, error) {
	var list []FileInfo
	return list, f.op(abi.FileOptions{Op: "list", Path: path}, &list)
}

// MkdirAll creates a directory and any missing parents (mkdir -p).
func (f *Files) MkdirAll(path string) error {
	return f.op(abi.FileOptions{Op: "mkdir", Path: path}, nil)
}

// Remove removes a file or an empty directory.
func (f *Files) Remove(path string) error {
	return f.op(abi.FileOptions{Op: "remove", Path: path}, nil)
}

// RemoveAll removes path and everything in it; a missing path is an error.
func (f *Files) RemoveAll(path string) error {
	return f.op(abi.FileOptions{Op: "remove", Path: path, Recursive: true}, nil)
}

// Rename renames (moves) from to to.
func (f *Files) Rename(from, to string) error {
	return f.op(abi.FileOptions{Op: "rename", Path: from, To: to}, nil)
}

// Watcher streams the changes to a watched path.
type Watcher struct {
	s   *Stream
	dec *json.Decoder
}

// Watch watches path: a directory's entries, or a file. Read the changes
// with Next (io.EOF once path was removed, after its delete_self); Close
// stops watching.
func (f *Files) Watch(path string) (*Watcher, error) {
	s, err := f.open(abi.FileOptions{Path: path, Mode: "watch"})
	if err != nil {
		return nil, err
	}
	return &Watcher{s: s, dec: json.NewDecoder(s)}, nil
}

// Next waits for the next change.
func (w *Watcher) Next() (FileEvent, error) {
	var e FileEvent
	err := w.dec.Decode(&e)
	return e, err
}

// Handle makes a Watcher usable with Select: ready when a change is
// waiting (or buffered in the decoder).
func (w *Watcher) Handle() uint32 { return w.s.Handle() }

// event is the event the watch belongs to: Select waits on its behalf.
func (w *Watcher) event() wharf.Event { return w.s.event() }

// buffered reports whether the decoder holds a whole change that Next
// has not returned yet (the host writes one JSON line per change, and a
// read may bring several), which Select must count as ready.
func (w *Watcher) buffered() bool {
	rest, _ := io.ReadAll(w.dec.Buffered())
	return bytes.IndexByte(bytes.TrimLeft(rest, " \t\r\n"), '\n') >= 0
}

// Close stops watching.
func (w *Watcher) Close() error { return w.s.Close() }
