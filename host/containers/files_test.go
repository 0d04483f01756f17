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
		{errors.New("read unix @->/.wharf/agent.sock: EOF"), abi.StatusIO},
	} {
		err := fileStatus(c.err)
		assert.ErrorIs(t, err, c.want, "%v", c.err)
		assert.ErrorIs(t, err, c.err)
	}
}
