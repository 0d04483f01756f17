package guestio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wharfhq/wharf/abi"
)

// Streams move bytes between guests and the outside in pooled chunks. A
// readable stream is filled by a pump goroutine reading its source; a
// writable stream is drained by a writer goroutine into its sink. Both keep at
// most streamBufferLimit bytes queued, so a body of any size passes through in
// bounded memory, and Forward moves chunks from one to the other without
// copying them.

// ChunkSize is the size of a pooled chunk: the most a stream's source is
// read for at once.
const ChunkSize = 64 << 10

const streamBufferLimit = 4 * ChunkSize

var chunkPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// chunk is a slice of a pooled buffer.
type chunk struct {
	buf  *[]byte // returned to chunkPool when the data is consumed; nil if not pooled
	data []byte
}

func (c chunk) release() {
	if c.buf != nil {
		chunkPool.Put(c.buf)
	}
}

// errStreamClosed is returned by operations on a stream after close.
var errStreamClosed = errors.New("stream is closed")

// Signal is a wake-up with at most one pending token.
type Signal chan struct{}

// NewSignal makes a Signal with no token.
func NewSignal() Signal { return make(Signal, 1) }

// Notify leaves a token unless one is pending already.
func (s Signal) Notify() {
	select {
	case s <- struct{}{}:
	default:
	}
}

// queue is the bounded chunk buffer shared by both stream directions.
type queue struct {
	mu     sync.Mutex
	chunks []chunk
	queued int
	data   Signal // something was queued or the stream ended
	space  Signal // something was dequeued
	wake   func() // tells the owning guest's poll to re-check readiness
}

func newQueue(wake func()) queue {
	return queue{data: NewSignal(), space: NewSignal(), wake: wake}
}

// pushLocked queues c. A chunk that fits in the room left in the last
// one's buffer is copied there: each holds a whole pooled buffer, and
// the limit counts bytes, so a source read a byte at a time (a client
// trickling its body, a guest writing bytes one by one) would otherwise
// queue a 64 KiB buffer per byte, up to 16 GiB per stream. Every queued
// buffer but the last is then at least half full once c is at most half
// a chunk, and holds more than half a chunk otherwise.
func (q *queue) pushLocked(c chunk) {
	q.queued += len(c.data)
	if k := len(q.chunks) - 1; k >= 0 {
		if last := &q.chunks[k]; cap(last.data)-len(last.data) >= len(c.data) {
			last.data = append(last.data, c.data...) // in last's own buffer: pooled chunks own theirs
			c.release()
			return
		}
	}
	q.chunks = append(q.chunks, c)
}

// popInto copies queued bytes into p. Callers hold q.mu.
func (q *queue) popIntoLocked(p []byte) int {
	n := 0
	for n < len(p) && len(q.chunks) > 0 {
		c := &q.chunks[0]
		m := copy(p[n:], c.data)
		c.data = c.data[m:]
		n += m
		if len(c.data) == 0 {
			c.release()
			q.chunks[0] = chunk{}
			q.chunks = q.chunks[1:]
		}
	}
	q.queued -= n
	return n
}

func (q *queue) popChunkLocked() chunk {
	c := q.chunks[0]
	q.chunks[0] = chunk{}
	q.chunks = q.chunks[1:]
	q.queued -= len(c.data)
	return c
}

func (q *queue) discardLocked() {
	for _, c := range q.chunks {
		c.release()
	}
	q.chunks, q.queued = nil, 0
}

func (q *queue) notifyData() {
	q.data.Notify()
	q.wake()
}

func (q *queue) notifySpace() {
	q.space.Notify()
	q.wake()
}

// ReadStream is a readable byte stream over an io.ReadCloser.
type ReadStream struct {
	queue
	src     io.ReadCloser
	started bool
	err     error // io.EOF at the end, or what broke the source
	closed  bool
	stop    chan struct{}
	pumped  chan struct{} // closed when the pump has exited
}

// NewReadStream makes a stream over src; a nil src is an empty stream.
// Closing src must make a Read blocked in it return (the Read may leave a
// reader writing into its buffer: once closed, the stream drops it). wake tells the owning
// guest's poll to re-check readiness.
func NewReadStream(src io.ReadCloser, wake func()) *ReadStream {
	s := &ReadStream{queue: newQueue(wake), src: src, stop: make(chan struct{}), pumped: make(chan struct{})}
	if src == nil {
		s.err = io.EOF
		s.started = true
	}
	if s.started {
		close(s.pumped)
	}
	return s
}

// Source is the stream's source, as NewReadStream got it.
func (s *ReadStream) Source() io.ReadCloser { return s.src }

func (s *ReadStream) startLocked() {
	if !s.started {
		s.started = true
		go s.pump()
	}
}

func (s *ReadStream) pump() {
	defer close(s.pumped)
	for {
		buf := chunkPool.Get().(*[]byte)
		n, err := s.src.Read(*buf)
		s.mu.Lock()
		switch {
		case s.closed:
			// Not pooled: a source may return from a Read that Close
			// abandoned while its reader still writes into buf.
		case n > 0:
			s.pushLocked(chunk{buf: buf, data: (*buf)[:n]})
		default:
			chunkPool.Put(buf)
		}
		if err != nil && s.err == nil {
			s.err = err
		}
		full := s.queued >= streamBufferLimit
		done := s.err != nil || s.closed
		s.mu.Unlock()
		s.notifyData()
		if done {
			return
		}
		for full {
			select {
			case <-s.space:
			case <-s.stop:
				return
			}
			s.mu.Lock()
			full = s.queued >= streamBufferLimit && !s.closed
			s.mu.Unlock()
		}
	}
}

// Read copies available bytes into p, waiting for some unless nonBlocking.
func (s *ReadStream) Read(ctx context.Context, p []byte, nonBlocking bool) (int, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, fmt.Errorf("%w: %w", abi.StatusBadHandle, errStreamClosed)
		}
		if len(s.chunks) > 0 {
			n := s.popIntoLocked(p)
			s.mu.Unlock()
			s.notifySpace()
			return n, nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return 0, readError(err)
		}
		s.startLocked()
		s.mu.Unlock()
		if nonBlocking {
			return 0, abi.StatusAgain
		}
		select {
		case <-s.data:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", abi.StatusTimeout, context.Cause(ctx))
		}
	}
}

// nextChunk takes the next queued chunk whole, for Forward into dst; it
// returns dst's failure if dst ends first.
func (s *ReadStream) nextChunk(ctx context.Context, dst *WriteStream) (chunk, error) {
	for {
		s.mu.Lock()
		if len(s.chunks) > 0 {
			c := s.popChunkLocked()
			s.mu.Unlock()
			s.notifySpace()
			return c, nil
		}
		if s.err != nil || s.closed {
			err := s.err
			s.mu.Unlock()
			if err == nil {
				err = errStreamClosed
			}
			return chunk{}, err
		}
		s.startLocked()
		s.mu.Unlock()
		select {
		case <-s.data:
		case <-dst.done: // failed, or finished: either way check says so
			dst.mu.Lock()
			defer dst.mu.Unlock()
			return chunk{}, dst.check()
		case <-ctx.Done():
			return chunk{}, context.Cause(ctx)
		}
	}
}

func readError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return abi.StatusEOF
	case errors.Is(err, errAborted):
		return fmt.Errorf("%w: %w", abi.StatusAborted, err)
	}
	return fmt.Errorf("%w: %w", abi.StatusIO, err)
}

// Ready reports whether a read would not block; it starts the pump.
func (s *ReadStream) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	s.startLocked()
	return len(s.chunks) > 0 || s.err != nil
}

// Close stops the pump, closes the source and waits for the pump to exit, so
// the source is never read after Close returns.
func (s *ReadStream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.discardLocked()
	if !s.started {
		s.started = true // no pump will start now
		close(s.pumped)
	}
	s.mu.Unlock()
	close(s.stop)
	if s.src != nil {
		s.src.Close()
	}
	<-s.pumped
}

// errAborted marks a stream its writer aborted.
var errAborted = errors.New("stream aborted")

// Sink is where a writable stream's bytes go.
type Sink interface {
	// Write delivers p; it may block.
	Write(p []byte) error
	// Finish marks a clean end of the stream.
	Finish() error
	// Abort ends the stream with an error the reader can see, and makes a
	// blocked Write return.
	Abort(err error)
}

// WriteStream is a writable byte stream drained into a Sink.
type WriteStream struct {
	queue
	sink    Sink
	started bool
	closing bool  // no more writes; finish after draining
	err     error // the sink failed or the stream was aborted
	done    chan struct{}
	// readerGone is closed once whoever reads what the sink writes went
	// away (see AbortWhenReaderGone); nil if that is never known.
	readerGone <-chan struct{}
}

// ErrReaderGone ends a stream whose reader went away: the client of a
// response stopped reading it.
var ErrReaderGone = errors.New("the reader went away")

// NewWriteStream makes a stream drained into s; wake tells the owning
// guest's poll to re-check readiness.
func NewWriteStream(s Sink, wake func()) *WriteStream {
	return &WriteStream{queue: newQueue(wake), sink: s, done: make(chan struct{})}
}

// AbortWhenReaderGone aborts the stream with ErrReaderGone if reader (the
// context of whoever reads what the sink writes, such as the client's
// request) ends before the stream does, even while nothing is written: a
// Forward into it then stops at once instead of at its source's next
// bytes. Call it before the stream's first use.
func (s *WriteStream) AbortWhenReaderGone(reader context.Context) {
	s.mu.Lock()
	s.readerGone = reader.Done()
	s.startLocked()
	s.mu.Unlock()
}

func (s *WriteStream) startLocked() {
	if !s.started {
		s.started = true
		go s.drain()
	}
}

func (s *WriteStream) drain() {
	defer close(s.done)
	for {
		s.mu.Lock()
		if s.err != nil {
			s.discardLocked()
			s.mu.Unlock()
			s.notifySpace()
			return
		}
		if len(s.chunks) == 0 {
			if s.closing {
				s.mu.Unlock()
				if err := s.sink.Finish(); err != nil {
					s.fail(err)
				}
				return
			}
			s.mu.Unlock()
			select {
			case <-s.data:
			case <-s.readerGone:
				s.Abort(ErrReaderGone)
			}
			continue
		}
		c := s.popChunkLocked()
		s.mu.Unlock()
		err := s.sink.Write(c.data)
		c.release()
		s.notifySpace()
		if err != nil {
			s.fail(err)
		}
	}
}

func (s *WriteStream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.notifySpace()
}

func (s *WriteStream) check() error {
	if s.err != nil {
		return fmt.Errorf("%w: %w", abi.StatusClosed, s.err)
	}
	if s.closing {
		return fmt.Errorf("%w: %w", abi.StatusBadHandle, errStreamClosed)
	}
	return nil
}

// Write queues a copy of p. Blocking, it returns once all of p is queued;
// non-blocking, it queues what fits and returns StatusAgain if nothing did.
// An empty p queues nothing and reports only whether the stream has
// failed: a writer learns so whether bytes it queued earlier could not be
// delivered (a file's disk was full), which no later write of its would
// tell it once it has written everything.
func (s *WriteStream) Write(ctx context.Context, p []byte, nonBlocking bool) (int, error) {
	if len(p) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			return 0, fmt.Errorf("%w: %w", abi.StatusClosed, s.err)
		}
		return 0, nil
	}
	n := 0
	for n < len(p) {
		s.mu.Lock()
		if err := s.check(); err != nil {
			s.mu.Unlock()
			return n, err
		}
		s.startLocked()
		room := streamBufferLimit - s.queued
		if room <= 0 {
			s.mu.Unlock()
			if nonBlocking {
				if n == 0 {
					return 0, abi.StatusAgain
				}
				return n, nil
			}
			select {
			case <-s.space:
			case <-ctx.Done():
				return n, fmt.Errorf("%w: %w", abi.StatusTimeout, context.Cause(ctx))
			}
			continue
		}
		for room > 0 && n < len(p) {
			buf := chunkPool.Get().(*[]byte)
			m := copy((*buf)[:min(room, ChunkSize)], p[n:])
			s.pushLocked(chunk{buf: buf, data: (*buf)[:m]})
			n += m
			room -= m
		}
		s.mu.Unlock()
		s.data.Notify()
	}
	return n, nil
}

// pushChunk queues c whole, waiting for room; used by Forward.
func (s *WriteStream) pushChunk(ctx context.Context, c chunk) error {
	for {
		s.mu.Lock()
		if err := s.check(); err != nil {
			s.mu.Unlock()
			c.release()
			return err
		}
		s.startLocked()
		if s.queued < streamBufferLimit {
			s.pushLocked(c)
			s.mu.Unlock()
			s.data.Notify()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-s.space:
		case <-ctx.Done():
			c.release()
			return context.Cause(ctx)
		}
	}
}

// Ready reports whether a write would not block.
func (s *WriteStream) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued < streamBufferLimit || s.err != nil
}

// Close ends the stream cleanly once queued bytes are written. It does not
// wait; see Wait.
func (s *WriteStream) Close() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	s.startLocked()
	s.mu.Unlock()
	s.data.Notify()
}

// Abort drops queued bytes and ends the stream with err.
func (s *WriteStream) Abort(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = fmt.Errorf("%w: %w", errAborted, err)
	}
	s.closing = true
	s.startLocked()
	s.mu.Unlock()
	s.sink.Abort(err)
	s.data.Notify()
}

// Wait blocks until the stream is finished or failed and returns the failure.
func (s *WriteStream) Wait() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Forward splices src into dst until src ends, then closes dst; on an error
// of either side the other is aborted or closed, at once even while src has
// nothing to read. It resolves p when done.
func Forward(ctx context.Context, src *ReadStream, dst *WriteStream, p *Pending) {
	var err error
	for {
		var c chunk
		c, err = src.nextChunk(ctx, dst)
		if err != nil {
			break
		}
		if err = dst.pushChunk(ctx, c); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		dst.Close()
		err = dst.Wait()
	} else {
		dst.Abort(err)
	}
	src.Close()
	p.Resolve(nil, err)
}
