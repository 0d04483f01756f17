package host

import (
	"errors"
	"net/http"

	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// toldAs is how a failure of event g reads outside the guest (to the reader
// of a stream it aborts): what failed and the request id, no details.
func (g *guest) toldAs(failure error) error {
	if failure == nil {
		return nil
	}
	what := guestio.FailedWorker
	if g.object != nil {
		what = guestio.FailedObjectEvent
	}
	return &guestio.Failure{What: what, ID: g.id.String(), Err: failure}
}

// failureStatus is the HTTP status of a failed event.
func failureStatus(err error) int {
	if errors.Is(err, plugins.ErrDeadline) {
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
