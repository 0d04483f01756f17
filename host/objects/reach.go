package objects

import (
	"context"
	"fmt"
	"net/http"

	"github.com/wharfhq/wharf/host/guestio"
)

// Reaching objects from the host side: a test harness or an operator tool
// sends an event to an object named like a Worker would name it, through
// the same queue (one event at a time, replies after the commit).

// Call runs method on the object that name maps to in binding's namespace
// with JSON args and returns its JSON result. An error the method returns
// matches the abi.Status it was answered with (the Go SDK's: that of the
// host error or SDK sentinel it wraps, else abi.StatusIO) and carries its
// codes (ErrorCodes).
func (o *Objects) Call(ctx context.Context, binding, name, method string, args []byte) ([]byte, error) {
	ns, err := o.Namespace(binding)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := NewCall(method, args, guestio.NewPending(func() {}, cancel))
	o.SendCall(ctx, ns, ns.IDFromName(name), c, nil)
	v, err := c.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %s: %w", binding, name, method, err)
	}
	return v, nil
}

// Fetch sends req to the object that name maps to in binding's namespace
// and returns its response; the body streams until the object ends it.
func (o *Objects) Fetch(binding, name string, req *http.Request) (*http.Response, error) {
	ns, err := o.Namespace(binding)
	if err != nil {
		return nil, err
	}
	if req.RequestURI == "" {
		req.RequestURI = req.URL.RequestURI()
	}
	got := make(chan struct{})
	var resp *http.Response
	out := NewResponse(func(r *http.Response, e error) {
		resp, err = r, e
		close(got)
	})
	o.SendFetch(ns, ns.IDFromName(name), req, out)
	<-got
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", binding, name, err)
	}
	return resp, nil
}
