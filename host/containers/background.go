package containers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"

	"github.com/wharfhq/wharf/abi"
)

// backgroundStatus maps an error of a background operation on a process
// that exists (or should) to its status.
func backgroundStatus(err error) error {
	switch {
	case errors.Is(err, ErrExitedMeanwhile):
		return errNotRunning
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", abi.StatusNotFound, err)
	case errors.Is(err, fs.ErrExist): // the id's process runs, or holds its output still
		return fmt.Errorf("%w: %w", abi.StatusBusy, err)
	case errors.Is(err, ErrNoAgentBackground), errors.Is(err, fs.ErrInvalid), badExec(err):
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	case errors.Is(err, ErrLimit):
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	}
	return fmt.Errorf("%w: %w", abi.StatusIO, err)
}

// startStatus maps an error of a start: a process that could not be
// started (no such program, a working directory it cannot use) is IO, as
// for container_exec.
func startStatus(err error) error {
	status := backgroundStatus(err)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(status, abi.StatusIO) {
		return startFailed(err)
	}
	return status
}

// ParseBackground decodes the options of a background import; every
// operation but list and start names a process.
func ParseBackground(raw []byte) (abi.BackgroundOptions, error) {
	o, err := abi.DecodeBackgroundOptions(raw)
	if err != nil {
		return o, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	if o.ID == "" && o.Op != "start" && o.Op != "list" {
		return o, fmt.Errorf("%w: a background process operation needs an id", abi.StatusInvalid)
	}
	return o, nil
}

// BackgroundOp runs the operation background_op asks: start (answers the
// new process's JSON description), list (a JSON array of them), get (one)
// or kill (nothing).
func BackgroundOp(ctx context.Context, c Container, o abi.BackgroundOptions) ([]byte, error) {
	var result any
	switch o.Op {
	case "start":
		if len(o.Args) == 0 {
			return nil, fmt.Errorf("%w: exec needs a command", abi.StatusInvalid)
		}
		info, err := c.StartBackground(ctx, ExecSpec{Args: o.Args, Env: o.Env, Cwd: o.Cwd, User: o.User}, o.ID)
		if err != nil {
			return nil, startStatus(err)
		}
		result = info
	case "list":
		list, err := c.Backgrounds(ctx)
		if err != nil {
			return nil, backgroundStatus(err)
		}
		result = list
	case "get":
		info, err := c.Background(ctx, o.ID)
		if err != nil {
			return nil, backgroundStatus(err)
		}
		result = info
	case "kill":
		sig := cmp.Or(o.Signal, uint32(syscall.SIGTERM))
		if err := CheckSignal(sig); err != nil {
			return nil, err
		}
		if err := c.KillBackground(ctx, o.ID, int(sig)); err != nil {
			return nil, backgroundStatus(err)
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: op must be start, list, get or kill, got %q", abi.StatusInvalid, abi.Excerpt(o.Op))
	}
	return json.Marshal(result)
}

// BackgroundLogs streams a background process's output as background_logs
// asks, and says how many bytes from its start were dropped.
func BackgroundLogs(ctx context.Context, c Container, o abi.BackgroundOptions) (io.ReadCloser, int64, error) {
	if o.From != "" && o.From != "start" && o.From != "now" {
		return nil, 0, fmt.Errorf("%w: from must be \"start\" or \"now\", got %q", abi.StatusInvalid, abi.Excerpt(o.From))
	}
	r, n, err := c.BackgroundLogs(ctx, o.ID, o.From != "now")
	if err != nil {
		return nil, 0, backgroundStatus(err)
	}
	return r, n, nil
}

// WaitBackground waits until background process id has exited and
// answers its JSON description.
func WaitBackground(ctx context.Context, c Container, id string) ([]byte, error) {
	info, err := c.WaitBackground(ctx, id)
	if err != nil {
		return nil, backgroundStatus(err)
	}
	out, _ := json.Marshal(info)
	return out, nil
}
