package objects

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// TestCallAnsweredBeforeItsCallerWaitsIsNotCanceled: resolving a call
// releases its context right after answering it, so a caller that reaches
// its wait only then finds both ended; it gets the answer, never "context
// canceled" (the harness's Call failed so once in CI).
func TestCallAnsweredBeforeItsCallerWaitsIsNotCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := NewCall("Get", nil, guestio.NewPending(func() {}, cancel))
	require.NoError(t, c.Return(abi.StatusOK, []byte("7"), nil))
	c.resolve(nil)
	require.Error(t, ctx.Err(), "resolve released the call's context")
	for range 64 { // a select between two ready cases picks either
		v, err := c.wait(ctx)
		require.NoError(t, err)
		assert.Equal(t, "7", string(v))
	}
}

// TestCallWaitEndsWithItsContext: a call not answered when its caller's
// context ends gives the context's cause.
func TestCallWaitEndsWithItsContext(t *testing.T) {
	cause := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	c := NewCall("Get", nil, guestio.NewPending(func() {}, func() {}))
	cancel(cause)
	_, err := c.wait(ctx)
	assert.ErrorIs(t, err, cause)
}
