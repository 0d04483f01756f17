package objects

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// TestCalledEventOutOfTimeIsATimeout: a call whose object's event ran out
// of time reaches the caller as TIMEOUT (sdk.ErrTimeout), any other failure
// of that event as IO.
func TestCalledEventOutOfTimeIsATimeout(t *testing.T) {
	for cause, want := range map[error]abi.Status{plugins.ErrDeadline: abi.StatusTimeout, errors.New("trapped"): abi.StatusIO} {
		c := NewCall("M", nil, guestio.NewPending(func() {}, nil))
		c.resolve(&guestio.Failure{What: guestio.FailedObjectEvent, ID: "Store#1-1", Err: cause})
		_, err := c.pending.Result()
		assert.Equal(t, want, guestio.StatusOf(err), "%v", cause)
		assert.Contains(t, err.Error(), "the object's event")
	}
}
