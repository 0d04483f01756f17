package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/internal/textlog"
	"github.com/wharfhq/wharf/plugins"
)

// importFunc implements one wharf import. It returns nil for StatusOK, an
// abi.Status, or an error wrapping one whose text becomes last_error.
type importFunc func(ctx context.Context, g *guest, mem plugins.Memory, args []uint64) error

var (
	i32 = plugins.I32
	i64 = plugins.I64
)

// hostFunc adapts an importFunc to the engine. Every import's first
// parameter is the event it acts for (0: the instance itself); hostFunc
// finds that scope under the instance's lock, runs fn with the remaining
// arguments and stores the status as the function's single i32 result.
func hostFunc(name string, ps []plugins.ValueType, fn importFunc) plugins.HostFunc {
	return plugins.HostFunc{
		Name: name, Params: append([]plugins.ValueType{i32}, ps...), Results: []plugins.ValueType{i32},
		Fn: func(ctx context.Context, c plugins.Caller, stack []uint64) {
			in := c.Data().(*instance)
			in.mu.Lock()
			defer in.mu.Unlock()
			g, err := in.scope(handleArg(stack[0]))
			if err != nil && name == abi.ImportLastError {
				g, err = in.self, nil // a call for an ended event left its message there
			}
			if err == nil {
				select {
				case <-g.ctx.Done(): // the event is over: refuse to act on its behalf
					err = fmt.Errorf("%w: %w", abi.StatusTimeout, context.Cause(g.ctx))
				default:
					err = fn(g.ctx, g, c.Memory(), stack[1:])
				}
			}
			switch {
			case err == nil:
				stack[0] = 0
			case g == nil:
				in.self.lastErr = lastErrorText(err)
				stack[0] = uint64(uint32(guestio.StatusOf(err)))
			case name == abi.ImportLastError: // keep the message being asked for
				stack[0] = uint64(uint32(guestio.StatusOf(err)))
			default:
				stack[0] = uint64(uint32(g.fail(err)))
			}
		},
	}
}

func params(ts ...plugins.ValueType) []plugins.ValueType { return ts }

// Imports returns the wharf host functions backed by services s.
func (s *services) imports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportLastError, params(i32, i32, i32), importLastError),
		hostFunc(abi.ImportLog, params(i32, i32, i32), importLog),
		hostFunc(abi.ImportLogRecord, params(i32, i32, i32), importLogRecord),
		hostFunc(abi.ImportRequestHead, params(i32, i32, i32, i32), importRequestHead),
		hostFunc(abi.ImportRequestBody, params(i32, i32), importRequestBody),
		hostFunc(abi.ImportResponseSend, params(i32, i32, i32, i32, i32, i32, i32), importResponseSend),
		hostFunc(abi.ImportStreamRead, params(i32, i32, i32, i32, i32), importStreamRead),
		hostFunc(abi.ImportStreamWrite, params(i32, i32, i32, i32, i32), importStreamWrite),
		hostFunc(abi.ImportStreamAbort, params(i32, i32, i32), importStreamAbort),
		hostFunc(abi.ImportForward, params(i32, i32, i32), s.importForward),
		hostFunc(abi.ImportPoll, params(i32, i32, i64, i32, i32), importPoll),
		hostFunc(abi.ImportWaitFD, params(i32, i32, i32), importWaitFD),
		hostFunc(abi.ImportWaitRebind, params(i32, i32, i32), importWaitRebind),
		hostFunc(abi.ImportServe, params(i32), importServe),
		hostFunc(abi.ImportEventDone, params(i32), importEventDone),
		hostFunc(abi.ImportTimerStart, params(i64, i32), importTimerStart),
		hostFunc(abi.ImportClose, params(i32), importClose),
		hostFunc(abi.ImportFetch, params(i32, i32, i32, i32, i32), s.importFetch),
		hostFunc(abi.ImportFetchResult, params(i32, i32), importFetchResult),
		hostFunc(abi.ImportResponseHead, params(i32, i32, i32, i32), importResponseHead),
		hostFunc(abi.ImportResponseBody, params(i32, i32), importResponseBody),
	}
}

// Memory helpers. Every pointer and length from a guest is checked; a bad
// one is StatusFault, never a host panic.

func u32(v uint64) uint32 { return uint32(v) }

func handleArg(v uint64) abi.Handle { return abi.Handle(uint32(v)) }

func readMem(mem plugins.Memory, ptr, n uint32) ([]byte, error) {
	b, ok := mem.Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("%w: range [%d, %d+%d) is outside guest memory (%d bytes)", abi.StatusFault, ptr, ptr, n, mem.Size())
	}
	return b, nil
}

// readCopy is readMem's bytes copied, for work that outlives the call
// (the view changes as soon as the guest runs again).
func readCopy(mem plugins.Memory, ptr, n uint32) ([]byte, error) {
	b, err := readMem(mem, ptr, n)
	return bytes.Clone(b), err
}

func writeU32(mem plugins.Memory, ptr, v uint32) error {
	if !mem.WriteUint32(ptr, v) {
		return fmt.Errorf("%w: output pointer %d is outside guest memory (%d bytes)", abi.StatusFault, ptr, mem.Size())
	}
	return nil
}

// writeOut copies data to (ptr, cap) and its length to nOut. If cap is too
// small nothing is copied, nOut gets the size needed and the status is
// StatusBufferSmall.
func writeOut(mem plugins.Memory, ptr, cap, nOut uint32, data []byte) error {
	if err := writeU32(mem, nOut, uint32(len(data))); err != nil {
		return err
	}
	if uint32(len(data)) > cap {
		return fmt.Errorf("%w: need %d bytes, buffer has %d", abi.StatusBufferSmall, len(data), cap)
	}
	if len(data) > 0 && !mem.Write(ptr, data) {
		return fmt.Errorf("%w: buffer [%d, %d+%d) is outside guest memory", abi.StatusFault, ptr, ptr, len(data))
	}
	return nil
}

// maxHandles bounds the handles one instance may hold open at once.
const maxHandles = 1 << 16

// newHandle registers obj and writes its handle to out. If out is a bad
// pointer or the table is full the object is released again.
func (g *guest) newHandle(mem plugins.Memory, out uint32, kind abi.Kind, obj any) error {
	h, err := g.openHandle(kind, obj)
	if err != nil {
		return err
	}
	if err := writeU32(mem, out, uint32(h)); err != nil {
		g.table.Remove(h)
		releaseObject(obj, err)
		return err
	}
	return nil
}

// openHandle registers obj as a handle of the event, within its caps; if
// a cap is reached the object is released again.
func (g *guest) openHandle(kind abi.Kind, obj any) (abi.Handle, error) {
	err := g.checkCap(kind)
	if err == nil && g.table.Live() >= maxHandles {
		err = fmt.Errorf("%w: %d handles are open, the limit is %d", abi.StatusTooLarge, g.table.Live(), maxHandles)
	}
	if err != nil {
		releaseObject(obj, err)
		return 0, err
	}
	return g.add(kind, obj), nil
}

func importLastError(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	return writeOut(mem, u32(a[0]), u32(a[1]), u32(a[2]), []byte(g.lastErr))
}

func importLog(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	msg, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	// A panic's trace (the SDK writes it after the message) becomes an
	// attribute, which the text log prints on lines of its own.
	var attrs []any
	if first, trace, ok := bytes.Cut(msg, []byte("\n")); ok && bytes.HasPrefix(trace, []byte("goroutine ")) {
		msg, attrs = first, []any{textlog.StackKey, g.inst.logs.cut(trace)}
	}
	g.inst.logs.emit(g.Log(), slog.Level(int32(a[0])), msg, attrs...)
	return nil
}

// importLogRecord is log_record(level, list, len): a field list of the
// message, then the record's attributes, logged as attributes of the line.
func importLogRecord(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	list, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	msg, attrs, err := g.inst.logs.record(list)
	if err != nil {
		return err
	}
	g.inst.logs.emit(g.Log(), slog.Level(int32(a[0])), msg, attrs...)
	return nil
}

func importStreamRead(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindReadStream)
	if err != nil {
		return err
	}
	buf, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[4]), 0); err != nil {
		return err
	}
	if len(buf) == 0 {
		return fmt.Errorf("%w: read buffer has length 0", abi.StatusInvalid)
	}
	rs := obj.(*guestio.ReadStream)
	if b, ok := rs.Source().(upgradeBody); ok {
		b.readByGuest()
	}
	n, err := rs.Read(ctx, buf, true) // never blocks the instance: wait with wait_fd
	if n > 0 {
		return writeU32(mem, u32(a[4]), uint32(n))
	}
	return err
}

func importStreamWrite(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindWriteStream)
	if err != nil {
		return err
	}
	data, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[4]), 0); err != nil {
		return err
	}
	n, werr := obj.(*guestio.WriteStream).Write(ctx, data, true) // never blocks the instance: wait with wait_fd
	if err := writeU32(mem, u32(a[4]), uint32(n)); err != nil {
		return err
	}
	return werr
}

func importStreamAbort(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	msg, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	h := handleArg(a[0])
	s, err := g.table.Get(h)
	if err != nil {
		return err
	}
	reason := errors.New(string(msg))
	switch o := s.Obj.(type) {
	case *guestio.WriteStream:
		o.Abort(reason)
	case *guestio.ReadStream:
		o.Close()
	default:
		return fmt.Errorf("%w: handle %d is a %s, not a stream", abi.StatusBadHandle, h, s.Kind)
	}
	g.table.Remove(h)
	return nil
}

func (s *services) importForward(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	srcH, dstH := handleArg(a[0]), handleArg(a[1])
	src, err := g.table.Lookup(srcH, abi.KindReadStream)
	if err != nil {
		return err
	}
	dst, err := g.table.Lookup(dstH, abi.KindWriteStream)
	if err != nil {
		return err
	}
	p := guestio.NewPending(g.wake, nil)
	if err := g.newHandle(mem, u32(a[2]), abi.KindPending, p); err != nil {
		return err
	}
	g.table.Remove(srcH)
	g.table.Remove(dstH)
	go guestio.Forward(s.base, src.(*guestio.ReadStream), dst.(*guestio.WriteStream), p)
	return nil
}

// pollable is an object poll can wait on.
type pollable interface{ Ready() bool }

// importPoll is poll(handles, n, timeout, ready_out, n_out): which of the
// handles are ready now. Only timeout 0 is accepted: a guest waits with
// wait_fd, which parks one goroutine instead of the whole instance.
func importPoll(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if timeout := int64(a[2]); timeout != 0 {
		return fmt.Errorf("%w: poll only checks (timeout 0, not %d): wait with %s", abi.StatusInvalid, timeout, abi.ImportWaitFD)
	}
	readyPtr, nOut := u32(a[3]), u32(a[4])
	handles, err := pollHandles(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	if _, err := readMem(mem, readyPtr, 4*uint32(len(handles))); err != nil {
		return err
	}
	ready := uint32(0)
	for _, h := range handles {
		s, _ := g.table.Held(h)
		if s.Obj.(pollable).Ready() {
			mem.WriteUint32(readyPtr+4*ready, uint32(h))
			ready++
		}
	}
	return writeU32(mem, nOut, ready)
}

// pollHandles reads n handles at ptr and checks each can be polled.
func pollHandles(g *guest, mem plugins.Memory, ptr, n uint32) ([]abi.Handle, error) {
	if n > abi.MaxPollHandles {
		return nil, fmt.Errorf("%w: poll on %d handles, the limit is %d", abi.StatusTooLarge, n, abi.MaxPollHandles)
	}
	raw, err := readMem(mem, ptr, 4*n)
	if err != nil {
		return nil, err
	}
	handles := make([]abi.Handle, n)
	for i := range handles {
		handles[i] = abi.Handle(binary.LittleEndian.Uint32(raw[4*i:]))
		s, err := g.table.Get(handles[i])
		if err != nil {
			return nil, err
		}
		if _, ok := s.Obj.(pollable); !ok {
			return nil, fmt.Errorf("%w: handle %d is a %s, which cannot be polled", abi.StatusBadHandle, handles[i], s.Kind)
		}
	}
	return handles, nil
}

// timer becomes ready when it fires.
type timer struct {
	t     *time.Timer
	fired chan struct{}
}

// Ready reports whether the timer has fired.
func (t *timer) Ready() bool {
	select {
	case <-t.fired:
		return true
	default:
		return false
	}
}

func (t *timer) stop() { t.t.Stop() }

func importTimerStart(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	d := time.Duration(int64(a[0]))
	if d < 0 {
		return fmt.Errorf("%w: negative timer duration %d ns", abi.StatusInvalid, d)
	}
	t := &timer{fired: make(chan struct{})}
	wake := g.wake
	t.t = time.AfterFunc(d, func() { close(t.fired); wake() })
	return g.newHandle(mem, u32(a[1]), abi.KindTimer, t)
}

func importClose(_ context.Context, g *guest, _ plugins.Memory, a []uint64) error {
	h := handleArg(a[0])
	if s, ok := g.table.Held(h); ok && (s.Kind == abi.KindEvent || s.Kind == abi.KindObject) {
		return fmt.Errorf("%w: handle %d is an %s, which the host ends (event_done ends an event)", abi.StatusBadHandle, h, s.Kind)
	}
	_, obj, err := g.table.Remove(h)
	if err != nil {
		return err
	}
	releaseObject(obj, nil)
	return nil
}
