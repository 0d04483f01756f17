// Package wire is the protocol between wharf and wharf-init, the agent that
// is PID 1 in a container: length-prefixed JSON messages on a unix stream
// socket, with descriptors passed alongside a message (SCM_RIGHTS). Each
// operation uses its own connection: the caller sends one Request, the
// agent answers with Replies on the same connection.
package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// SocketDir is where the agent's socket directory is mounted in the
// container, and Socket the socket in it; Binary is where the agent itself
// is mounted.
const (
	SocketDir = "/.wharf"
	Socket    = SocketDir + "/agent.sock"
	Binary    = SocketDir + "/init"
	// SocketName is the socket's name in its directory.
	SocketName = "agent.sock"
	// StartErrorName is the file, next to the socket, where the agent
	// says why the main process could not start before it exits (it then
	// never listens): the error's kind (Reply.Kind), a newline and its
	// message.
	StartErrorName = "start-error"
)

// InitName is the agent's program name; InitEnv names a path to it that
// overrides the default (InitName next to the wharf executable).
const (
	InitName = "wharf-init"
	InitEnv  = "WHARF_INIT"
)

// Request is one operation asked of the agent.
type Request struct {
	Exec       *Exec       `json:",omitempty"`
	File       *File       `json:",omitempty"`
	Background *Background `json:",omitempty"`
	// Signal is sent, on an exec's connection after it started, to
	// deliver a signal to the process.
	Signal int `json:",omitempty"`
}

// Cred is a user and its groups.
type Cred struct {
	UID, GID uint32
	Groups   []uint32 `json:",omitempty"`
}

// Exec starts a process. Its standard streams are the descriptors sent
// with the request, named by their index (-1: /dev/null); stdout and
// stderr may name the same descriptor, which keeps their order.
type Exec struct {
	Args []string
	Env  []string
	Cwd  string
	// User is nil for the user the container's main process runs as.
	User                  *Cred `json:",omitempty"`
	Stdin, Stdout, Stderr int
	// Terminal runs the process on a new pseudo-terminal of Rows x Cols
	// (the standard stream indexes are then unused).
	Terminal   bool
	Rows, Cols uint16 `json:",omitempty"`
}

// File is an operation on the container's files, run as User (nil: the
// main process's user). Read, Write and Watch answer with one descriptor:
// the open file, or an inotify descriptor watching Path.
type File struct {
	Op       string
	Path, To string `json:",omitempty"`
	User     *Cred  `json:",omitempty"`
	// Recursive removes a directory and everything in it.
	Recursive bool `json:",omitempty"`
	// Mode is the permission bits of a file Write creates (0: 0644).
	Mode uint32 `json:",omitempty"`
}

// File operations.
const (
	FileRead   = "read"
	FileWrite  = "write"
	FileStat   = "stat"
	FileList   = "list"
	FileMkdir  = "mkdir"
	FileRemove = "remove"
	FileRename = "rename"
	FileWatch  = "watch"
)

// Background is an operation on the container's background processes:
// processes the agent keeps, each with an id and its combined output in a
// ring buffer, until the container stops.
type Background struct {
	Op string
	// ID names the process (start: a chosen id, or empty for a new one).
	ID string `json:",omitempty"`
	// Exec is the process to start; its standard stream indexes are
	// unused (stdin is /dev/null, stdout and stderr one pipe of the
	// agent's).
	Exec *Exec `json:",omitempty"`
	// Signal is what BackgroundKill sends.
	Signal int `json:",omitempty"`
	// FromStart streams the output kept from the start (BackgroundLogs);
	// otherwise only what the process writes from now on.
	FromStart bool `json:",omitempty"`
}

// Background operations. Start, Get and Kill answer with one Reply; List
// with one or more (see Reply.More); Logs answers with a Reply (Dropped)
// and then the raw output on the same connection until the output ends or
// wharf hangs up; Wait answers with a Reply once the process has exited
// (Exited, Code).
const (
	BackgroundStart = "start"
	BackgroundList  = "list"
	BackgroundGet   = "get"
	BackgroundKill  = "kill"
	BackgroundLogs  = "logs"
	BackgroundWait  = "wait"
)

// Status of a background process.
const (
	StatusRunning   = "running"
	StatusPaused    = "paused"    // running, but stopped (SIGSTOP: its container paused)
	StatusCompleted = "completed" // exited with code 0
	StatusFailed    = "failed"    // exited with another code
	StatusKilled    = "killed"    // ended after a BackgroundKill
)

// ProcessInfo describes a background process.
type ProcessInfo struct {
	ID      string   `json:"id"`
	Pid     int      `json:"pid"`
	Command []string `json:"command"`
	Status  string   `json:"status"`
	// ExitCode is set once the process has exited: its code, or 128+n
	// for a process ended by signal n.
	ExitCode *int `json:"exit_code,omitempty"`
	// Started and Exited are Unix milliseconds (Exited 0 while it runs).
	Started int64 `json:"started"`
	Exited  int64 `json:"exited,omitempty"`
}

// FileInfo describes a file of the container.
type FileInfo struct {
	Path string `json:"path"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Mode is the Go fs.FileMode: permission bits and type bits.
	Mode uint32 `json:"mode"`
	// ModTime is the modification time in Unix milliseconds.
	ModTime int64 `json:"mtime"`
	IsDir   bool  `json:"is_dir"`
	// Target is a symbolic link's target.
	Target string `json:"target,omitempty"`
}

// Reply is the agent's answer. For an exec: Started (with the terminal's
// controlling side as the one descriptor if Terminal), then Exited; or
// Error.
type Reply struct {
	Started bool `json:",omitempty"`
	Pid     int  `json:",omitempty"`
	Exited  bool `json:",omitempty"`
	// Code is the exit code, 128+n for a process ended by signal n.
	Code  int    `json:",omitempty"`
	Error string `json:",omitempty"`
	// Kind classifies Error (see the Kind constants).
	Kind string `json:",omitempty"`
	// Info and Entries answer FileStat and FileList.
	Info    *FileInfo  `json:",omitempty"`
	Entries []FileInfo `json:",omitempty"`
	// Process and Processes answer BackgroundStart and Get, and List.
	Process   *ProcessInfo  `json:",omitempty"`
	Processes []ProcessInfo `json:",omitempty"`
	// More is set on each Reply of a List but the last: their Processes,
	// in order, make the list.
	More bool `json:",omitempty"`
	// Dropped is, for BackgroundLogs from the start, how many bytes of
	// the output were overwritten in the buffer before the stream began.
	Dropped int64 `json:",omitempty"`
}

// Error kinds: a file or program that does not exist, a caller that may
// not use the agent, a bad argument, a path that is not a directory or is
// one, a user that may not do it (or a program the kernel will not run:
// no execute permission, or of no executable format), a file that exists
// (or a directory that is not empty), a limit reached.
const (
	KindNotFound   = "not-found"
	KindRefused    = "refused"
	KindInvalid    = "invalid"
	KindNotDir     = "not-a-directory"
	KindIsDir      = "is-a-directory"
	KindPermission = "permission"
	KindExists     = "exists"
	KindLimit      = "limit"
)

// MaxMessage bounds a message (arguments and environment included, as
// JSON): the agent decodes it inside the container, within its memory
// limit.
const MaxMessage = 4 << 20

// ErrTooLarge is a message over MaxMessage.
var ErrTooLarge = errors.New("agent message too large")

// maxFiles bounds the descriptors sent with one message.
const maxFiles = 8

// ErrNothingSent is a Send that failed before any byte of its message
// was written: the connection's framing is intact.
var ErrNothingSent = errors.New("nothing of the message was sent")

// Send writes v with files attached. The files stay open. An error of a
// write that wrote nothing is also ErrNothingSent.
func Send(c *net.UnixConn, v any, files ...*os.File) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<" is 1 byte, not 6: more arguments fit
	if err := enc.Encode(v); err != nil {
		return err
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(body) > MaxMessage {
		return fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, len(body), MaxMessage)
	}
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	msg = append(msg, body...)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(msg, oob, nil)
	if err != nil && n == 0 {
		return errors.Join(ErrNothingSent, err)
	}
	if err == nil && n < len(msg) {
		_, err = c.Write(msg[n:])
	}
	return err
}

// Receive reads one message into v and returns the descriptors that came
// with it, which the caller owns.
func Receive(c *net.UnixConn, v any) ([]*os.File, error) {
	head := make([]byte, 4)
	oob := make([]byte, syscall.CmsgSpace(maxFiles*4))
	n, oobn, _, _, err := c.ReadMsgUnix(head, oob)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	files, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if n < 4 {
		if _, err := io.ReadFull(c, head[n:]); err != nil {
			closeAll(files)
			return nil, err
		}
	}
	size := binary.BigEndian.Uint32(head)
	if size > MaxMessage {
		closeAll(files)
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrTooLarge, size, MaxMessage)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		closeAll(files)
		return nil, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		closeAll(files)
		return nil, err
	}
	return files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "agent-fd"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// ErrNotFromHost is a connection from inside the container.
var ErrNotFromHost = errors.New("the agent only serves wharf: the caller is inside the container")
