// Package sdk is the Go guest SDK for wharf: write a Worker with ordinary
// net/http types, build it with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared
// (or `wharf build`), and serve it with `wharf serve`.
//
//	package main
//
//	func init() {
//		sdk.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			fmt.Fprintln(w, "hello")
//		}))
//	}
//
//	func main() {}
//
// # Registration happens in init
//
// A module built with -buildmode=c-shared is a reactor: the host runs the
// package initialisers once per instance and then calls exported functions
// for every event. main is never called, so register your handler from an
// init function.
//
// # Blocking and goroutines
//
// Every import that waits (reading a body, writing to a slow client, Select)
// blocks the whole guest: while it waits, no other goroutine of the instance
// runs. Goroutines do run while the guest is inside an event (your handler),
// and Go's time.Sleep and timers work there, backed by the host's real
// clock. Between events the guest is frozen: a goroutine left running after
// the handler returns, or a bare channel wait on something the host must
// deliver, makes no progress until the next event. Wait on host resources
// with Select and Sleep, which go through the host's poll, and let the host
// keep bytes flowing after your handler returns with Forward.
//
// # Concurrency
//
// An instance serves one event at a time; the host runs as many instances as
// the manifest's [limits] allow. Package-level state is per instance, not
// shared between requests served by different instances.
//
// # Outbound HTTP
//
// The SDK installs Transport as http.DefaultTransport, so http.Get and
// http.Client work and go through the host's fetch.
package sdk
