package sdk

import (
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Pollable is anything Select can wait on: streams, pending results, timers.
type Pollable interface{ Handle() uint32 }

// Select waits until at least one of ps is ready or timeout passes and
// returns the ready ones (none on timeout). A negative timeout waits without
// limit; zero only checks. Select blocks the whole guest while it waits.
func Select(timeout time.Duration, ps ...Pollable) ([]Pollable, error) {
	handles := make([]uint32, len(ps))
	for i, p := range ps {
		handles[i] = p.Handle()
	}
	ns := int64(timeout)
	if timeout < 0 {
		ns = abi.PollForever
	}
	ready, err := wharf.Poll(handles, ns, make([]uint32, len(ps)))
	if err != nil {
		return nil, err
	}
	out := make([]Pollable, 0, len(ready))
	for _, h := range ready {
		for _, p := range ps {
			if p.Handle() == h {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// Sleep pauses the guest for d using the host's clock.
func Sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	wharf.Poll(nil, int64(d), nil)
}

// Timer becomes ready for Select when its duration has passed.
type Timer struct{ handle uint32 }

// NewTimer starts a timer that fires after d.
func NewTimer(d time.Duration) (*Timer, error) {
	h, err := wharf.TimerStart(int64(max(d, 0)))
	if err != nil {
		return nil, err
	}
	return &Timer{handle: h}, nil
}

// Handle returns the timer's host handle.
func (t *Timer) Handle() uint32 { return t.handle }

// Stop cancels the timer and releases its handle.
func (t *Timer) Stop() error { return wharf.Close(t.handle) }
