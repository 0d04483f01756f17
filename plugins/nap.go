package plugins

import "sync/atomic"

// napper lets a goroutine that polls on a ticker sleep while there is
// nothing to watch, and be woken without a lost wake-up: the sleeper
// announces itself before it checks its condition one last time, and the
// waker changes the condition before it looks for a sleeper, so one of
// them sees the other.
type napper struct {
	sleeping atomic.Bool
	wake     chan struct{}
}

func newNapper() *napper { return &napper{wake: make(chan struct{}, 1)} }

// nap waits until rouse or done, unless idle no longer holds; it reports
// whether it waited.
func (n *napper) nap(done <-chan struct{}, idle func() bool) bool {
	n.sleeping.Store(true)
	defer n.sleeping.Store(false)
	if !idle() {
		return false
	}
	select {
	case <-done:
	case <-n.wake:
	}
	return true
}

// rouse wakes the goroutine if it naps; call it after making its idle
// condition false.
func (n *napper) rouse() {
	if n.sleeping.Load() {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}
