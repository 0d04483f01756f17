package sdk

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
)

// rpcTarget has RPC methods of every accepted shape.
type rpcTarget struct{}

func (rpcTarget) Double(n int) (int, error) { return 2 * n, nil }

func (rpcTarget) Event(ctx context.Context) (uint32, error) { return EventHandle(ctx), nil }

func (rpcTarget) Add(ctx context.Context, xs []int) (int, error) {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return sum, nil
}

func (rpcTarget) Fail() error { return &Error{Op: "storage_put", Status: abi.StatusTooLarge} }

func (rpcTarget) TooMany(a, b int) error { return nil }

func TestInvokeShapes(t *testing.T) {
	ctx := withEvent(context.Background(), 42)
	for _, c := range []struct{ method, args, want string }{
		{"Double", "21", "42"},
		{"Event", "", "42"},
		{"Add", "[1,2,3]", "6"},
	} {
		out, st, err := invoke(ctx, rpcTarget{}, c.method, []byte(c.args))
		require.NoError(t, err, c.method)
		assert.Equal(t, abi.StatusOK, st)
		assert.Equal(t, c.want, string(out), c.method)
	}
	_, st, err := invoke(ctx, rpcTarget{}, "Fail", nil)
	assert.Equal(t, abi.StatusTooLarge, st, "a host error keeps its status for the caller")
	assert.ErrorIs(t, err, ErrTooLarge)
	_, st, err = invoke(ctx, rpcTarget{}, "TooMany", []byte("1"))
	assert.Equal(t, abi.StatusInvalid, st)
	assert.ErrorContains(t, err, "it must look like func([ctx context.Context,] [Args]) ([Result,] error)")
	_, st, err = invoke(ctx, rpcTarget{}, "Nope", nil)
	assert.Equal(t, abi.StatusNotFound, st)
	assert.ErrorContains(t, err, `has no method "Nope" that can be called (it has: Add, Double, Event, Fail, TooMany)`)
}
