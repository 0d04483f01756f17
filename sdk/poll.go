package sdk

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Pollable is anything Select can wait on: streams, pending results,
// timers, processes.
type Pollable interface{ Handle() uint32 }

// owned is a Pollable that belongs to an event: waiting on it acts for
// that event.
type owned interface{ event() wharf.Event }

// buffered is a Pollable that may hold what it read from its handle but
// has not handed out yet (a Watcher's decoder): Select reports it ready
// without waiting, since its handle alone would not say so.
type buffered interface{ buffered() bool }

// Select waits until at least one of ps is ready or timeout passes and
// returns the ready ones (none on timeout). A negative timeout waits without
// limit; zero only checks. Only the calling goroutine waits: the plugin's
// other goroutines, requests and objects keep running.
func Select(timeout time.Duration, ps ...Pollable) ([]Pollable, error) {
	if len(ps) == 0 {
		if timeout < 0 {
			return nil, errors.New("wharf: Select on nothing, without a timeout, would never return")
		}
		time.Sleep(timeout)
		return nil, nil
	}
	var ev wharf.Event
	out := make([]Pollable, 0, len(ps))
	handles := make([]uint32, len(ps))
	for i, p := range ps {
		handles[i] = p.Handle()
		if o, ok := p.(owned); ok && ev == 0 {
			ev = o.event()
		}
		if b, ok := p.(buffered); ok && b.buffered() {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		timeout = 0 // only check the others
	}
	ready, err := ev.Wait(handles, timeout)
	if err != nil {
		return nil, err
	}
	for _, h := range ready {
		if slices.ContainsFunc(out, func(p Pollable) bool { return p.Handle() == h }) {
			continue // already ready from its buffer
		}
		for _, p := range ps {
			if p.Handle() == h {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// waitContext waits until p is ready or ctx ends: by its deadline or,
// checked before the wait, by a cancel.
func waitContext(ctx context.Context, p Pollable) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	timeout := time.Duration(-1)
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline), 0)
	}
	ready, err := Select(timeout, p)
	if err != nil {
		return err
	}
	if len(ready) == 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		return context.DeadlineExceeded
	}
	return nil
}

// Timer becomes ready for Select when its duration has passed.
type Timer struct{ handle uint32 }

// NewTimer starts a timer that fires after d. It belongs to the instance,
// not to an event: Stop releases it.
func NewTimer(d time.Duration) (*Timer, error) {
	h, err := wharf.Event(0).TimerStart(int64(max(d, 0)))
	if err != nil {
		return nil, err
	}
	return &Timer{handle: h}, nil
}

// Handle returns the timer's host handle.
func (t *Timer) Handle() uint32 { return t.handle }

// Stop cancels the timer and releases its handle.
func (t *Timer) Stop() error { return wharf.Event(0).Close(t.handle) }
