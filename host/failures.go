package host

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/wharfhq/wharf/plugins"
)

// eventFailure is a failed event as told to whoever waits for it (an HTTP
// client, a calling guest): a short generic message and the request id under
// which the details, such as a trap's stack trace or a panic, were logged.
// The details stay reachable through errors.Is and errors.As, never through
// Error.
type eventFailure struct {
	what string // names what failed: failedWorker, failedObjectEvent, ...
	id   string
	err  error
}

// What failed, as an eventFailure names it.
const (
	failedWorker      = "worker"
	failedObjectEvent = "the object's event"
)

func (f *eventFailure) Error() string {
	return fmt.Sprintf("%s %s (request id %s)", f.what, outcome(f.err), f.id)
}

func (f *eventFailure) Unwrap() error { return f.err }

// toldAs is how a failure of event g reads outside the guest (to the reader
// of a stream it aborts): what failed and the request id, no details.
func (g *guest) toldAs(failure error) error {
	if failure == nil {
		return nil
	}
	what := failedWorker
	if g.object != nil {
		what = failedObjectEvent
	}
	return &eventFailure{what: what, id: g.id.String(), err: failure}
}

// outcome says in a few words how an event ended, without its details.
func outcome(err error) string {
	switch {
	case errors.Is(err, plugins.ErrDeadline):
		return "exceeded its time limit"
	case errors.Is(err, plugins.ErrCanceled):
		return "was canceled"
	}
	return "failed"
}

// failureStatus is the HTTP status of a failed event.
func failureStatus(err error) int {
	if errors.Is(err, plugins.ErrDeadline) {
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// constructorError is a Durable Object whose constructor failed.
type constructorError struct {
	class string
	err   error
}

func (e *constructorError) Error() string {
	return fmt.Sprintf("constructing %s: %v", e.class, e.err)
}

func (e *constructorError) Unwrap() error { return e.err }
