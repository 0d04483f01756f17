package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wharfhq/wharf/abi"
)

// Background processes outlive the event that started them: the
// container's agent (wharf-init; classes with init = false have none)
// keeps each one with an id, and the last OutputBuffer bytes of its
// stdout and stderr together, in the order it wrote them, until it is
// replaced or the container stops. Any later event of the object, also
// after the object was evicted and activated again, finds it by id.

// Limits of background processes.
const (
	// MaxProcesses is how many background processes a container keeps:
	// starting one more forgets the oldest that has exited (and so have
	// the processes it left behind holding its output), or, if none has,
	// fails with ErrTooLarge.
	MaxProcesses = abi.MaxBackgroundProcesses
	// OutputBuffer is how many bytes of a background process's output
	// are kept; older bytes are overwritten (see ProcessLogs.Dropped).
	OutputBuffer = abi.BackgroundOutputBuffer
)

// ProcessOptions are the options of StartProcess.
type ProcessOptions struct {
	// ProcessID is the id the process gets: 1 to 64 letters, digits, '.',
	// '_' or '-' (not first). An exited process of that id is replaced; a
	// running one, or one whose output a process it left behind still
	// holds, is ErrInvalidArgument. Empty: a new id ("proc-" and 8 hex
	// digits).
	ProcessID string
	// Env is added to the container's environment.
	Env map[string]string
	// Cwd is the working directory (default: the image's).
	Cwd string
	// User is a name from the image's /etc/passwd or a uid (default: the
	// image's user).
	User string
}

// ProcessStatus is where a background process is in its life.
type ProcessStatus string

// Statuses of a background process.
const (
	ProcessRunning   ProcessStatus = "running"
	ProcessPaused    ProcessStatus = "paused"    // running, but stopped: its container paused (SIGSTOP), or it was stopped itself
	ProcessCompleted ProcessStatus = "completed" // exited with code 0
	ProcessFailed    ProcessStatus = "failed"    // exited with another code
	ProcessKilled    ProcessStatus = "killed"    // ended after KillProcess
)

// BackgroundProcess describes a background process when it was asked
// about; GetProcess asks again.
type BackgroundProcess struct {
	ID string `json:"id"`
	// Pid is its pid in the container.
	Pid     int           `json:"pid"`
	Command []string      `json:"command"`
	Status  ProcessStatus `json:"status"`
	// ExitCode is nil while it runs; then its exit code, 128+n for a
	// process ended by signal n.
	ExitCode *int `json:"exit_code,omitempty"`
	// StartTime and ExitTime are Unix milliseconds (ExitTime 0 while it
	// runs).
	StartTime int64 `json:"started"`
	ExitTime  int64 `json:"exited,omitempty"`
}

// backgroundError adds the matching sentinel to a host error.
func backgroundError(err error) error {
	switch {
	case err == nil:
		return nil
	case notRunning(err):
		return withSentinel(ErrNotRunning, err)
	case signalOutOfRange(err):
		return withSentinel(ErrSignalRange, err)
	}
	return err
}

// notRunning reports whether err is the host's "the container is not
// running": that NOTFOUND, not one whose message names a file or process
// that only contains those words.
func notRunning(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == abi.StatusNotFound && abi.IsContainerNotRunning(e.Message)
}

// signalOutOfRange reports whether err is the host's INVAL for a signal
// outside 1 to 64, not another INVAL that quotes those words.
func signalOutOfRange(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == abi.StatusInvalid && strings.HasPrefix(e.Message, abi.SignalOutOfRange)
}

func (c *Container) backgroundOp(o abi.BackgroundOptions, into any) error {
	ev, err := c.obj.current()
	if err != nil {
		return err
	}
	out, err := ev.BackgroundOp(o.Encode(nil))
	if err != nil {
		if o.Op == "start" && errors.Is(err, abi.StatusIO) {
			return withSentinel(ErrExecFailed, err)
		}
		return backgroundError(err)
	}
	if into == nil {
		return nil
	}
	return json.Unmarshal(out, into)
}

// StartProcess starts cmd in the running container as a background
// process and returns at once. Its stdin is empty; its output is kept
// (StreamProcessLogs). ErrBusy: a process of that id runs, or has exited
// while processes it left behind still hold its output (kill it first).
func (c *Container) StartProcess(cmd []string, opts ProcessOptions) (*BackgroundProcess, error) {
	if len(cmd) == 0 {
		return nil, fmt.Errorf("%w: exec needs a command", ErrInvalidArgument)
	}
	env, err := envPairs(opts.Env)
	if err != nil {
		return nil, err
	}
	var p BackgroundProcess
	err = c.backgroundOp(abi.BackgroundOptions{Op: "start", ID: opts.ProcessID, Args: cmd, Env: env, Cwd: opts.Cwd, User: opts.User}, &p)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// ListProcesses describes the container's background processes, running
// or exited, in the order they started (an empty list, not nil, if none).
func (c *Container) ListProcesses() ([]BackgroundProcess, error) {
	var list []BackgroundProcess
	if err := c.backgroundOp(abi.BackgroundOptions{Op: "list"}, &list); err != nil {
		return nil, err
	}
	if list == nil {
		list = []BackgroundProcess{}
	}
	return list, nil
}

// GetProcess describes background process id; ErrNotFound if the
// container keeps none of that id.
func (c *Container) GetProcess(id string) (*BackgroundProcess, error) {
	var p BackgroundProcess
	if err := c.backgroundOp(abi.BackgroundOptions{Op: "get", ID: id}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// KillProcess sends sig (0: SIGTERM) to background process id and to the
// processes it started (its process group), also after it exited while
// processes it left behind still hold its output (`server &` in a shell).
// ErrNotFound once all of them have exited. SIGTERM is followed by
// SIGCONT, so it ends a process of a paused container (SIGSTOP) too.
func (c *Container) KillProcess(id string, sig Signal) error {
	if sig != 0 {
		if err := checkSignal("background_op", sig); err != nil {
			return backgroundError(err)
		}
	}
	return c.backgroundOp(abi.BackgroundOptions{Op: "kill", ID: id, Signal: uint32(sig)}, nil)
}

// WaitProcess waits until background process id has exited and returns
// its final description (an exit code that is not 0 is not an error).
// Only the calling goroutine waits; the wait ends with the event.
func (c *Container) WaitProcess(id string) (*BackgroundProcess, error) {
	ev, err := c.obj.current()
	if err != nil {
		return nil, err
	}
	h, err := ev.BackgroundWait(abi.BackgroundOptions{ID: id}.Encode(nil))
	if err != nil {
		return nil, backgroundError(err)
	}
	if _, err := ev.Wait([]uint32{h}, -1); err != nil {
		ev.Close(h)
		return nil, err
	}
	out, err := ev.CallResult(h)
	if err != nil {
		return nil, backgroundError(err)
	}
	var p BackgroundProcess
	return &p, json.Unmarshal(out, &p)
}

// LogsFrom is where StreamProcessLogs begins.
type LogsFrom string

// Where a log stream begins: the oldest byte kept, or the next byte the
// process writes.
const (
	FromStart LogsFrom = "start"
	FromNow   LogsFrom = "now"
)

// ProcessLogs is a stream of a background process's output (stdout and
// stderr in the order written). It ends once the process, and every
// child it left holding its output, has exited; Close it to stop
// following earlier. It belongs to the event that opened it.
type ProcessLogs struct {
	*Stream
	// Dropped is, for a stream FromStart, how many bytes the process had
	// written that were overwritten in its buffer before the stream
	// began. A reader more than OutputBuffer behind the process also
	// skips what was overwritten.
	Dropped int64
}

// StreamProcessLogs streams the output of background process id from
// the start of what is kept (FromStart, also for "") or from now on.
func (c *Container) StreamProcessLogs(id string, from LogsFrom) (*ProcessLogs, error) {
	ev, err := c.obj.current()
	if err != nil {
		return nil, err
	}
	h, dropped, err := ev.BackgroundLogs(abi.BackgroundOptions{ID: id, From: string(from)}.Encode(nil))
	if err != nil {
		return nil, backgroundError(err)
	}
	return &ProcessLogs{Stream: &Stream{ev: ev, handle: h}, Dropped: int64(dropped)}, nil
}
