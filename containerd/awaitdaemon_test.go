package containerd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAwaitDaemon: the wait ends when the daemon answers, when it exits
// (its exit stays to be seen), at the timeout with the last refusal, or
// with the context.
func TestAwaitDaemon(t *testing.T) {
	ctx := context.Background()
	notYet := errors.New("connection refused")

	calls := 0
	err := AwaitDaemon(ctx, "d", make(chan error, 1), time.Minute, time.Millisecond, func() error {
		if calls++; calls < 3 {
			return notYet
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 3, calls, "asked until it answered")

	done := make(chan error, 1)
	done <- errors.New("exit status 1")
	err = AwaitDaemon(ctx, "d", done, time.Minute, time.Millisecond, func() error { return notYet })
	assert.EqualError(t, err, "d exited: exit status 1")
	assert.Len(t, done, 1, "the exit is put back for the daemon's other waiters")

	start := time.Now()
	err = AwaitDaemon(ctx, "d", make(chan error, 1), 30*time.Millisecond, time.Millisecond, func() error { return notYet })
	assert.ErrorIs(t, err, notYet, "the last refusal, at the timeout")
	assert.Less(t, time.Since(start), 5*time.Second)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	err = AwaitDaemon(canceled, "d", make(chan error, 1), time.Minute, time.Minute, func() error { return notYet })
	assert.ErrorIs(t, err, context.Canceled)
}
