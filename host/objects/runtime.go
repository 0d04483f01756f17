package objects

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
)

// Runtime is what the objects need of the plugin's long-running guest
// instances; package host implements it. An object is placed on an
// instance, its events are delivered there and awaited, and the instance
// calls Object.Chain as the guest ends an event that may chain the next,
// and Object.Lost as it ends and fails the object's events itself.
type Runtime interface {
	// EventContext bounds an event, however often it is delivered, by the
	// plugin's time limit.
	EventContext(ctx context.Context) (context.Context, context.CancelFunc)
	// Place puts obj on the least loaded instance of the code being
	// served, counted there until the placement's Drop, waiting while no
	// instance is up until ctx ends.
	Place(ctx context.Context, obj *Object) (Placement, error)
	// Request is what the guest reads for a fetch: req, answered through
	// resp (through guest I/O); streamed runs before a streamed response's
	// head is released.
	Request(resp *Response, req *http.Request, streamed func() error) Request
}

// Placement is an object's value on one instance.
type Placement interface {
	// Alive reports whether the instance still runs and takes work: the
	// object stays on it. An object on a draining instance moves at its
	// next event.
	Alive() bool
	// NewEvent makes the scope of one of the object's events there, its
	// imports bounded by ctx; chains says whether the event's end may
	// deliver the object's next event (Object.Chain).
	NewEvent(ctx context.Context, id guestio.EventID, chains bool) Event
	// Deliver posts the event ev of kind, with its argument, and waits for
	// it (see Event.Await). An instance that ended before the guest read
	// it fails it with guestio.ErrNotStarted.
	Deliver(ctx context.Context, ev Event, kind abi.EventKind, arg any) error
	// Drop counts the object off the instance and has the guest drop its
	// value.
	Drop()
	// DrainingLocked reports whether the instance drains, and PostLocked
	// posts ev for the guest to read next; both run under the instance's
	// lock, in Object.Chain.
	DrainingLocked() bool
	PostLocked(ev Event, kind abi.EventKind, arg any)
}

// Caller is the instance an object call is made from, under its lock.
type Caller interface {
	// LockFor takes the lock of p's instance without waiting, unless the
	// caller holds it already, for PostLocked; false if it cannot, or the
	// instance does not take work. unlock releases it and wakes the guest.
	LockFor(p Placement) (unlock func(), ok bool)
}

// Event is the scope of one of an object's events on its instance.
type Event interface {
	// Placement is the object's value the event runs on.
	Placement() Placement
	// Await waits until the guest ends the event, the instance ends or ctx
	// (see Runtime.EventContext) ends; then the event is abandoned. It
	// returns the event's outcome.
	Await(ctx context.Context) error
	// Log is the event's logger, tagged with its id.
	Log() *slog.Logger
	// EndStorage records that Object.Chain ended the event's storage
	// event as the event ended; StorageEnded reports it.
	EndStorage()
	StorageEnded() bool
}

// Request is a fetch's request as a guest serves it.
type Request interface {
	// Responded reports whether the guest sent the response's head.
	Responded() bool
	// Streams reports whether the response's body streams.
	Streams() bool
}
