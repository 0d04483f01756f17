package guestio

import "sync"

// Pending is a result that arrives later: a fetch or a forward.
type Pending struct {
	done     chan struct{}
	once     sync.Once
	value    any
	err      error
	cancelFn func()
	wake     func()
}

// NewPending makes a result not yet resolved; wake is called when it
// arrives, cancel (nil if it cannot be canceled) when it is given up on.
func NewPending(wake func(), cancel func()) *Pending {
	return &Pending{done: make(chan struct{}), wake: wake, cancelFn: cancel}
}

// Resolve sets the result; only the first call counts.
func (p *Pending) Resolve(v any, err error) {
	p.once.Do(func() {
		p.value, p.err = v, err
		close(p.done)
		p.wake()
	})
}

// Cancelable reports whether p was made with a cancel function (a
// forward's was not).
func (p *Pending) Cancelable() bool { return p.cancelFn != nil }

// Ready reports whether the result has arrived.
func (p *Pending) Ready() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the result arrives.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result is the value and error p was resolved with; call it once Done is
// closed.
func (p *Pending) Result() (any, error) { return p.value, p.err }

// Cancel gives up on the result: it calls the cancel function, and a value
// that arrives anyway is handed to release (if not nil).
func (p *Pending) Cancel(release func(any)) {
	if p.cancelFn == nil {
		return
	}
	p.cancelFn()
	if release == nil {
		return
	}
	go func() {
		<-p.done
		release(p.value)
	}()
}
