package objects

import (
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
// an error message. A call is answered once. AGAIN is returned as IO:
// call_result's AGAIN means the answer has not come yet.
func (c *Call) Return(status abi.Status, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answered {
		return fmt.Errorf("%w: call %q was already answered", abi.StatusBusy, c.method)
	}
	if status == abi.StatusAgain {
		status = abi.StatusIO
	}
	c.answered, c.status, c.result = true, status, append([]byte(nil), data...)
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
	answered, status, result := c.answered, c.status, c.result
	c.mu.Unlock()
	switch {
	case err != nil && answered && status != abi.StatusOK: // the guest said why
		c.pending.Resolve(nil, fmt.Errorf("%w: %s", status, result))
	case err != nil: // TIMEOUT when the called event ran out of time
		c.pending.Resolve(nil, fmt.Errorf("%w: %w", guestio.StatusOf(err), err))
	case !answered:
		c.pending.Resolve(nil, fmt.Errorf("%w: the object did not answer call %q", abi.StatusIO, c.method))
	case status != abi.StatusOK:
		c.pending.Resolve(nil, fmt.Errorf("%w: %s", status, result))
	default:
		c.pending.Resolve(result, nil)
	}
}

// answer hands the caller the answer another host's object gave.
func (c *Call) answer(status abi.Status, result []byte) {
	if status == abi.StatusOK {
		c.pending.Resolve(result, nil)
	} else {
		c.pending.Resolve(nil, &peerError{status: status, msg: string(result)})
	}
	c.over()
}

// over releases the call's context.
func (c *Call) over() {
	c.pending.Cancel(nil)
}
