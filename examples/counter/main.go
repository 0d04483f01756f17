// Command counter is a Worker in front of a Durable Object class: every
// name under /counter/ is its own Counter object, whose value survives
// restarts of the host.
//
//	GET  /counter/{name}        the current value (RPC: Get)
//	POST /counter/{name}        add one and return the new value (RPC: Increment)
//	GET  /counter/{name}/fetch  the object answers over HTTP itself
package main

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/wharfhq/wharf/sdk"
)

// Counter is a Durable Object holding one number, read from its storage
// by its first call.
type Counter struct {
	state  *sdk.ObjectState
	value  int64
	loaded bool
}

func newCounter(state *sdk.ObjectState) any { return &Counter{state: state} }

// load reads the stored value, once. A read that fails (the database
// cannot be opened just now, say) fails the call, and the next call reads
// again: a value taken for 0 would be written over by the next increment.
func (c *Counter) load() error {
	if c.loaded {
		return nil
	}
	v, ok, err := c.state.Storage.Get("value")
	if err != nil {
		return err
	}
	if ok {
		if c.value, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return fmt.Errorf("the stored value %q: %w", v, err)
		}
	}
	c.loaded = true
	return nil
}

// Increment adds by to the value and stores it; the caller's answer waits
// until the write is durable.
func (c *Counter) Increment(by int64) (int64, error) {
	if err := c.load(); err != nil {
		return 0, err
	}
	next := c.value + by
	if err := c.state.Storage.Put("value", []byte(strconv.FormatInt(next, 10))); err != nil {
		return c.value, err // a failed write leaves the value as stored
	}
	c.value = next
	return next, nil
}

// Get returns the value.
func (c *Counter) Get() (int64, error) {
	if err := c.load(); err != nil {
		return 0, err
	}
	return c.value, nil
}

// ServeHTTP answers fetches sent to the object itself.
func (c *Counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := c.load(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "counter %s… = %d\n", c.state.ID[:12], c.value)
}

func init() {
	sdk.RegisterClass("Counter", newCounter)
	counters := sdk.GetNamespace("COUNTER")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counter/{name}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, counters, "Get", nil)
	})
	mux.HandleFunc("POST /counter/{name}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, counters, "Increment", 1)
	})
	mux.HandleFunc("GET /counter/{name}/fetch", func(w http.ResponseWriter, r *http.Request) {
		stub, err := counters.GetByName(r.PathValue("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "http://counter/", nil)
		resp, err := stub.Fetch(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		resp.Body.(*sdk.Stream).WriteTo(w)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "POST /counter/{name} adds one to the counter {name} and answers its value; GET /counter/{name} reads it")
	})
	sdk.Handle(mux)
}

// answer calls method on the counter the request names and writes its
// value. Passing the request's context ties the call to the request.
func answer(w http.ResponseWriter, r *http.Request, ns *sdk.Namespace, method string, args any) {
	stub, err := ns.GetByName(r.PathValue("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var value int64
	if err := stub.CallContext(r.Context(), method, args, &value); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, value)
}

func main() { sdk.Serve() }
