// Package sdk is the Go guest SDK for wharf: write a Worker with ordinary
// net/http types and Durable Objects as ordinary Go values, build the plugin
// with GOOS=wasip1 GOARCH=wasm go build (or `wharf build`), and serve it
// with `wharf serve`.
//
//	package main
//
//	func main() {
//		sdk.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			fmt.Fprintln(w, "hello")
//		}))
//		sdk.Serve()
//	}
//
// # A plugin is a long-running program
//
// A plugin is a WASI command. Its main (or its init functions) registers the
// Worker's handler (Handle), Durable Object classes (RegisterClass),
// outbound handlers (HandleOutbound) and the bindings it uses
// (GetNamespace), then calls Serve, which never returns. The host runs a
// few instances of the plugin (one per core by default); each serves many
// requests concurrently and hosts many live Durable Objects.
//
// # Goroutines and waiting
//
// Every event (a request, an RPC call, an alarm) runs on a goroutine of its
// own. Anything that waits on the host (reading a body, writing to a slow
// client, a fetch, Select, Process.Wait) parks only the goroutine that
// waits: the instance's other goroutines keep running, and an instance with
// nothing to do sleeps. Goroutines, channels, time.Sleep, timers and
// context work as in any Go program, across events. Wasm has no
// preemption, though: a goroutine that computes for a long time without
// waiting on anything stalls its instance, and the host stops an instance
// that does so for longer than its CPU slice.
//
// # Concurrency
//
// Package-level state is shared by the requests and objects one instance
// serves (guard it as in any concurrent Go program), and not shared between
// instances. The events of one Durable Object arrive one at a time, so its
// own fields need no locks unless goroutines it starts use them too.
//
// # Events
//
// Every host call acts for an event. The SDK passes it: a Durable Object's
// storage, container and alarm calls act for the object's current event,
// and a handler's request carries its event in its context, so pass
// r.Context() on (http.NewRequestWithContext, Stub.CallContext,
// Logger.InfoContext) to tie outbound calls and log lines to the request.
//
// # Outbound HTTP
//
// The SDK installs Transport as http.DefaultTransport, so http.Get and
// http.Client work and go through the host's fetch.
package sdk
