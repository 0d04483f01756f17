// Command spinner is a test guest that never serves: once its main has
// called sdk.Serve, a goroutine it started computes without calling the
// host, so every instance of it ends at its CPU slice before any event.
package main

import "github.com/wharfhq/wharf/sdk"

var spins uint64

func main() {
	go func() {
		for {
			spins++
		}
	}()
	sdk.Serve()
}
