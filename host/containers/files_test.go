package containers

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/abi"
)

// TestFileStatus: a file operation's error reaches the guest with the
// status a user matches on (the SDK's sentinels follow from it), and its
// words.
func TestFileStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want abi.Status
	}{
		{fs.ErrNotExist, abi.StatusNotFound},
		{fs.ErrPermission, abi.StatusDenied},
		{ErrTooManyWatches, abi.StatusTooLarge},
		{fmt.Errorf("listing /big: it has more entries than one answer holds: %w", ErrLimit), abi.StatusTooLarge},
		{syscall.ENOTDIR, abi.StatusInvalid},
		{ErrUnknownUser, abi.StatusInvalid},
		{fmt.Errorf("%w: user \"a:b\": a user:group", ErrBadExec), abi.StatusInvalid},
		{errors.New("read unix @->/.wharf/agent.sock: EOF"), abi.StatusIO},
	} {
		err := fileStatus(c.err)
		assert.ErrorIs(t, err, c.want, "%v", c.err)
		assert.ErrorIs(t, err, c.err)
	}
}

// TestCallsThatMeetTheExitAreNotRunning: a file or background process
// call that failed as the container's main process exited is the
// NOTFOUND "the container is not running" the SDK makes ErrNotRunning
// (its words whole), not the agent's connection error as an I/O failure.
func TestCallsThatMeetTheExitAreNotRunning(t *testing.T) {
	exited := fmt.Errorf("%w: connecting to the agent: dial unix /proc/self/fd/11: %w", ErrExitedMeanwhile, syscall.ECONNREFUSED)
	for name, status := range map[string]func(error) error{"file": fileStatus, "background": backgroundStatus, "start": startStatus} {
		err := status(exited)
		assert.ErrorIs(t, err, abi.StatusNotFound, name)
		assert.EqualError(t, err, "NOTFOUND: "+abi.ContainerNotRunning, name)
	}
}
