package wharf

import (
	"errors"
	"io"
	"os"
	"sync"
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
	w, err := takeWaiter(ev, handles)
	if err != nil {
		return err
	}
	if err := w.SetReadDeadline(deadline); err != nil { // a zero deadline clears the last one
		w.Close()
		return err
	}
	var b [1]byte
	_, err = w.Read(b[:])
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || err == nil:
		// The caller polls again: on a deadline to report what is ready,
		// on a wake-up to learn which handle is.
		putWaiter(w)
		return nil
	case err == io.EOF: // not a wait descriptor's answer: poll for the host's error
		w.Close()
		return nil
	}
	w.Close()
	return err
}

// maxIdleWaiters bounds the wait descriptors kept open for reuse: as many
// as goroutines usually wait at once.
const maxIdleWaiters = 64

// idleWaiters are wait descriptors no goroutine waits on. Reusing one
// (wait_rebind) spares making and registering an *os.File per wait. Wasm
// runs one goroutine at a time, but a read parks between take and put, so
// the list is guarded.
var idleWaiters struct {
	sync.Mutex
	files []waiter
}

// waiter is a wait descriptor and the file Go's netpoller reads it through.
type waiter struct {
	*os.File
	fd uint32
}

// takeWaiter returns a wait descriptor waiting for handles: an idle one
// pointed at them, or a new one.
func takeWaiter(ev Event, handles []uint32) (waiter, error) {
	idleWaiters.Lock()
	var w waiter
	if n := len(idleWaiters.files); n > 0 {
		w = idleWaiters.files[n-1]
		idleWaiters.files = idleWaiters.files[:n-1]
	}
	idleWaiters.Unlock()
	if w.File != nil {
		if err := ev.check("wait_rebind", waitRebind(uint32(ev), w.fd, unsafe.Pointer(&handles[0]), uint32(len(handles)))); err != nil {
			putWaiter(w) // the handles were refused, not the descriptor
			return waiter{}, err
		}
		return w, nil
	}
	if err := ev.check("wait_fd", waitFD(uint32(ev), unsafe.Pointer(&handles[0]), uint32(len(handles)), unsafe.Pointer(&w.fd))); err != nil {
		return waiter{}, err
	}
	w.File = os.NewFile(uintptr(w.fd), "wharf-wait")
	return w, nil
}

// putWaiter keeps w for the next wait, or closes it if enough are kept.
func putWaiter(w waiter) {
	idleWaiters.Lock()
	defer idleWaiters.Unlock()
	if len(idleWaiters.files) < maxIdleWaiters {
		idleWaiters.files = append(idleWaiters.files, w)
		return
	}
	w.Close()
}
