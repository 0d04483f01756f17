package objects

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
)

// Call is one RPC call to an object: its request, and its result once
// answered.
type Call struct {
	method string
	args   []byte

	mu       sync.Mutex
	answered bool
	status   abi.Status
	result   []byte
	codes    []string // of an error answer (abi.CallError)
	pending  *guestio.Pending
}

// NewCall makes a call of method with JSON args; its answer resolves
// pending, and canceling pending releases the call's context.
func NewCall(method string, args []byte, pending *guestio.Pending) *Call {
	return &Call{method: method, args: args, pending: pending}
}

// Method is the called method's name.
func (c *Call) Method() string { return c.method }

// Args are the call's JSON arguments.
func (c *Call) Args() []byte { return c.args }

// Return records the object's answer: the result bytes for StatusOK, else
// an error message and the codes of its abi.CallError, which the caller
// gets (ErrorCodes). A call is answered once. AGAIN is returned as IO:
// call_result's AGAIN means the answer has not come yet.
func (c *Call) Return(status abi.Status, data []byte, codes []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answered {
		return fmt.Errorf("%w: call %q was already answered", abi.StatusBusy, abi.Excerpt(c.method))
	}
	if status == abi.StatusAgain {
		status = abi.StatusIO
	}
	c.answered, c.status, c.result, c.codes = true, status, append([]byte(nil), data...), codes
	return nil
}

// resolve hands the answer (or err) to the caller and releases the call's
// context.
func (c *Call) resolve(err error) {
	c.settle(err)
	c.over()
}

// settle hands the answer (or err) to the caller.
func (c *Call) settle(err error) {
	c.mu.Lock()
	answered, status, result, codes := c.answered, c.status, c.result, c.codes
	c.mu.Unlock()
	switch {
	case answered && status != abi.StatusOK: // the guest said why, whether its event failed or not
		c.pending.Resolve(nil, &statusError{status: status, msg: status.String() + ": " + string(result), codes: codes})
	case err != nil: // TIMEOUT when the called event ran out of time
		c.pending.Resolve(nil, fmt.Errorf("%w: %w", guestio.StatusOf(err), err))
	case !answered:
		c.pending.Resolve(nil, fmt.Errorf("%w: the object did not answer call %q", abi.StatusIO, abi.Excerpt(c.method)))
	default:
		c.pending.Resolve(result, nil)
	}
}

// wait returns the call's answer once it comes, or the cause of ctx's end
// if that comes first. An answer that came is returned even if ctx has
// ended since: resolve releases the call's context (ctx, when the caller
// made the pending with its cancel) right after answering.
func (c *Call) wait(ctx context.Context) ([]byte, error) {
	select {
	case <-c.pending.Done():
	case <-ctx.Done():
		if !c.pending.Ready() {
			return nil, context.Cause(ctx)
		}
	}
	v, err := c.pending.Result()
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// answer hands the caller the answer another host's object gave: the
// result, or the error's whole text and codes.
func (c *Call) answer(status abi.Status, result []byte, codes []string) {
	if status == abi.StatusOK {
		c.pending.Resolve(result, nil)
	} else {
		c.pending.Resolve(nil, &statusError{status: status, msg: string(result), codes: codes})
	}
	c.over()
}

// ErrorCodes are the codes of the abi.CallError an object answered a call
// with, which err (the call's failure) carries: on this host or another.
// Nil for any other error.
func ErrorCodes(err error) []string {
	if e, ok := errors.AsType[*statusError](err); ok {
		return e.codes
	}
	return nil
}

// over releases the call's context.
func (c *Call) over() {
	c.pending.Cancel(nil)
}
