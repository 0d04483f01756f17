package agent

import (
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

// TestClientGivesUpWithItsContext: an agent that accepts an operation and
// never answers (a container's process can make one block in it) holds
// no caller past its context; each connection is closed.
func TestClientGivesUpWithItsContext(t *testing.T) {
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: filepath.Join(dir, wire.SocketName)})
	require.NoError(t, err)
	defer l.Close()
	closed := make(chan struct{}, 8)
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func() { // reads the request and answers nothing
				defer c.Close()
				var b [4096]byte
				for {
					if _, err := c.Read(b[:]); err != nil {
						closed <- struct{}{}
						return
					}
				}
			}()
		}
	}()
	client := New(dir, os.Getpid())
	ops := map[string]func(ctx context.Context) error{
		"file": func(ctx context.Context) error {
			_, _, err := client.File(ctx, wire.File{Op: wire.FileRead, Path: "/tmp/fifo"})
			return err
		},
		"exec": func(ctx context.Context) error {
			_, err := client.Exec(ctx, wire.Exec{Args: []string{"true"}, Stdin: -1, Stdout: -1, Stderr: -1})
			return err
		},
		"background": func(ctx context.Context) error {
			_, err := client.Background(ctx, wire.Background{Op: wire.BackgroundList})
			return err
		},
		"logs": func(ctx context.Context) error {
			_, _, err := client.Logs(ctx, "p", true)
			return err
		},
	}
	for name, op := range ops {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := op(ctx)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded, name)
		assert.Less(t, time.Since(start), 2*time.Second, name)
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Errorf("%s: the connection was left open", name)
		}
	}
}

// TestSignalGivesUpWithItsContext: a signal to a process whose agent reads
// nothing more (stopped, its socket full) holds its caller no longer than
// its context, and hangs up, so that the agent ends the process when it
// reads on. The send blocked until the agent read again.
func TestSignalGivesUpWithItsContext(t *testing.T) {
	p, c := startedProcess(t) // the agent reads nothing more
	var cut error
	start := time.Now()
	for i := 0; cut == nil && i < 1_000_000; i++ { // until the socket is full
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		cut = p.Signal(ctx, syscall.SIGCONT)
		cancel()
	}
	assert.ErrorIs(t, cut, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	assert.NoError(t, err, "the client hung up: the agent reads to its end")
	assert.Error(t, p.Signal(context.Background(), syscall.SIGCONT), "a process hung up on is not signalled")
}

// TestSignalSentWholeKeepsTheProcess: a signal whose context ends before
// it is sent is not sent, and one sent whole is sent, whenever its
// context ends: neither hangs up, which ends the process (a SIGCONT with
// a context already done killed it).
func TestSignalSentWholeKeepsTheProcess(t *testing.T) {
	p, c := startedProcess(t)
	received := make(chan int, 100)
	go func() {
		for {
			var x wire.Request
			if _, err := wire.Receive(c, &x); err != nil {
				close(received)
				return
			}
			received <- x.Signal
		}
	}()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, p.Signal(done, syscall.SIGCONT), context.Canceled)
	for range 50 { // a context ending as the signal is sent
		ctx, cancel := context.WithCancel(context.Background())
		go cancel()
		p.Signal(ctx, syscall.SIGCONT)
	}
	require.NoError(t, p.Signal(context.Background(), syscall.SIGUSR1), "the connection was hung up")
	for sig := range received {
		if sig == int(syscall.SIGUSR1) {
			return
		}
	}
	t.Fatal("the connection was hung up before SIGUSR1")
}

// TestWritableUntilTheSocketIsFull: writable, which decides whether a
// signal cut before its first byte hangs up (ending the process), finds
// room in a socket half full of signals the agent has not read yet (a
// Unix socket stops reporting POLLOUT at a quarter of its buffer), and
// none in a full one.
func TestWritableUntilTheSocketIsFull(t *testing.T) {
	p, _ := startedProcess(t)
	raw, err := p.conn.SyscallConn()
	require.NoError(t, err)
	var held, size int
	measure := func() {
		raw.Control(func(fd uintptr) {
			held, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
			size, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		})
	}
	for measure(); held < size/2; measure() {
		require.NoError(t, wire.Send(p.conn, wire.Request{Signal: int(syscall.SIGCONT)}))
	}
	assert.True(t, writable(p.conn), "a socket half full (%d of %d bytes) was taken for full", held, size)

	p.conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	for wire.Send(p.conn, wire.Request{Signal: int(syscall.SIGCONT)}) == nil {
	}
	p.conn.SetWriteDeadline(time.Time{})
	assert.False(t, writable(p.conn), "a full socket was taken for one with room")
}

// TestAnAgentNotReachedIsNoMissingProgram: an exec that cannot reach the
// agent (its directory or socket gone) fails with an error that names
// the errno but does not match fs.ErrNotExist, which an exec's error
// matches for a missing program (wharf exec exits 127 for it): it exited
// 127 when the agent's socket was removed.
func TestAnAgentNotReachedIsNoMissingProgram(t *testing.T) {
	gone := New(filepath.Join(t.TempDir(), "gone"), os.Getpid())
	noSocket := New(t.TempDir(), os.Getpid())
	noSocket.reached.Store(true) // it was reached before: no wait for it to start
	for name, c := range map[string]*Client{"directory": gone, "socket": noSocket} {
		_, err := c.Exec(context.Background(), wire.Exec{Args: []string{"true"}, Stdin: -1, Stdout: -1, Stderr: -1})
		assert.ErrorIs(t, err, syscall.ENOENT, name)
		assert.NotErrorIs(t, err, fs.ErrNotExist, name)
	}
}

// startedProcess is a process a fake agent started: the client's and the
// agent's ends of its connection, which the agent does not read.
func startedProcess(t *testing.T) (*Process, *net.UnixConn) {
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: filepath.Join(dir, wire.SocketName)})
	require.NoError(t, err)
	defer l.Close()
	agentSide := make(chan *net.UnixConn, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		var x wire.Request
		if _, err := wire.Receive(c, &x); err == nil {
			wire.Send(c, wire.Reply{Started: true, Pid: 7})
		}
		agentSide <- c
	}()
	p, err := New(dir, os.Getpid()).Exec(context.Background(), wire.Exec{Args: []string{"sleep"}, Stdin: -1, Stdout: -1, Stderr: -1})
	require.NoError(t, err)
	c := <-agentSide
	t.Cleanup(func() { c.Close() })
	return p, c
}
