package containerd

import (
	"context"
	"errors"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"

	"github.com/wharfhq/wharf/containerd/agent"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// ProcessInfo describes a background process of a container.
type ProcessInfo = wire.ProcessInfo

// Errors of background processes.
var (
	// ErrNoAgentBackground is a background process asked of a container
	// without wharf-init.
	ErrNoAgentBackground = hostcontainers.ErrNoAgentBackground
	// ErrBackgroundLimit is a start while MaxBackground processes run.
	ErrBackgroundLimit = agent.ErrLimit
)

// background runs one operation of the container's agent on its
// background processes. One that failed as the main process exited is
// hostcontainers.ErrExitedMeanwhile, whatever it met.
func (c *Container) background(ctx context.Context, b wire.Background) (wire.Reply, error) {
	if c.agent == nil {
		return wire.Reply{}, ErrNoAgentBackground
	}
	r, err := c.agent.Background(ctx, b)
	return r, c.exitedMeanwhile(err)
}

// StartBackground starts a process that the container's agent keeps until
// the container stops, whoever asked for it: id is the id it gets (empty:
// a new one). Its stdin is /dev/null; its stdout and stderr, in the order
// it wrote them, go to a buffer of abi.BackgroundOutputBuffer bytes (see Logs).
func (c *Container) StartBackground(ctx context.Context, spec ExecSpec, id string) (ProcessInfo, error) {
	if c.agent == nil {
		return ProcessInfo{}, ErrNoAgentBackground
	}
	if len(spec.Args) == 0 {
		return ProcessInfo{}, errors.New("exec needs a command")
	}
	pspec, user, err := c.execProcess(WithNamespace(ctx), spec)
	if err != nil {
		return ProcessInfo{}, c.exitedMeanwhile(err)
	}
	r, err := c.background(ctx, wire.Background{Op: wire.BackgroundStart, ID: id,
		Exec: &wire.Exec{Args: pspec.Args, Env: pspec.Env, Cwd: pspec.Cwd, User: user}})
	if err != nil {
		return ProcessInfo{}, err
	}
	return *r.Process, nil
}

// Backgrounds lists the container's background processes, running or
// exited, in the order they started.
func (c *Container) Backgrounds(ctx context.Context) ([]ProcessInfo, error) {
	r, err := c.background(ctx, wire.Background{Op: wire.BackgroundList})
	return r.Processes, err
}

// Background describes background process id.
func (c *Container) Background(ctx context.Context, id string) (ProcessInfo, error) {
	r, err := c.background(ctx, wire.Background{Op: wire.BackgroundGet, ID: id})
	if err != nil {
		return ProcessInfo{}, err
	}
	return *r.Process, nil
}

// KillBackground sends sig (1 to 64) to background process id and the
// processes it started (its process group), also after it exited while
// processes it left behind still hold its output.
func (c *Container) KillBackground(ctx context.Context, id string, sig int) error {
	_, err := c.background(ctx, wire.Background{Op: wire.BackgroundKill, ID: id, Signal: sig})
	return err
}

// BackgroundLogs streams the output of background process id: what its
// buffer keeps (fromStart), or only what it writes from now on. The
// stream ends once the process, and every child holding its output, has
// exited. dropped is how many bytes from the start were overwritten
// before the stream began. Closing the reader stops it.
func (c *Container) BackgroundLogs(ctx context.Context, id string, fromStart bool) (io.ReadCloser, int64, error) {
	if c.agent == nil {
		return nil, 0, ErrNoAgentBackground
	}
	r, dropped, err := c.agent.Logs(ctx, id, fromStart)
	return r, dropped, c.exitedMeanwhile(err)
}

// WaitBackground waits until background process id has exited and
// returns its description; canceling ctx stops waiting. A container that
// stops meanwhile ends the wait with hostcontainers.ErrExitedMeanwhile.
func (c *Container) WaitBackground(ctx context.Context, id string) (ProcessInfo, error) {
	if c.agent == nil {
		return ProcessInfo{}, ErrNoAgentBackground
	}
	info, err := c.agent.WaitBackground(ctx, id)
	if err != nil && !errors.Is(err, context.Canceled) {
		err = c.exitedMeanwhile(err)
		return info, fmt.Errorf("waiting for background process %q: %w", id, err)
	}
	return info, err
}
