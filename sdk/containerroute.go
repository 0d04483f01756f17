package sdk

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// RetryOptions tune how a container stub retries.
type RetryOptions struct {
	// Attempts is the number of tries in all (default 3; 1 sends once).
	Attempts int
	// Backoff is the first wait, doubled after each try (default 500 ms
	// for a cold start, 100 ms in a pool), capped at 30 s.
	Backoff time.Duration
	// RetryOn decides which responses a Pool retries on another instance
	// (default: any 5xx). A request whose method is not idempotent (POST,
	// PATCH) is retried only when it never reached the application (a
	// provisioning failure).
	RetryOn func(*http.Response) bool
}

func (o RetryOptions) withDefaults(backoff time.Duration) RetryOptions {
	o.Attempts = cmp.Or(o.Attempts, 3)
	o.Backoff = cmp.Or(o.Backoff, backoff)
	if o.RetryOn == nil {
		o.RetryOn = func(r *http.Response) bool { return r.StatusCode >= 500 }
	}
	return o
}

func (o RetryOptions) wait(attempt int) {
	time.Sleep(min(o.Backoff<<attempt, 30*time.Second))
}

// idempotent reports whether a request with method may be sent twice.
func idempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	return false
}

// replayable reports whether req can be sent again: no body, or one
// GetBody can make anew.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (*http.Request, error) {
	if req.GetBody == nil {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = body
	return r, nil
}

// ContainerStub reaches one object of a ContainerClass: Fetch proxies to
// its container; Start, Stop, Destroy and State manage it.
type ContainerStub struct {
	*Stub
	retry RetryOptions
}

// GetContainer is the stub of the object named name in the binding ns
// (one container per name). Its Fetch retries the same instance on a
// cold-start failure (a ContainerClass answer marked ProvisioningHeader,
// or an error reaching the object), never on an application's own 5xx.
func GetContainer(ns *Namespace, name string, opts ...RetryOptions) (*ContainerStub, error) {
	stub, err := ns.GetByName(name)
	if err != nil {
		return nil, err
	}
	var o RetryOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	return &ContainerStub{Stub: stub, retry: o.withDefaults(500 * time.Millisecond)}, nil
}

// GetRandom is the stub of one of n interchangeable instances ("0" to
// "n-1"), picked at random.
func GetRandom(ns *Namespace, n int, opts ...RetryOptions) (*ContainerStub, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: GetRandom needs n > 0, got %d", ErrInvalidArgument, n)
	}
	return GetContainer(ns, fmt.Sprint(rand.IntN(n)), opts...)
}

// Fetch sends req to the container, retrying provisioning failures on the
// same instance when req can be replayed.
func (s *ContainerStub) Fetch(req *http.Request) (*http.Response, error) {
	return s.retry.do(req, func() (*Stub, error) { return s.Stub, nil },
		func(r *http.Response) bool { return r.Header.Get(ProvisioningHeader) != "" })
}

// do sends req to the stub pick gives, again (after a backoff) while the
// send fails or retryable says so, for as many attempts as req allows.
func (o RetryOptions) do(req *http.Request, pick func() (*Stub, error), retryable func(*http.Response) bool) (*http.Response, error) {
	attempts := o.Attempts
	if !replayable(req) {
		attempts = 1
	}
	var resp *http.Response
	var err error
	for i := range attempts {
		if i > 0 {
			o.wait(i - 1)
			if req, err = rewind(req); err != nil {
				return nil, err
			}
		}
		var stub *Stub
		if stub, err = pick(); err != nil {
			return nil, err
		}
		resp, err = stub.Fetch(req)
		if err == nil && !retryable(resp) {
			return resp, nil
		}
		if !idempotent(req.Method) && (err != nil || resp.Header.Get(ProvisioningHeader) == "") {
			return resp, err // it may have reached the application: never sent twice
		}
		if i < attempts-1 && resp != nil {
			resp.Body.Close()
		}
	}
	return resp, err
}

// Start starts the container and waits until it is healthy.
func (s *ContainerStub) Start() error { return s.Call("Start", nil, nil) }

// Stop sends SIGTERM to the container.
func (s *ContainerStub) Stop() error { return s.Call("Stop", SIGTERM, nil) }

// Destroy removes the container.
func (s *ContainerStub) Destroy() error { return s.Call("Destroy", nil, nil) }

// State returns the container's state.
func (s *ContainerStub) State() (ContainerStatus, error) {
	var st ContainerStatus
	err := s.Call("State", nil, &st)
	return st, err
}

// Pool spreads requests over n interchangeable instances and retries a
// failed request (an error, or a response RetryOn accepts) on another
// randomly picked one.
type Pool struct {
	ns    *Namespace
	n     int
	retry RetryOptions
}

// NewPool makes a pool of n instances ("0" to "n-1") of the binding ns.
func NewPool(ns *Namespace, n int, opts RetryOptions) (*Pool, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: a pool needs n > 0, got %d", ErrInvalidArgument, n)
	}
	return &Pool{ns: ns, n: n, retry: opts.withDefaults(100 * time.Millisecond)}, nil
}

// Fetch sends req to a random instance, retrying elsewhere as configured.
func (p *Pool) Fetch(req *http.Request) (*http.Response, error) {
	return p.retry.do(req, func() (*Stub, error) { return p.ns.GetByName(fmt.Sprint(rand.IntN(p.n))) }, p.retry.RetryOn)
}
