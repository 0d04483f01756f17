package sdk

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Errors of ctx.container, as in the hosted system: match them with
// errors.Is. The host's message stays in the error text.
var (
	// ErrNotRunning: the call needs a running container.
	ErrNotRunning = errors.New("wharf: the container is not running")
	// ErrSignalRange: a signal outside 1 to 64 (the hosted system's
	// RangeError).
	ErrSignalRange = errors.New("wharf: signal out of range")
	// ErrExecFailed: the runtime could not create or start the process.
	ErrExecFailed = errors.New("wharf: the process could not be started")
)

// containerError adds the matching sentinel to a host error.
func containerError(err error, invalid error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, abi.StatusNotFound):
		return withSentinel(ErrNotRunning, err)
	case errors.Is(err, abi.StatusInvalid):
		return withSentinel(invalid, err)
	}
	return err
}

// Container is ctx.container: the container of a Durable Object whose class
// has a [[containers]] entry in wharf.toml. Its calls act for the object's
// current event.
type Container struct {
	obj   *object
	mu    sync.Mutex
	watch *exitWatch // the exit Monitor calls outside events wait for
	// destroyed is the reason given to Destroy, for Monitor calls waiting
	// outside events: the destroyed container is gone when its exit is
	// reported.
	destroyed string
}

// event is the event the container's object serves now.
func (c *Container) event() wharf.Event { return c.obj.event() }

// StartOptions configure Start.
type StartOptions struct {
	// Env is added to the image's environment.
	Env map[string]string
	// Entrypoint replaces the image's entrypoint and command.
	Entrypoint []string
	// EnableInternet lets traffic no egress rule claims leave; without it
	// only what an interception or allowedHosts claims does.
	EnableInternet bool
	// Secrets name environment variables of wharf serve passed into the
	// container's environment (with wharf.toml's secrets); a missing one
	// fails the start.
	Secrets []string
	// Labels are put on the container (with wharf.toml's labels).
	Labels map[string]string
}

// envPairs returns m as sorted KEY=VALUE pairs; a name that is empty or
// holds '=' is ErrInvalidArgument.
func envPairs(m map[string]string) ([]string, error) {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if k == "" || strings.Contains(k, "=") {
			return nil, fmt.Errorf("%w: environment variable name %q (it must be non-empty, without '=')", ErrInvalidArgument, k)
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// labelPairs returns m as sorted KEY=VALUE pairs.
func labelPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Signal is a signal sent to a container's process, numbered as on Linux.
type Signal int

// Signals most often sent; any number from 1 to 64 is allowed.
const (
	SIGHUP  Signal = 1
	SIGINT  Signal = 2
	SIGQUIT Signal = 3
	SIGKILL Signal = 9
	SIGUSR1 Signal = 10
	SIGUSR2 Signal = 12
	SIGTERM Signal = 15
	// SIGCONT and SIGSTOP go to every process of the container (but
	// wharf's agent, which goes on serving execs): SIGSTOP pauses it,
	// SIGCONT lets it go on.
	SIGCONT Signal = 18
	SIGSTOP Signal = 19
)

// Start starts the container. It returns once the container runs, without
// waiting for anything inside it to be ready. It fails with ErrBusy if the
// container runs, or a Start of it is under way (see Running). A Start
// belongs to the event that calls it: if the event ends first (it returns
// while a goroutine's Start waits, fails, or its instance traps), the
// start is canceled and leaves nothing.
func (c *Container) Start(opts StartOptions) error {
	env, err := envPairs(opts.Env)
	if err != nil {
		return err
	}
	ev, err := c.obj.current()
	if err != nil {
		return err
	}
	return ev.ContainerStart(abi.StartOptions{Env: env, Entrypoint: opts.Entrypoint,
		EnableInternet: opts.EnableInternet, Secrets: opts.Secrets, Labels: labelPairs(opts.Labels)}.Encode(nil))
}

// Running reports whether the container's main process runs, or a Start
// of it is under way (from another goroutine; as the hosted system's
// running is true from start()'s call) and no Destroy was called since.
// Asked between the object's events, it cannot tell, and says false.
func (c *Container) Running() bool {
	ev, err := c.obj.current()
	if err != nil {
		return false
	}
	ok, _ := ev.ContainerRunning()
	return ok
}

// Destroy stops and removes the container; Monitor returns reason as its
// error. A Start under way (from another goroutine) is waited for, and
// the container it starts removed.
func (c *Container) Destroy(reason string) error {
	ev, err := c.obj.current()
	if err != nil {
		return err
	}
	if err := ev.ContainerDestroy(reason); err != nil {
		return err
	}
	c.mu.Lock()
	c.destroyed = reason
	c.mu.Unlock()
	return nil
}

// Signal sends sig (1 to 64) to the container's main process; SIGSTOP
// and SIGCONT go to each of its processes (the host's agent, its PID 1,
// keeps serving execs).
func (c *Container) Signal(sig Signal) error {
	if err := checkSignal("container_signal", sig); err != nil {
		return containerError(err, ErrSignalRange)
	}
	ev, err := c.obj.current()
	if err != nil {
		return err
	}
	return containerError(ev.ContainerSignal(uint32(sig)), ErrSignalRange)
}

// checkSignal refuses a signal outside 1 to 64 (see checkRange).
func checkSignal(op string, sig Signal) error { return checkRange(op, "signal", int(sig), 64) }

// checkRange refuses, with the host's error for import op, a value of what
// outside 1 to most before the ABI's 32 bits could cut it to a valid one
// (1<<32 + 9 to SIGKILL, 1<<32 + 8080 to port 8080).
func checkRange(op, what string, v, most int) error {
	if v < 1 || v > most {
		return wharf.NewError(op, abi.StatusInvalid, fmt.Sprintf("%s must be from 1 to %d, got %d", what, most, v))
	}
	return nil
}

// ExitError is the error of a process (Process.Wait) or a container
// (Container.Monitor) that exited with a non-zero code (with a Reason if
// the host knows one: "out of memory (…)"), or of a container destroyed
// with a reason (Reason, Code -1). Match it with errors.As.
type ExitError struct {
	Code   int
	Reason string
	what   string // "the process" or "the container"
}

func (e *ExitError) Error() string {
	exited := fmt.Sprintf("%s exited with code %d", cmp.Or(e.what, "the container"), e.Code)
	switch {
	case e.Reason == "":
		return exited
	case e.Code >= 0:
		return exited + ": " + e.Reason
	}
	return e.Reason
}

// ExitCode returns the exit code, -1 for a destroyed container.
func (e *ExitError) ExitCode() int { return e.Code }

// Monitor waits until the container exits: nil for exit code 0, otherwise
// an *ExitError with the exit code or the reason given to Destroy. Called
// in one of the object's events, it waits for the running container, or
// the one a Start under way (from another goroutine) starts, and returns
// at once with ErrNotRunning if none runs (or that start failed); while a
// Destroy is under way (from another goroutine), it returns the exit that
// destroy causes: the reason given to it, or the exit code (137) without
// one. Called from a goroutine outside the
// object's events (one started in the constructor, say), it waits for the
// next exit the host reports to the object, whoever caused it (Destroy,
// Signal, the process itself), and returns ErrEvicted if the object is
// evicted first:
//
//	go func() {
//		if err := st.Container.Monitor(); err != nil {
//			sdk.Logger.Warn("container ended", "err", err)
//		}
//	}()
func (c *Container) Monitor() error {
	if ev := c.event(); ev != 0 {
		err := c.monitorIn(ev)
		if c.event() == ev { // the event still runs: that is the answer
			return err
		}
		// The event ended while Monitor waited (a goroutine started in
		// the constructor ran before it returned): wait as outside events.
	}
	c.mu.Lock()
	if c.watch == nil {
		c.watch = &exitWatch{done: make(chan struct{})}
	}
	w := c.watch
	c.mu.Unlock()
	<-w.done
	return w.err
}

// exitWatch is one exit awaited by Monitor calls made outside events.
type exitWatch struct {
	done chan struct{}
	err  error // set before done is closed
}

// ErrEvicted is Monitor's error when the object was evicted while it
// waited outside the object's events.
var ErrEvicted = errors.New("wharf: the Durable Object was evicted")

// exited runs in the object's event that reports the container's exit:
// Monitor calls waiting outside events get the exit, or the reason given
// to Destroy.
func (c *Container) exited() {
	c.mu.Lock()
	reason := c.destroyed
	c.destroyed = ""
	c.mu.Unlock()
	c.endWatch(func() error {
		if reason != "" {
			return &ExitError{Code: -1, Reason: reason}
		}
		return c.monitorIn(c.event())
	})
}

// evicted ends the Monitor calls waiting outside events with ErrEvicted.
func (c *Container) evicted() { c.endWatch(func() error { return ErrEvicted }) }

func (c *Container) endWatch(result func() error) {
	c.mu.Lock()
	w := c.watch
	c.watch = nil
	c.mu.Unlock()
	if w != nil {
		w.err = result()
		close(w.done)
	}
}

// monitorIn waits for the container's exit on behalf of event ev.
func (c *Container) monitorIn(ev wharf.Event) error {
	h, err := ev.ContainerMonitor()
	if err != nil {
		return containerError(err, ErrInvalidArgument)
	}
	if _, err := Select(-1, &Pending{ev: ev, handle: h}); err != nil {
		return err
	}
	_, err = ev.CallResult(h)
	var we *wharf.Error
	if errors.As(err, &we) && we.Status == abi.StatusIO {
		// The exit code or the reason given to Destroy.
		if code, why, ok := abi.ParseContainerExit(we.Message); ok {
			return &ExitError{Code: code, Reason: why}
		}
		return &ExitError{Code: -1, Reason: we.Message}
	}
	return containerError(err, ErrInvalidArgument) // not running: none ran, or its start failed
}

// Stdio says what becomes of a process's stdout or stderr.
type Stdio string

// Stdio modes; the zero value is StdioPipe.
const (
	// StdioPipe makes the stream readable as Process.Stdout or Stderr.
	StdioPipe Stdio = "pipe"
	// StdioIgnore discards it.
	StdioIgnore Stdio = "ignore"
	// StdioCombined (stderr only) sends stderr into stdout's pipe.
	StdioCombined Stdio = "combined"
)

// ExecOptions configure Exec.
type ExecOptions struct {
	// Stdin feeds the process: nil gives an immediate EOF; StdinPipe gives
	// a writable Process.Stdin instead.
	Stdin     io.Reader
	StdinPipe bool
	// Stdout is StdioPipe (default) or StdioIgnore; Stderr is StdioPipe
	// (default), StdioIgnore or StdioCombined.
	Stdout, Stderr Stdio
	Cwd            string
	// Env is added to, and overrides, the container's environment.
	Env map[string]string
	// User is a name from the image's /etc/passwd or a numeric uid
	// (not uid:gid). A name, or a uid /etc/passwd lists, runs with the
	// primary group it has there and the groups /etc/group lists it in; a
	// uid it does not list runs with group 0 and no other, as docker run
	// --user UID. Default: the container's user (the image's).
	User string
}

// Process is a command running in the container.
type Process struct {
	ev     wharf.Event
	handle uint32
	code   int // -1 until Wait saw the exit
	// Pid is the process id as the host sees it.
	Pid int
	// Stdin is set with StdinPipe; close it to send EOF.
	Stdin *Stream
	// Stdout and Stderr are set unless ignored or combined.
	Stdout, Stderr *Stream
	read           bool
}

// Handle makes a Process usable with Select: ready when it has exited.
func (p *Process) Handle() uint32 { return p.handle }

func (p *Process) event() wharf.Event { return p.ev }

// Exec starts cmd in the running container.
func (c *Container) Exec(cmd []string, opts ExecOptions) (*Process, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("%w: exec needs a command", ErrInvalidArgument)
	}
	env, err := envPairs(opts.Env)
	if err != nil {
		return nil, err
	}
	eo := abi.ExecOptions{Args: cmd, Env: env, Cwd: opts.Cwd, User: opts.User,
		Stdout: string(opts.Stdout), Stderr: string(opts.Stderr)}
	if opts.StdinPipe || opts.Stdin != nil {
		eo.Stdin = "pipe"
	}
	ev, err := c.obj.current()
	if err != nil {
		return nil, err
	}
	in, out, errH, proc, err := ev.ContainerExec(eo.Encode(nil))
	if errors.Is(err, abi.StatusIO) {
		return nil, withSentinel(ErrExecFailed, err)
	}
	if err != nil {
		return nil, containerError(err, ErrInvalidArgument)
	}
	p := &Process{ev: ev, handle: proc, code: -1}
	pid, _ := ev.ProcessPid(proc)
	p.Pid = int(pid)
	if in != 0 {
		p.Stdin = &Stream{ev: ev, handle: in}
	}
	if out != 0 {
		p.Stdout = &Stream{ev: ev, handle: out}
	}
	if errH != 0 {
		p.Stderr = &Stream{ev: ev, handle: errH}
	}
	if opts.Stdin != nil && !opts.StdinPipe {
		if src, err := streamOf(opts.Stdin); err == nil {
			_, err = ForwardStream(src, p.Stdin) // host-side: e.g. a request body
			p.Stdin = nil
			return p, err
		}
		_, err := io.Copy(p.Stdin, opts.Stdin)
		p.Stdin.Close()
		p.Stdin = nil
		if err != nil {
			return p, fmt.Errorf("writing stdin: %w", wharf.Within(err))
		}
	}
	return p, nil
}

// Wait waits for the process to exit: nil for exit code 0, otherwise an
// *ExitError with the code, as os/exec does. Only the calling goroutine
// waits. It then releases the process's handle (an event may hold 64
// processes at once), so Handle is no longer of use; Wait may be called
// again.
func (p *Process) Wait() error {
	for p.code < 0 {
		code, err := p.ev.ProcessStatus(p.handle)
		if errors.Is(err, abi.StatusAgain) {
			if _, err := Select(-1, p); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		p.code = int(code)
		p.ev.Close(p.handle)
	}
	if p.code != 0 {
		return &ExitError{Code: p.code, what: "the process"}
	}
	return nil
}

// ExitCode returns the exit code once Wait has returned, -1 before.
func (p *Process) ExitCode() int { return p.code }

// ErrOutputAfterRead is returned by Output once a stream has been read.
var ErrOutputAfterRead = errors.New("wharf: Output can be called once, and not after reading Stdout or Stderr")

// Output reads all of stdout and stderr, each on a goroutine of its own,
// and waits for the process; the error is Wait's (an *ExitError for a
// non-zero exit code). It can be called once, and not after a stream was
// read.
func (p *Process) Output() (stdout, stderr []byte, err error) {
	if p.read || p.Stdout.wasRead() || p.Stderr.wasRead() {
		return nil, nil, ErrOutputAfterRead
	}
	p.read = true
	var outBuf, errBuf bytes.Buffer
	var outErr, errErr error
	var wg sync.WaitGroup
	drain := func(s *Stream, buf *bytes.Buffer, err *error) {
		if s != nil {
			wg.Go(func() {
				defer s.Close()
				_, *err = buf.ReadFrom(s)
			})
		}
	}
	drain(p.Stdout, &outBuf, &outErr)
	drain(p.Stderr, &errBuf, &errErr)
	wg.Wait()
	if err := errors.Join(outErr, errErr); err != nil {
		return nil, nil, err
	}
	return outBuf.Bytes(), errBuf.Bytes(), p.Wait()
}

// Kill sends sig (SIGTERM if zero; 1 to 64) to the process. Once it has
// exited, the error matches ErrNotFound (the container may still run).
func (p *Process) Kill(sig Signal) error {
	sig = cmp.Or(sig, SIGTERM)
	if err := checkSignal("process_kill", sig); err != nil {
		return containerError(err, ErrSignalRange)
	}
	if p.code >= 0 { // Wait released it
		return wharf.NewError("process_kill", abi.StatusNotFound, abi.ProcessExited)
	}
	err := p.ev.ProcessKill(p.handle, uint32(sig))
	if errors.Is(err, abi.StatusNotFound) {
		return err
	}
	return containerError(err, ErrSignalRange)
}
