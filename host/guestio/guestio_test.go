package guestio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
)

// owner counts the handles released on its behalf.
type owner struct{ released []abi.Kind }

func (o *owner) Released(kind abi.Kind) { o.released = append(o.released, kind) }

func TestTableStaleAndWrongKind(t *testing.T) {
	var tab Table[*owner]
	o := &owner{}
	h := tab.Add(abi.KindReadStream, "a", o)
	assert.NotZero(t, h.Index(), "index 0 is never handed out")
	obj, err := tab.Lookup(h, abi.KindReadStream)
	require.NoError(t, err)
	assert.Equal(t, "a", obj)

	_, err = tab.Lookup(h, abi.KindWriteStream)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
	assert.Contains(t, err.Error(), "is a "+abi.KindReadStream.String()+", not a "+abi.KindWriteStream.String())

	kind, obj, err := tab.Remove(h)
	require.NoError(t, err)
	assert.Equal(t, abi.KindReadStream, kind)
	assert.Equal(t, "a", obj)
	assert.Equal(t, []abi.Kind{abi.KindReadStream}, o.released, "the owner is told")
	assert.Equal(t, 0, tab.Live())

	// The slot is reused with a new generation: the old handle stays dead.
	h2 := tab.Add(abi.KindTimer, "b", nil)
	assert.Equal(t, h.Index(), h2.Index())
	assert.NotEqual(t, h, h2)
	_, err = tab.Get(h)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
	assert.Contains(t, err.Error(), "is not open (stale or never issued)")
	_, held := tab.Held(h)
	assert.False(t, held, "a stale handle holds nothing")
	e2, held := tab.Held(h2)
	assert.True(t, held)
	assert.Equal(t, "b", e2.Obj)
	_, held = tab.Held(abi.MakeHandle(99, 1))
	assert.False(t, held, "never issued")
	_, _, err = tab.Remove(h)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
	e, err := tab.Get(h2)
	require.NoError(t, err)
	assert.Equal(t, Entry[*owner]{Kind: abi.KindTimer, Obj: "b"}, e)
	assert.Len(t, o.released, 1, "a handle without owner tells no one")

	_, err = tab.Get(0)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
}

func TestTableGenerationWraps(t *testing.T) {
	var tab Table[*owner]
	h := tab.Add(abi.KindTimer, 1, nil)
	for range maxGeneration - 1 {
		_, _, err := tab.Remove(h)
		require.NoError(t, err)
		h = tab.Add(abi.KindTimer, 1, nil)
	}
	assert.Equal(t, uint32(maxGeneration), h.Generation())
	_, _, err := tab.Remove(h)
	require.NoError(t, err)
	h = tab.Add(abi.KindTimer, 1, nil)
	assert.Equal(t, uint32(1), h.Generation(), "past the largest generation it starts again at 1")
}

func TestTableDrain(t *testing.T) {
	var tab Table[*owner]
	o := &owner{}
	a := tab.Add(abi.KindReadStream, "a", o)
	tab.Add(abi.KindWriteStream, "b", o)
	tab.Add(abi.KindTimer, "c", nil)
	_, _, err := tab.Remove(a)
	require.NoError(t, err)
	var got []any
	tab.Drain(func(_ abi.Kind, obj any) { got = append(got, obj) })
	assert.Equal(t, []any{"b", "c"}, got)
	assert.Equal(t, 0, tab.Live())
	assert.Equal(t, []abi.Kind{abi.KindReadStream, abi.KindWriteStream}, o.released)
}

// source is a ReadCloser that records whether it was closed.
type source struct {
	io.Reader
	mu     sync.Mutex
	closed bool
}

func (s *source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *source) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// readAll reads s to its end, waiting as a guest would.
func readAll(t *testing.T, s *ReadStream) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 10000)
	for {
		n, err := s.Read(context.Background(), buf, false)
		out = append(out, buf[:n]...)
		if errors.Is(err, abi.StatusEOF) {
			return out
		}
		require.NoError(t, err)
	}
}

func TestReadStream(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*streamBufferLimit/16+5) // more than the buffer holds
	src := &source{Reader: bytes.NewReader(data)}
	s := NewReadStream(src, func() {})
	assert.Equal(t, data, readAll(t, s))
	_, err := s.Read(context.Background(), make([]byte, 1), true)
	assert.ErrorIs(t, err, abi.StatusEOF, "the end stays the end")

	s.Close()
	assert.True(t, src.isClosed())
	_, err = s.Read(context.Background(), make([]byte, 1), true)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
	assert.ErrorIs(t, err, errStreamClosed)

	empty := NewReadStream(nil, func() {})
	assert.True(t, empty.Ready())
	_, err = empty.Read(context.Background(), make([]byte, 1), false)
	assert.ErrorIs(t, err, abi.StatusEOF)
}

func TestReadStreamNotReadyAndTimeout(t *testing.T) {
	pr, pw := io.Pipe()
	wakes := NewSignal()
	s := NewReadStream(pr, wakes.Notify)
	assert.False(t, s.Ready(), "nothing written yet")
	_, err := s.Read(context.Background(), make([]byte, 4), true)
	assert.ErrorIs(t, err, abi.StatusAgain)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = s.Read(ctx, make([]byte, 4), false)
	assert.ErrorIs(t, err, abi.StatusTimeout)

	go pw.Write([]byte("hi"))
	<-wakes // the pump tells the guest's poll
	require.Eventually(t, s.Ready, time.Second, time.Millisecond)
	buf := make([]byte, 4)
	n, err := s.Read(context.Background(), buf, true)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(buf[:n]))

	pw.CloseWithError(errors.New("source broke"))
	_, err = s.Read(context.Background(), buf, false)
	assert.ErrorIs(t, err, abi.StatusIO)
	assert.ErrorContains(t, err, "source broke")
	s.Close()
}

// sink records what a WriteStream delivers; gate, if set, holds each Write
// until Abort, and entered then has a token once a Write is held.
type sink struct {
	gate     chan struct{}
	entered  Signal
	mu       sync.Mutex
	buf      bytes.Buffer
	finished bool
	aborted  error
}

func (s *sink) Write(p []byte) error {
	if s.gate != nil {
		s.entered.Notify()
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	return nil
}

func (s *sink) Finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	return nil
}

func (s *sink) Abort(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = err
	if s.gate != nil {
		close(s.gate)
	}
}

func TestWriteStream(t *testing.T) {
	k := &sink{}
	s := NewWriteStream(k, func() {})
	data := bytes.Repeat([]byte("x"), 2*streamBufferLimit+7)
	n, err := s.Write(context.Background(), data, false)
	require.NoError(t, err)
	assert.Equal(t, len(data), n)
	s.Close()
	require.NoError(t, s.Wait())
	assert.True(t, k.finished)
	assert.Equal(t, data, k.buf.Bytes())

	_, err = s.Write(context.Background(), []byte("late"), true)
	assert.ErrorIs(t, err, abi.StatusBadHandle)
	assert.ErrorIs(t, err, errStreamClosed)
}

// failingSink refuses every write, as a file on a full disk does.
type failingSink struct{}

func (failingSink) Write([]byte) error { return syscall.ENOSPC }
func (failingSink) Finish() error      { return nil }
func (failingSink) Abort(error)        {}

// TestEmptyWriteReportsAFailedStream: bytes queued whole and then refused
// by the sink (a full disk) are reported to an empty write, where it said
// nothing, so that a writer which wrote everything can learn they never
// arrived; on a stream that has not failed an empty write does nothing.
func TestEmptyWriteReportsAFailedStream(t *testing.T) {
	ok := NewWriteStream(&sink{}, func() {})
	n, err := ok.Write(context.Background(), nil, true)
	assert.NoError(t, err)
	assert.Zero(t, n)

	s := NewWriteStream(failingSink{}, func() {})
	n, err = s.Write(context.Background(), []byte("all of it"), true)
	require.NoError(t, err, "queued whole before the sink refused it")
	require.Equal(t, 9, n)
	require.Eventually(t, func() bool {
		_, err = s.Write(context.Background(), nil, true)
		return err != nil
	}, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, err, abi.StatusClosed)
	assert.ErrorIs(t, err, syscall.ENOSPC)
}

func TestWriteStreamBackpressureAndAbort(t *testing.T) {
	k := &sink{gate: make(chan struct{}), entered: NewSignal()} // the sink holds what it gets
	s := NewWriteStream(k, func() {})
	data := make([]byte, 2*streamBufferLimit)
	accepted, err := s.Write(context.Background(), data, true)
	require.NoError(t, err)
	<-k.entered // the writer goroutine took one chunk and is stuck with it
	for {
		n, err := s.Write(context.Background(), data, true)
		accepted += n
		if errors.Is(err, abi.StatusAgain) {
			break
		}
		require.NoError(t, err)
		require.Less(t, n, len(data), "a non-blocking write queues what fits")
		require.LessOrEqual(t, accepted, streamBufferLimit+ChunkSize, "the queue is bounded")
	}
	assert.Equal(t, streamBufferLimit+ChunkSize, accepted, "the buffer limit queued, one chunk in the sink")
	assert.False(t, s.Ready())

	s.Abort(errors.New("gave up"))
	assert.ErrorContains(t, k.aborted, "gave up")
	err = s.Wait()
	assert.ErrorIs(t, err, errAborted)
	_, err = s.Write(context.Background(), data, true)
	assert.ErrorIs(t, err, abi.StatusClosed)
	assert.ErrorContains(t, err, "stream aborted: gave up")
	assert.True(t, s.Ready(), "a failed stream does not block")
}

// oneByteAtATime is an endless source that returns a byte per Read, as a
// client trickling its body does.
type oneByteAtATime struct{}

func (oneByteAtATime) Read(p []byte) (int, error) { p[0] = 'x'; return 1, nil }
func (oneByteAtATime) Close() error               { return nil }

// TestStreamsBufferBytesNotPieces: a stream's limit bounds its memory
// whatever the size of the pieces it gets, read from its source or written
// by the guest a byte at a time: small pieces share a buffer (before,
// each took a 64 KiB chunk, and 256 Ki one-byte pieces fit the limit).
func TestStreamsBufferBytesNotPieces(t *testing.T) {
	maxChunks := streamBufferLimit/ChunkSize + 1
	r := NewReadStream(oneByteAtATime{}, func() {})
	defer r.Close()
	_, err := r.Read(context.Background(), nil, true) // starts the pump
	require.ErrorIs(t, err, abi.StatusAgain)
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.queued >= streamBufferLimit
	}, 10*time.Second, time.Millisecond, "the source fills the stream")
	r.mu.Lock()
	assert.LessOrEqual(t, len(r.chunks), maxChunks, "buffers queued for %d bytes", r.queued)
	r.mu.Unlock()
	got := make([]byte, 3)
	n, err := r.Read(context.Background(), got, true)
	require.NoError(t, err)
	assert.Equal(t, "xxx", string(got[:n]))

	k := &sink{gate: make(chan struct{}), entered: NewSignal()}
	w := NewWriteStream(k, func() {})
	defer w.Abort(errors.New("done"))
	for i := 0; ; i++ {
		_, err := w.Write(context.Background(), []byte{byte(i)}, true)
		if errors.Is(err, abi.StatusAgain) {
			break
		}
		require.NoError(t, err)
	}
	w.mu.Lock()
	assert.Equal(t, streamBufferLimit, w.queued)
	assert.LessOrEqual(t, len(w.chunks), maxChunks, "buffers queued for %d bytes", w.queued)
	var queued []byte
	for _, c := range w.chunks {
		queued = append(queued, c.data...)
	}
	for i := 1; i < len(queued); i++ {
		if queued[i] != queued[i-1]+1 {
			t.Fatalf("bytes out of order at %d: %d after %d", i, queued[i], queued[i-1])
		}
	}
	w.mu.Unlock()
}

func TestForward(t *testing.T) {
	data := bytes.Repeat([]byte("forward "), streamBufferLimit/4)
	src := &source{Reader: bytes.NewReader(data)}
	k := &sink{}
	p := NewPending(func() {}, nil)
	go Forward(context.Background(), NewReadStream(src, func() {}), NewWriteStream(k, func() {}), p)
	<-p.Done()
	v, err := p.Result()
	require.NoError(t, err)
	assert.Nil(t, v)
	assert.Equal(t, data, k.buf.Bytes())
	assert.True(t, k.finished)
	assert.True(t, src.isClosed())
}

func TestForwardAbortsOnSourceError(t *testing.T) {
	pr, pw := io.Pipe()
	k := &sink{}
	p := NewPending(func() {}, nil)
	go Forward(context.Background(), NewReadStream(pr, func() {}), NewWriteStream(k, func() {}), p)
	pw.Write([]byte("part"))
	pw.CloseWithError(errors.New("upstream reset"))
	<-p.Done()
	_, err := p.Result()
	assert.ErrorContains(t, err, "upstream reset")
	k.mu.Lock()
	defer k.mu.Unlock()
	assert.ErrorContains(t, k.aborted, "upstream reset", "the destination is aborted before the result")
	assert.False(t, k.finished)
}

// TestForwardStopsWhenItsReaderGoes: a forward from a quiet source into a
// stream whose reader went away ends at once, closing the source, not at
// the source's next bytes.
func TestForwardStopsWhenItsReaderGoes(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	k := &sink{}
	dst := NewWriteStream(k, func() {})
	reader, leave := context.WithCancel(context.Background())
	dst.AbortWhenReaderGone(reader)
	p := NewPending(func() {}, nil)
	go Forward(context.Background(), NewReadStream(pr, func() {}), dst, p)
	leave()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the forward waited for its source")
	}
	_, err := p.Result()
	assert.ErrorIs(t, err, ErrReaderGone)
	assert.ErrorIs(t, dst.Wait(), ErrReaderGone)
	_, err = pw.Write([]byte("late"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "the source was closed")
}

func TestPending(t *testing.T) {
	wakes := NewSignal()
	canceled := false
	p := NewPending(wakes.Notify, func() { canceled = true })
	assert.True(t, p.Cancelable())
	assert.False(t, NewPending(func() {}, nil).Cancelable())
	assert.False(t, p.Ready())

	released := make(chan any, 1)
	p.Cancel(func(v any) { released <- v })
	assert.True(t, canceled)
	p.Resolve("late", nil)
	p.Resolve("later", errors.New("ignored"))
	assert.Equal(t, "late", <-released, "a value that arrives after Cancel is released")
	select {
	case <-wakes:
	default:
		t.Fatal("Resolve did not wake")
	}
	assert.True(t, p.Ready())
	v, err := p.Result()
	assert.NoError(t, err)
	assert.Equal(t, "late", v, "only the first Resolve counts")
}
