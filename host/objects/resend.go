package objects

import (
	"errors"
	"io"
	"sync"
)

// maxResentBody is the most of a forwarded fetch's body a host keeps, so
// that it can send the body again if the object moved meanwhile (its
// previous owner answered 421 once the body had gone out).
const maxResentBody = 256 << 10

// errBodyReadAgain fails the reads of an attempt at sending a body once a
// later attempt has started.
var errBodyReadAgain = errors.New("the request's body is being sent again")

// resendableBody is a request body that can be read again from its start
// as long as what was read of it fits in limit bytes, which it keeps.
// Each attempt reads it through fromStart; a transport may still read an
// earlier attempt's reader, which then fails.
type resendableBody struct {
	mu      sync.Mutex
	r       io.Reader
	limit   int
	kept    []byte
	over    bool // more than limit bytes were read: they are not kept
	attempt int
}

func newResendableBody(r io.Reader, limit int) *resendableBody {
	return &resendableBody{r: r, limit: limit}
}

// resendable reports whether the body can still be read from its start.
func (b *resendableBody) resendable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.over
}

// fromStart returns a reader of the body from its start (its Close does
// nothing: the server closes the request's body); call it only while the
// body is resendable.
func (b *resendableBody) fromStart() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempt++
	return &bodyAttempt{b: b, attempt: b.attempt}
}

// bodyAttempt is one reading of a resendableBody from its start.
type bodyAttempt struct {
	b       *resendableBody
	attempt int
	off     int
}

func (a *bodyAttempt) Read(p []byte) (int, error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.attempt != b.attempt {
		return 0, errBodyReadAgain
	}
	if !b.over && a.off < len(b.kept) {
		n := copy(p, b.kept[a.off:])
		a.off += n
		return n, nil
	}
	n, err := b.r.Read(p)
	a.off += n
	if !b.over && n > 0 {
		if len(b.kept)+n > b.limit {
			b.over, b.kept = true, nil
		} else {
			b.kept = append(b.kept, p[:n]...)
		}
	}
	return n, err
}

func (a *bodyAttempt) Close() error { return nil }

// bodyResendable reports whether the event can be sent again from its
// start: it has no body, or its body was kept whole so far.
func (ev *objectEvent) bodyResendable() bool {
	return ev.body == nil || ev.body.resendable()
}
