package guestio

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/plugins"
)

// EventID names an event in logs: a per-host prefix and a counter.
type EventID struct {
	Prefix string
	N      uint64
}

// String is the id as logs and failures show it; empty for no id.
func (id EventID) String() string {
	if id.Prefix == "" {
		return ""
	}
	return id.Prefix + "-" + strconv.FormatUint(id.N, 10)
}

// MaxDeliveries bounds how often an event whose instance ended before it
// started is delivered again.
const MaxDeliveries = 3

// ErrNotStarted is an event whose instance ended before the guest read it:
// it can be delivered again elsewhere.
var ErrNotStarted = errors.New("the instance ended before the event started")

// Failure is a failed event as told to whoever waits for it (an HTTP
// client, a calling guest): a short generic message and the request id under
// which the details, such as a trap's stack trace or a panic, were logged.
// The details stay reachable through errors.Is and errors.As, never through
// Error.
type Failure struct {
	What string // names what failed: FailedWorker, FailedObjectEvent, ...
	ID   string
	Err  error
}

// What failed, as a Failure names it.
const (
	FailedWorker      = "worker"
	FailedObjectEvent = "the object's event"
)

// Error says what failed, how, and under which request id.
func (f *Failure) Error() string {
	return fmt.Sprintf("%s %s (request id %s)", f.What, outcome(f.Err), f.ID)
}

// Unwrap is the failure's details.
func (f *Failure) Unwrap() error { return f.Err }

// Outcome is an error that says in a few words, without its details, how
// an event it ended ended: what a Failure tells instead of "failed".
type Outcome interface {
	error
	Outcome() string
}

// outcome says in a few words how an event ended, without its details.
func outcome(err error) string {
	var o Outcome
	switch {
	case errors.As(err, &o):
		return o.Outcome()
	case errors.Is(err, plugins.ErrDeadline):
		return "exceeded its time limit"
	case errors.Is(err, plugins.ErrCanceled):
		return "was canceled"
	}
	return "failed"
}

// StatusOf finds the abi.Status an error wraps; TIMEOUT for an event
// (such as a called object's) that exceeded its time limit; IO if none.
func StatusOf(err error) abi.Status {
	var st abi.Status
	switch {
	case errors.As(err, &st):
	case errors.Is(err, plugins.ErrDeadline):
		st = abi.StatusTimeout
	default:
		st = abi.StatusIO
	}
	return st
}
