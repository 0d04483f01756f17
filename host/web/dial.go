package web

import (
	"context"
	"net"
	"net/http"
	"time"
)

// net/http dials on after the request that asked for a connection is
// canceled, so that a later request can use it. A guest's fetch must not
// outlive the event that made it, so wharf's transports bound each dial by
// the context of the request that started it: when the event ends and its
// pending fetches are canceled, their connection attempts stop too.

// dialBoundKey marks the context a request's dials are bound to.
type dialBoundKey struct{}

// WithDialBound returns ctx marked so that a dial made for a request with
// it stops when ctx is done.
func WithDialBound(ctx context.Context) context.Context {
	return context.WithValue(ctx, dialBoundKey{}, ctx)
}

// BoundDial dials with d, stopping when the requesting context that
// WithDialBound marked is done.
func BoundDial(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if bound, ok := ctx.Value(dialBoundKey{}).(context.Context); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(bound, cancel)()
		}
		return d.DialContext(ctx, network, addr)
	}
}

// NewFetchClient is the default client of guests' outbound fetches:
// net/http's defaults (proxy from the environment, HTTP/2, timeouts) with
// bounded dials.
func NewFetchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = BoundDial(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	return &http.Client{Transport: t}
}
