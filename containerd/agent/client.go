// Package agent is wharf's client of wharf-init, the agent that is PID 1 in
// a container (internal/agent): it starts processes in the container with
// descriptors wharf created, so their input and output do not pass through
// the agent.
package agent

import (
	"context"
	"errors"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

// Client talks to the agent of one container.
type Client struct {
	// dir is the host directory mounted at wire.SocketDir in the
	// container; pid the agent's host pid.
	dir string
	pid int
	// reached is set once a dial got through: the agent has started, and
	// a socket missing since was removed, so a dial stops waiting for it.
	reached atomic.Bool
}

// New returns a client of the agent listening in dir (a host directory
// only root may enter), which must be the process pid.
func New(dir string, pid int) *Client { return &Client{dir: dir, pid: pid} }

// ErrImpostor is a socket served by another process than the agent.
var ErrImpostor = errors.New("the agent's socket is not served by the container's init process")

// kindErrors are what errors.Is matches for the agent's error kinds.
var kindErrors = map[string]error{
	wire.KindNotFound:   fs.ErrNotExist,
	wire.KindPermission: fs.ErrPermission,
	wire.KindExists:     fs.ErrExist,
	wire.KindInvalid:    fs.ErrInvalid,
	wire.KindNotDir:     syscall.ENOTDIR,
	wire.KindIsDir:      syscall.EISDIR,
	wire.KindLimit:      ErrLimit,
}

// ErrLimit is an operation the agent refused because a limit is reached
// (e.g. too many background processes).
var ErrLimit = hostcontainers.ErrLimit

// Error is an operation the agent refused or that failed in the
// container: its message (as the agent gave it, e.g. "open /x: no such
// file or directory") and, for errors.Is, the matching fs or syscall error.
type Error struct {
	Message string
	kind    error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the fs or syscall error of the kind, if any.
func (e *Error) Unwrap() error { return e.kind }

// dialWait is how long a dial retries while the agent starts up (until a
// dial first got through).
const dialWait = 5 * time.Second

// unreachable is a failure to reach the agent. It matches what it met
// (syscall.ECONNREFUSED, ErrNotASocket, say) but not the kinds of file
// errors (fs.ErrNotExist, fs.ErrPermission), which an exec's error
// matches for its program only: wharf exec exited 127 when the agent's
// socket was gone.
type unreachable struct{ err error }

func (e unreachable) Error() string { return e.err.Error() }

func (e unreachable) Is(target error) bool {
	switch target {
	case fs.ErrNotExist, fs.ErrPermission, fs.ErrExist:
		return false
	}
	return errors.Is(e.err, target)
}

// dial connects to the agent, retrying while it starts, and checks the
// peer is the agent.
func (c *Client) dial(ctx context.Context) (*net.UnixConn, error) {
	// The directory's path may be longer than a socket address allows:
	// reach it through a descriptor.
	d, err := os.Open(c.dir)
	if err != nil {
		return nil, unreachable{fmt.Errorf("the agent's directory: %w", err)}
	}
	defer d.Close()
	deadline := time.Now().Add(dialWait)
	for {
		conn, err := dialSocket(int(d.Fd()))
		if err == nil {
			if err := c.checkPeer(conn); err != nil {
				conn.Close()
				return nil, err
			}
			c.reached.Store(true)
			return conn, nil
		}
		starting := !c.reached.Load() && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED))
		if !starting || time.Now().After(deadline) {
			return nil, unreachable{fmt.Errorf("connecting to the agent: %w", err)}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// ErrNotASocket is something else than a socket where the agent's socket
// should be: the container's root can put a symbolic link there, which
// would lead wharf to a socket of the host.
var ErrNotASocket = errors.New("the agent's socket is not a socket")

// dialSocket connects to the socket in the directory dir, without
// following a symbolic link: it connects through a descriptor of the
// socket file itself.
func dialSocket(dir int) (*net.UnixConn, error) {
	fd, err := unix.Openat(dir, wire.SocketName, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%w (mode %#o)", ErrNotASocket, st.Mode)
	}
	return net.DialUnix("unix", nil, &net.UnixAddr{Net: "unix", Name: fmt.Sprintf("/proc/self/fd/%d", fd)})
}

// checkPeer refuses a socket the container's root put in the agent's
// place.
func (c *Client) checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	if cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	if int(cred.Pid) != c.pid {
		return fmt.Errorf("%w (pid %d, want %d)", ErrImpostor, cred.Pid, c.pid)
	}
	return nil
}

// Process is a process the agent started.
type Process struct {
	conn *net.UnixConn
	// Pid is the process's pid in the container.
	Pid int
	// Terminal is the controlling side of the process's terminal, if it
	// has one.
	Terminal *os.File
	exited   chan struct{}
	code     int
	err      error
	once     sync.Once
	sending  chan struct{} // held by the signal being sent
}

// Exec starts x in the container with files as its descriptors (x names
// them by index). The files are the caller's to close.
func (c *Client) Exec(ctx context.Context, x wire.Exec, files ...*os.File) (*Process, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	var r wire.Reply
	got, err := request(ctx, conn, &wire.Request{Exec: &x}, &r, files...)
	if err == nil && r.Error != "" {
		err = replyError(r)
	}
	if err == nil && !r.Started {
		err = errors.New("agent: unexpected reply")
	}
	if err != nil {
		for _, f := range got {
			f.Close()
		}
		conn.Close()
		return nil, err
	}
	p := &Process{conn: conn, Pid: r.Pid, exited: make(chan struct{}), sending: make(chan struct{}, 1)}
	if len(got) > 0 {
		p.Terminal = got[0]
	}
	go p.waitExit()
	return p, nil
}

func replyError(r wire.Reply) error {
	return &Error{Message: r.Error, kind: kindErrors[r.Kind]}
}

// File runs a file operation and returns the reply and the descriptor
// that came with it (read, write and watch), which the caller owns.
func (c *Client) File(ctx context.Context, op wire.File) (wire.Reply, []*os.File, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return wire.Reply{}, nil, err
	}
	defer conn.Close()
	var r wire.Reply
	files, err := request(ctx, conn, &wire.Request{File: &op}, &r)
	if err == nil && r.Error != "" {
		err = replyError(r)
	}
	if err == nil && (op.Op == wire.FileRead || op.Op == wire.FileWrite || op.Op == wire.FileWatch) && len(files) != 1 {
		err = errors.New("agent: no descriptor in the reply")
	}
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return wire.Reply{}, nil, err
	}
	return r, files, nil
}

// maxStartError bounds what Started reads of the agent's start error.
const maxStartError = 4 << 10

// Started waits until the agent has started the container's main process
// (it then listens) or has ended (exited closes). If the main process
// could not start, it returns why, as the agent wrote it (an *Error of its
// kind: fs.ErrNotExist for a program not found, say); a main process
// that started and already exited is no error.
func (c *Client) Started(ctx context.Context, exited <-chan struct{}) error {
	deadline := time.Now().Add(dialWait)
	for {
		if _, err := os.Lstat(filepath.Join(c.dir, wire.SocketName)); err == nil {
			return nil
		}
		select {
		case <-exited:
			f, err := os.Open(filepath.Join(c.dir, wire.StartErrorName))
			if err != nil {
				return nil
			}
			defer f.Close()
			b, err := io.ReadAll(io.LimitReader(f, maxStartError))
			if err != nil {
				return fmt.Errorf("reading why the entrypoint did not start: %w", err)
			}
			kind, msg, _ := strings.Cut(string(b), "\n")
			return replyError(wire.Reply{Kind: kind, Error: strings.ToValidUTF8(strings.TrimSpace(msg), "?")})
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) { // slow, not failed: its execs will say if it never serves
			return nil
		}
	}
}

// waitExit reads the exit reply; the connection then closes.
func (p *Process) waitExit() {
	var r wire.Reply
	_, err := wire.Receive(p.conn, &r)
	switch {
	case errors.Is(err, io.EOF):
		// The agent ended, and with it the container and its processes.
		p.code = 128 + int(syscall.SIGKILL)
	case err != nil:
		p.err = fmt.Errorf("lost the agent: %w", err)
	case !r.Exited:
		p.err = errors.New("agent: unexpected reply")
	default:
		p.code = r.Code
	}
	p.conn.Close()
	close(p.exited)
}

// Wait waits for the process to exit and returns its exit code (128+n for
// a process ended by signal n).
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.exited:
		return p.code, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process. An agent that reads nothing (stopped,
// its socket full) holds it no longer than ctx; a send ctx cut short may
// have left half a message, so the connection is hung up, and the agent
// ends the process when it reads on. A signal ctx ends before its send
// begins is not sent, and one sent whole is sent: neither hangs up.
func (p *Process) Signal(ctx context.Context, sig syscall.Signal) error {
	select {
	case <-p.exited:
		return errors.New("the process has exited")
	default:
	}
	select { // a message is two writes when the first is short
	case p.sending <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("agent: %w", context.Cause(ctx))
	}
	defer func() { <-p.sending }()
	if ctx.Err() != nil {
		return fmt.Errorf("agent: %w", context.Cause(ctx))
	}
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		p.conn.SetWriteDeadline(time.Now())
		close(cut)
	})
	err := wire.Send(p.conn, wire.Request{Signal: int(sig)})
	if !stop() {
		<-cut
		p.conn.SetWriteDeadline(time.Time{})
		if err != nil {
			// A message cut short breaks the framing, and an agent that
			// reads no more (its socket full) ends the process when it
			// reads on: both hang up. A context that ended just as the
			// send began, with room to write, sent nothing: the process
			// goes on.
			if !errors.Is(err, wire.ErrNothingSent) || !writable(p.conn) {
				p.Close()
			}
			return fmt.Errorf("agent: %w", context.Cause(ctx))
		}
	}
	return err
}

// writable reports whether conn has room to write now: the bytes it
// holds unread are fewer than its send buffer, below which a write does
// not wait. (POLLOUT tells less: a Unix socket reports it only while at
// most a quarter of its buffer is taken, some 70 unread signals.)
func writable(conn *net.UnixConn) bool {
	raw, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	room := false
	raw.Control(func(fd uintptr) {
		held, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		if err != nil {
			return
		}
		size, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		room = err == nil && held < size
	})
	return room
}

// Close kills the process if it still runs (the agent kills a process
// whose caller hangs up) and releases its terminal.
func (p *Process) Close() {
	p.once.Do(func() {
		p.conn.Close()
		if p.Terminal != nil {
			p.Terminal.Close()
		}
	})
}

// Resize sets the size of the process's terminal.
func (p *Process) Resize(cols, rows uint16) error {
	if p.Terminal == nil {
		return errors.New("the process has no terminal")
	}
	raw, err := p.Terminal.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := raw.Control(func(fd uintptr) {
		err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); cerr != nil {
		return cerr
	}
	return err
}

// Background runs a background operation that answers with a reply
// (start, get, kill), or with a list (list), whose parts it joins (see
// wire.Reply.More).
func (c *Client) Background(ctx context.Context, b wire.Background) (wire.Reply, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return wire.Reply{}, err
	}
	defer conn.Close()
	r, err := roundTrip(ctx, conn, &b)
	for err == nil && r.More {
		var part wire.Reply
		part, err = roundTrip(ctx, conn, nil)
		r.Processes, r.More = append(r.Processes, part.Processes...), part.More
	}
	return r, err
}

// request sends req (with files) on conn, unless it is nil, and reads the
// next reply into r, or gives up when ctx ends: an agent that does not
// answer (a container's process can make an operation block in it) holds
// no caller past its deadline.
func request(ctx context.Context, conn *net.UnixConn, req *wire.Request, r *wire.Reply, files ...*os.File) ([]*os.File, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var err error
	if req != nil {
		err = wire.Send(conn, *req, files...)
	}
	var got []*os.File
	if err == nil {
		got, err = wire.Receive(conn, r)
	}
	if !stop() { // ctx ended: the deadline may have cut the exchange
		closeFiles(got)
		return nil, fmt.Errorf("agent: %w", context.Cause(ctx))
	}
	if errors.Is(err, wire.ErrTooLarge) { // refused before sending: only arguments and an environment get this big
		return nil, fmt.Errorf("%w: the arguments and environment do not fit in a request to %s: %w", hostcontainers.ErrBadExec, wire.InitName, err)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("agent: %w", err)
	}
	return got, err
}

// roundTrip sends a background request on conn, unless b is nil, and
// reads its next reply.
func roundTrip(ctx context.Context, conn *net.UnixConn, b *wire.Background) (wire.Reply, error) {
	var req *wire.Request
	if b != nil {
		req = &wire.Request{Background: b}
	}
	var r wire.Reply
	files, err := request(ctx, conn, req, &r)
	closeFiles(files)
	if errors.Is(err, io.EOF) {
		err = ErrGone
	}
	if err == nil && r.Error != "" {
		err = replyError(r)
	}
	return r, err
}

// ErrGone is the agent hanging up on a request: it ended, with its
// container.
var ErrGone = errors.New("the container stopped")

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Logs streams the output of background process id, kept from its start
// (fromStart) or from now on, and says how many bytes from the start were
// already overwritten. Closing the reader stops the stream.
func (c *Client) Logs(ctx context.Context, id string, fromStart bool) (io.ReadCloser, int64, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, 0, err
	}
	r, err := roundTrip(ctx, conn, &wire.Background{Op: wire.BackgroundLogs, ID: id, FromStart: fromStart})
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	return conn, r.Dropped, nil
}

// WaitBackground waits until background process id exits and returns its
// description. Canceling ctx stops the wait; the process is unaffected.
func (c *Client) WaitBackground(ctx context.Context, id string) (wire.ProcessInfo, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return wire.ProcessInfo{}, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	r, err := roundTrip(ctx, conn, &wire.Background{Op: wire.BackgroundWait, ID: id})
	if ctx.Err() != nil {
		return wire.ProcessInfo{}, ctx.Err()
	}
	if err == nil && r.Process == nil {
		err = errors.New("agent: unexpected reply")
	}
	if err != nil {
		return wire.ProcessInfo{}, err
	}
	return *r.Process, nil
}
