package containers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/abi"
)

// badExec reports whether an exec (or background start) was refused for
// what the caller asked: a user the image lacks, or what the kernel
// cannot run as given. Such a refusal is INVALID, not an I/O failure.
func badExec(err error) bool {
	return errors.Is(err, ErrUnknownUser) || errors.Is(err, ErrBadExec)
}

// Execution is a process started with Exec as the object sees it; Ready
// once it exited.
type Execution struct {
	// Stdin, Stdout and Stderr are the object's ends of the process's
	// piped streams, nil for those not piped; the caller closes them.
	Stdin, Stdout, Stderr *os.File

	proc Process
	done chan struct{}
	code uint32
	err  error
}

// Ready reports whether the process has exited.
func (e *Execution) Ready() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Status is the process's exit code: AGAIN while it runs.
func (e *Execution) Status() (uint32, error) {
	if !e.Ready() {
		return 0, abi.StatusAgain
	}
	if e.err != nil {
		return 0, fmt.Errorf("%w: %w", abi.StatusIO, e.err)
	}
	return e.code, nil
}

// Kill sends signal sig to the process.
func (e *Execution) Kill(ctx context.Context, sig uint32) error {
	if err := CheckSignal(sig); err != nil {
		return err
	}
	if e.Ready() {
		return fmt.Errorf("%w: %s", abi.StatusNotFound, abi.ProcessExited)
	}
	if err := e.proc.Kill(ctx, syscall.Signal(sig)); err != nil {
		return fmt.Errorf("%w: %w", abi.StatusIO, err)
	}
	return nil
}

// Release kills the process if it still runs, with what it started (a
// shell's children): nothing waits for it any more.
func (e *Execution) Release() {
	if !e.Ready() {
		e.proc.End()
	}
}

// Pid is the process's pid.
func (e *Execution) Pid() uint32 { return e.proc.Pid() }

// Exec starts a process in the container with the options of
// container_exec (raw): ctx bounds its start (the event's), base the
// process. exited is called once it exited.
func Exec(ctx, base context.Context, c Container, raw []byte, exited func()) (*Execution, error) {
	opts, err := abi.DecodeExecOptions(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	spec := ExecSpec{Args: opts.Args, Env: opts.Env, Cwd: opts.Cwd, User: opts.User}
	stdin, stdout, stderr := opts.Stdin, cmp.Or(opts.Stdout, "pipe"), cmp.Or(opts.Stderr, "pipe")
	switch {
	case len(spec.Args) == 0:
		return nil, fmt.Errorf("%w: exec needs a command", abi.StatusInvalid)
	case stdin != "" && stdin != "pipe":
		return nil, fmt.Errorf("%w: stdin must be \"pipe\" or absent, got %q", abi.StatusInvalid, abi.Excerpt(stdin))
	case stdout != "pipe" && stdout != "ignore":
		return nil, fmt.Errorf("%w: stdout must be \"pipe\" or \"ignore\", got %q", abi.StatusInvalid, abi.Excerpt(stdout))
	case stderr != "pipe" && stderr != "ignore" && stderr != "combined":
		return nil, fmt.Errorf("%w: stderr must be \"pipe\", \"ignore\" or \"combined\", got %q", abi.StatusInvalid, abi.Excerpt(stderr))
	case stderr == "combined" && stdout != "pipe":
		return nil, fmt.Errorf("%w: stderr \"combined\" needs stdout \"pipe\"", abi.StatusInvalid)
	}
	// The process writes into pipes whose other ends the object's streams
	// read; combined is one pipe for both, so their order is kept.
	var theirs []*os.File // closed once the process has exited
	e := &Execution{done: make(chan struct{})}
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = Pipe(); err == nil {
			theirs = append(theirs, w)
		}
		return r, w, err
	}
	closeAll := func(files ...*os.File) {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	var outW, errW, inR *os.File
	if stdout == "pipe" {
		if e.Stdout, outW, err = pipe(); err != nil {
			return nil, fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		spec.Stdout = outW
	}
	switch stderr {
	case "pipe":
		if e.Stderr, errW, err = pipe(); err != nil {
			closeAll(append(theirs, e.Stdout)...)
			return nil, fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		spec.Stderr = errW
	case "combined":
		spec.Stderr = outW
	}
	if stdin == "pipe" {
		if inR, e.Stdin, err = Pipe(); err != nil {
			closeAll(append(theirs, e.Stdout, e.Stderr)...)
			return nil, fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		theirs = append(theirs, inR) // later writes to stdin fail instead of piling up
		spec.Stdin = inR
	}
	// An agent that does not answer (stopped, say) must not hold the
	// caller past the event or ExecStartTimeout.
	start, cancel := context.WithTimeout(ctx, ExecStartTimeout)
	e.proc, err = c.Exec(start, spec)
	cancel()
	if err != nil {
		closeAll(append(theirs, e.Stdout, e.Stderr, e.Stdin)...)
		switch {
		case badExec(err):
			return nil, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
		case errors.Is(err, ErrExitedMeanwhile):
			return nil, errNotRunning
		}
		return nil, startFailed(err)
	}
	go func() {
		e.code, e.err = e.proc.Wait(base)
		closeAll(theirs...)
		close(e.done)
		exited()
	}()
	return e, nil
}

// ExecStartTimeout bounds the start of an exec: milliseconds through the
// agent, tens of them through runc.
const ExecStartTimeout = 10 * time.Second

// CheckPort refuses a port number out of range (INVALID).
func CheckPort(port uint32) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%w: port must be from 1 to 65535, got %d", abi.StatusInvalid, port)
	}
	return nil
}

// Address is the address of the container's port.
func Address(c Container, port uint32) string {
	return net.JoinHostPort(c.Info().Address.String(), strconv.Itoa(int(port)))
}

// ConnectTimeout bounds a dial to a container port.
const ConnectTimeout = 5 * time.Second

// Dial connects to the container's port (REFUSED if nobody listens).
func Dial(ctx context.Context, c Container, port uint32) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", Address(c, port))
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: nothing listens on port %d of the container", abi.StatusRefused, port)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to port %d: %w", abi.StatusIO, port, err)
	}
	return conn.(*net.TCPConn), nil
}

// PortClosed is the error of a request to port of the container whose
// server closed the connection without answering (Go's http.Client says
// only EOF, or that the peer reset it if the request was left unread), or
// nil if err, the client's, is another.
func PortClosed(port uint32, err error) error {
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return fmt.Errorf("%w: port %d of the container closed the connection without answering", abi.StatusIO, port)
}

// ExecExitCode is the exit code a shell gives a command that failed to
// start with err, an error of Container.Exec: 127 for a program that does
// not exist (fs.ErrNotExist), 126 for one that may not be run
// (fs.ErrPermission, also for one of no format the kernel runs); 0 if err
// is not the program's (the container is not running, say).
func ExecExitCode(err error) int {
	switch {
	case errors.Is(err, ErrExitedMeanwhile), badExec(err):
		return 0
	case errors.Is(err, fs.ErrNotExist):
		return 127
	case errors.Is(err, fs.ErrPermission):
		return 126
	}
	return 0
}

// startFailed is the error of an exec or a background process the runtime
// could not start (sdk.ErrExecFailed in the guest).
func startFailed(err error) error {
	return fmt.Errorf("%w: the process could not be started: %w", abi.StatusIO, err)
}
