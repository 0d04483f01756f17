package web

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// A dial made for a request stops when the request's bound context ends,
// even if the context it was dialed with (net/http's, which outlives the
// request) does not.
func TestBoundDialStopsWithTheBoundContext(t *testing.T) {
	d := &net.Dialer{ControlContext: func(ctx context.Context, _, _ string, _ syscall.RawConn) error {
		<-ctx.Done() // a connection attempt that never completes by itself
		return ctx.Err()
	}}
	bound, cancel := context.WithCancel(context.Background())
	dialCtx := context.WithoutCancel(WithDialBound(bound))
	done := make(chan error, 1)
	go func() {
		conn, err := BoundDial(d)(dialCtx, "tcp", "127.0.0.1:1")
		if conn != nil {
			conn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the dial ended before its request: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the dial went on after its request ended")
	}
}
