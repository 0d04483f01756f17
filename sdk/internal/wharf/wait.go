package wharf

import (
	"errors"
	"io"
	"os"
	"time"
	"unsafe"
)

// Serve ends the instance's initialisation (classes, bindings and handlers
// are registered) and returns the event descriptor.
func Serve() (uint32, error) {
	var fd uint32
	return fd, Event(0).check("serve", serve(0, unsafe.Pointer(&fd)))
}

// Done ends the event: status 0 succeeded, anything else failed (its
// storage writes are rolled back).
func (ev Event) Done(status int32) error {
	return ev.check("event_done", eventDone(uint32(ev), status))
}

// Ready returns which of handles are ready now, in ready's backing array
// (which must be at least as long as handles). It never waits: the host's
// poll only checks.
func (ev Event) Ready(handles, ready []uint32) ([]uint32, error) {
	var n uint32
	var hp, rp unsafe.Pointer
	if len(handles) > 0 {
		hp, rp = unsafe.Pointer(&handles[0]), unsafe.Pointer(&ready[:len(handles)][0])
	}
	if err := ev.check("poll", poll(uint32(ev), hp, uint32(len(handles)), 0, rp, unsafe.Pointer(&n))); err != nil {
		return nil, err
	}
	return ready[:n], nil
}

// Wait waits until at least one of handles is ready or timeout passes (a
// negative timeout waits without limit, zero only checks) and returns the
// ready ones, none on timeout. Only the calling goroutine waits: it parks on
// a descriptor from wait_fd in Go's netpoller while the instance's other
// goroutines run.
func (ev Event) Wait(handles []uint32, timeout time.Duration) ([]uint32, error) {
	ready := make([]uint32, len(handles))
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		r, err := ev.Ready(handles, ready)
		if err != nil || len(r) > 0 || timeout == 0 {
			return r, err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return r, nil
		}
		if err := ev.park(handles, deadline); err != nil {
			return nil, err
		}
	}
}

// park blocks the goroutine until the host says one of handles is ready,
// or until deadline (if not zero).
func (ev Event) park(handles []uint32, deadline time.Time) error {
	var fd uint32
	if err := ev.check("wait_fd", waitFD(uint32(ev), unsafe.Pointer(&handles[0]), uint32(len(handles)), unsafe.Pointer(&fd))); err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "wharf-wait")
	defer f.Close()
	if !deadline.IsZero() {
		if err := f.SetReadDeadline(deadline); err != nil {
			return err
		}
	}
	var b [1]byte
	_, err := f.Read(b[:])
	if errors.Is(err, os.ErrDeadlineExceeded) || err == io.EOF {
		// The caller polls again: on a deadline to report what is ready,
		// at EOF (the host closed the descriptor: the event ended) to get
		// the host's error.
		return nil
	}
	return err
}
