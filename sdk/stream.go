package sdk

import (
	"errors"
	"io"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Stream is a host byte stream: a request or response body, or a body being
// written. It is an io.Reader or an io.Writer depending on its direction.
type Stream struct {
	ev     wharf.Event // the event that owns the handle
	handle uint32
	closed bool
	used   bool // something was read from it
}

// wasRead reports whether s (which may be nil) has been read from.
func (s *Stream) wasRead() bool { return s != nil && s.used }

// copyBufferSize is the chunk WriteTo and ReadFrom move per host call.
const copyBufferSize = 256 << 10

// Handle returns the stream's host handle, for Select.
func (s *Stream) Handle() uint32 { return s.handle }

func (s *Stream) event() wharf.Event { return s.ev }

// Read reads available bytes, waiting for some. It returns io.EOF at the
// end. Only the calling goroutine waits.
func (s *Stream) Read(p []byte) (int, error) {
	for {
		n, err := s.TryRead(p)
		if err != ErrWouldBlock {
			return n, err
		}
		if _, err := Select(-1, s); err != nil {
			return 0, err
		}
	}
}

// TryRead is Read without waiting: it returns ErrWouldBlock if no bytes are
// available yet.
func (s *Stream) TryRead(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.closed {
		return 0, errClosedStream("read from")
	}
	s.used = true
	n, err := s.ev.StreamRead(s.handle, p, abi.StreamNonBlocking)
	if errors.Is(err, abi.StatusEOF) {
		return n, io.EOF
	}
	return n, wouldBlock(err)
}

// Write writes all of p, waiting for room. Only the calling goroutine
// waits.
func (s *Stream) Write(p []byte) (int, error) {
	total := 0
	for {
		n, err := s.TryWrite(p[total:])
		total += n
		switch {
		case err == ErrWouldBlock:
			if _, err := Select(-1, s); err != nil {
				return total, err
			}
		case err != nil || total == len(p):
			return total, err
		}
	}
}

// TryWrite writes what fits without waiting; it returns ErrWouldBlock if
// nothing did.
func (s *Stream) TryWrite(p []byte) (int, error) {
	if s.closed {
		return 0, errClosedStream("write to")
	}
	n, err := s.ev.StreamWrite(s.handle, p, abi.StreamNonBlocking)
	return n, wouldBlock(err)
}

// WriteTo copies the stream to w in large chunks; io.Copy uses it.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, copyBufferSize)
	var total int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// ReadFrom copies r into the stream in large chunks; io.Copy uses it.
func (s *Stream) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(onlyWriter{s}, r, make([]byte, copyBufferSize))
}

// errClosedStream is a read or write of a stream after its own Close or
// Abort, which released its handle (ErrClosed, as a write to a closed pipe
// is): the host would only call the handle unknown.
func errClosedStream(what string) error {
	return wharf.NewError("stream", abi.StatusClosed, what+" a stream after its Close or Abort")
}

// onlyWriter hides ReadFrom so io.CopyBuffer does not recurse.
type onlyWriter struct{ io.Writer }

// Close ends a writable stream cleanly, or discards the rest of a readable
// one, and releases the handle.
func (s *Stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.ev.Close(s.handle)
}

// Abort ends the stream with an error the other side sees (a cut response
// body, a failed upload) and releases the handle.
func (s *Stream) Abort(reason string) error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.ev.StreamAbort(s.handle, reason)
}

// Pending is an operation the host finishes in the background.
type Pending struct {
	ev     wharf.Event
	handle uint32
}

// Handle returns the pending result's host handle, for Select.
func (p *Pending) Handle() uint32 { return p.handle }

func (p *Pending) event() wharf.Event { return p.ev }

// Wait blocks the calling goroutine until the operation has finished and
// releases the handle.
func (p *Pending) Wait() error {
	if _, err := Select(-1, p); err != nil {
		return err
	}
	return p.ev.Close(p.handle)
}

// ForwardStream makes the host copy src into dst until src ends, then close
// dst. It returns at once; src and dst belong to the host from then on and
// keep flowing after the handler returns.
func ForwardStream(src, dst *Stream) (*Pending, error) {
	h, err := dst.ev.Forward(src.handle, dst.handle)
	if err != nil {
		return nil, err
	}
	src.closed, dst.closed = true, true
	return &Pending{ev: dst.ev, handle: h}, nil
}
