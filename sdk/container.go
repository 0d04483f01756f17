package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Errors of ctx.container, as in the hosted system: match them with
// errors.Is. The host's message stays in the error text.
var (
	// ErrNotRunning: the call needs a running container.
	ErrNotRunning = errors.New("wharf: the container is not running")
	// ErrInvalidArgument: an empty command, an unknown option mode, or
	// stderr "combined" without stdout "pipe" (the hosted system's
	// TypeError).
	ErrInvalidArgument = errors.New("wharf: invalid argument")
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
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	case errors.Is(err, abi.StatusInvalid):
		return fmt.Errorf("%w: %w", invalid, err)
	}
	return err
}

// Container is ctx.container: the container of a Durable Object whose class
// has a [[containers]] entry in wharf.toml. Its calls act for the object's
// current event.
type Container struct{ obj *object }

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

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Start starts the container. It returns once the container runs, without
// waiting for anything inside it to be ready.
func (c *Container) Start(opts StartOptions) error {
	b := abi.NewFieldsBuilder(nil)
	for _, kv := range sortedPairs(opts.Env) {
		b.Add(abi.OptEnv, kv)
	}
	for _, a := range opts.Entrypoint {
		b.Add(abi.OptEntrypoint, a)
	}
	if opts.EnableInternet {
		b.Add(abi.OptEnableInternet, "1")
	}
	for _, name := range opts.Secrets {
		b.Add(abi.OptSecret, name)
	}
	for _, kv := range sortedPairs(opts.Labels) {
		b.Add(abi.OptLabel, kv)
	}
	return c.event().ContainerStart(b.Bytes())
}

// Running reports whether the container's main process runs.
func (c *Container) Running() bool {
	ok, _ := c.event().ContainerRunning()
	return ok
}

// Destroy stops and removes the container; Monitor returns reason as its
// error.
func (c *Container) Destroy(reason string) error { return c.event().ContainerDestroy(reason) }

// Signal sends signal n (1 to 64) to the container's main process.
func (c *Container) Signal(n int) error {
	return containerError(c.event().ContainerSignal(uint32(n)), ErrSignalRange)
}

// ExitError is Monitor's error for a container that exited with a non-zero
// code (Code) or was destroyed with a reason (Reason, Code -1).
type ExitError struct {
	Code   int
	Reason string
}

func (e *ExitError) Error() string {
	if e.Reason != "" {
		return e.Reason
	}
	return fmt.Sprintf("the container exited with code %d", e.Code)
}

// Monitor waits until the container exits: nil for exit code 0, otherwise
// an *ExitError with the exit code or the reason given to Destroy.
func (c *Container) Monitor() error {
	ev := c.event()
	h, err := ev.ContainerMonitor()
	if err != nil {
		return err
	}
	if _, err := Select(-1, &Pending{ev: ev, handle: h}); err != nil {
		return err
	}
	_, err = ev.CallResult(h)
	var we *wharf.Error
	if errors.As(err, &we) && we.Status == abi.StatusIO {
		// The exit code or the reason given to Destroy.
		msg := strings.TrimPrefix(we.Message, abi.StatusIO.String()+": ")
		var code int
		if _, err := fmt.Sscanf(msg, "the container exited with code %d", &code); err == nil {
			return &ExitError{Code: code}
		}
		return &ExitError{Code: -1, Reason: msg}
	}
	return err
}

// ExecOptions configure Exec.
type ExecOptions struct {
	// Stdin feeds the process: nil gives an immediate EOF; StdinPipe gives
	// a writable Process.Stdin instead.
	Stdin     io.Reader
	StdinPipe bool
	// Stdout is "pipe" (default) or "ignore"; Stderr is "pipe" (default),
	// "ignore" or "combined" (into Stdout).
	Stdout, Stderr string
	Cwd            string
	// Env is added to, and overrides, the container's environment.
	Env map[string]string
	// User is a name from the image's /etc/passwd or a numeric uid.
	User string
}

// Process is a command running in the container.
type Process struct {
	ev     wharf.Event
	handle uint32
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
	b := abi.NewFieldsBuilder(nil)
	for _, a := range cmd {
		b.Add(abi.OptArg, a)
	}
	for _, kv := range sortedPairs(opts.Env) {
		b.Add(abi.OptEnv, kv)
	}
	for name, v := range map[string]string{abi.OptCwd: opts.Cwd, abi.OptUser: opts.User, abi.OptStdout: opts.Stdout, abi.OptStderr: opts.Stderr} {
		if v != "" {
			b.Add(name, v)
		}
	}
	if opts.StdinPipe || opts.Stdin != nil {
		b.Add(abi.OptStdin, "pipe")
	}
	ev := c.event()
	in, out, errH, proc, err := ev.ContainerExec(b.Bytes())
	if errors.Is(err, abi.StatusIO) {
		return nil, fmt.Errorf("%w: %w", ErrExecFailed, err)
	}
	if err != nil {
		return nil, containerError(err, ErrInvalidArgument)
	}
	p := &Process{ev: ev, handle: proc}
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
			return p, fmt.Errorf("writing stdin: %w", err)
		}
	}
	return p, nil
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait() (int, error) {
	for {
		code, err := p.ev.ProcessStatus(p.handle)
		if errors.Is(err, abi.StatusAgain) {
			if _, err := Select(-1, p); err != nil {
				return 0, err
			}
			continue
		}
		return int(code), err
	}
}

// ErrOutputAfterRead is returned by Output once a stream has been read.
var ErrOutputAfterRead = errors.New("wharf: Output can be called once, and not after reading Stdout or Stderr")

// Output reads all of stdout and stderr, concurrently, and waits for the
// process. It can be called once, and not after a stream was read.
func (p *Process) Output() (stdout, stderr []byte, code int, err error) {
	if p.read || p.Stdout.wasRead() || p.Stderr.wasRead() {
		return nil, nil, 0, ErrOutputAfterRead
	}
	p.read = true
	var outBuf, errBuf bytes.Buffer
	streams := map[uint32]*bytes.Buffer{}
	var waiting []Pollable
	for s, buf := range map[*Stream]*bytes.Buffer{p.Stdout: &outBuf, p.Stderr: &errBuf} {
		if s != nil {
			streams[s.handle] = buf
			waiting = append(waiting, s)
		}
	}
	chunk := make([]byte, copyBufferSize)
	for len(waiting) > 0 {
		ready, err := Select(-1, waiting...)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, r := range ready {
			s := r.(*Stream)
			n, err := s.TryRead(chunk)
			streams[s.handle].Write(chunk[:n])
			if err == io.EOF {
				s.Close()
				waiting = removePollable(waiting, s)
			} else if err != nil && err != ErrWouldBlock {
				return nil, nil, 0, err
			}
		}
	}
	code, err = p.Wait()
	return outBuf.Bytes(), errBuf.Bytes(), code, err
}

func removePollable(ps []Pollable, x Pollable) []Pollable {
	out := ps[:0]
	for _, p := range ps {
		if p != x {
			out = append(out, p)
		}
	}
	return out
}

// Kill sends sig (15 if zero; 1 to 64) to the process.
func (p *Process) Kill(sig int) error {
	if sig == 0 {
		sig = 15
	}
	return containerError(p.ev.ProcessKill(p.handle, uint32(sig)), ErrSignalRange)
}
