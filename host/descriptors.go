package host

import (
	"context"
	"fmt"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/plugins"
)

// Guest I/O: the descriptors a long-running instance waits on. Descriptor 3
// carries event records (abi.EventRecordSize bytes each); wait descriptors
// from 4 up become readable when one of the handles they watch is ready. So
// a goroutine of the guest parks in Go's netpoller, and the instance sleeps
// in poll_oneoff only when every goroutine waits: one armed descriptor for
// the event queue, one per goroutine waiting on the host, none per idle
// object.

const (
	eventFD     = 3
	firstWaitFD = 4
	// maxWaitFDs bounds an instance's wait descriptors (Go's wasip1
	// netpoller takes at most 65,535 at once).
	maxWaitFDs = 60000
)

// delivery is an event posted to an instance, waiting to be read.
type delivery struct {
	kind  abi.EventKind
	scope *guest // nil for EventDrop
	// obj is the object the event is for (or an EventDrop drops): its
	// value on this instance, so its handle (placement.ref) is this
	// instance's and, once made, never changes.
	obj *placement
	// arg is the Go value of the event's argument: an *incoming for fetch
	// and outbound, an *objects.Call for a call, the retry count for an
	// alarm.
	arg any
}

// waitFD is a wait descriptor: readable once one of its handles is ready
// or released.
type waitFD struct {
	handles []abi.Handle
}

// post queues d for the guest and wakes it.
func (in *instance) post(d *delivery) error {
	in.mu.Lock()
	if in.dead.Load() { // picked just before it ended: the caller delivers it elsewhere
		in.mu.Unlock()
		return fmt.Errorf("%w: %w", guestio.ErrNotStarted, in.run.Err())
	}
	in.postLocked(d)
	in.mu.Unlock()
	in.wakeup.Notify()
	return nil
}

// postLocked queues d under in.mu, without waking the guest: an import
// posting for the running guest, whose next read of the event descriptor
// finds it.
func (in *instance) postLocked(d *delivery) {
	in.queue = append(in.queue, d)
	if d.scope != nil {
		in.events.Add(1)
	}
}

// abandon ends an event whose caller gave up (deadline, client gone) if it
// has not ended: its handles are released and the guest's later calls for
// it are refused. It reports whether the event was still running.
func (in *instance) abandon(g *guest, why error) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if g.ended {
		return false
	}
	for i, d := range in.queue {
		if d.scope == g {
			in.queue = append(in.queue[:i], in.queue[i+1:]...)
			break
		}
	}
	g.end(why)
	return true
}

// Read serves the event descriptor and wait descriptors.
func (in *instance) Read(fd uint32, p []byte) (int, plugins.Errno) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if fd == eventFD {
		return in.readEvents(p)
	}
	w, ok := in.waits[fd]
	if !ok {
		return 0, plugins.ErrnoBadf
	}
	if !in.waitReady(w) {
		return 0, plugins.ErrnoAgain
	}
	p[0] = 1
	return 1, plugins.ErrnoSuccess
}

// readEvents turns queued deliveries into records.
func (in *instance) readEvents(p []byte) (int, plugins.Errno) {
	if len(p) < abi.EventRecordSize {
		return 0, plugins.ErrnoInval
	}
	if len(in.queue) == 0 {
		return 0, plugins.ErrnoAgain
	}
	n := 0
	for len(in.queue) > 0 && len(p)-n >= abi.EventRecordSize {
		d := in.queue[0]
		in.queue[0] = nil
		in.queue = in.queue[1:]
		in.record(d, p[n:n+abi.EventRecordSize])
		n += abi.EventRecordSize
	}
	return n, plugins.ErrnoSuccess
}

// takeCall takes the delivery of call c off the queue if it is the last
// one posted (an object_call of this instance to an idle object on it)
// and writes its record to rec, else leaves rec as it is: the calling
// goroutine runs the event at once, sparing the read of the event
// descriptor and two waits.
func (in *instance) takeCall(c *objects.Call, rec []byte) {
	n := len(in.queue)
	if n == 0 || in.queue[n-1].arg != any(c) {
		return
	}
	d := in.queue[n-1]
	in.queue[n-1] = nil
	in.queue = in.queue[:n-1]
	in.record(d, rec)
}

// record makes d's event record in rec: the event and its argument get
// handles now, on the instance's own goroutine.
func (in *instance) record(d *delivery, rec []byte) {
	r := abi.EventRecord{Kind: d.kind}
	if d.obj != nil {
		if d.obj.ref == 0 {
			d.obj.ref = in.self.add(abi.KindObject, d.obj)
		}
		r.Object = d.obj.ref
	}
	if g := d.scope; g != nil {
		r.Event = in.table.Add(abi.KindEvent, g, nil) // released last, by end
		g.handle = r.Event
		switch a := d.arg.(type) {
		case *incoming:
			r.Arg = uint32(g.add(abi.KindRequest, a))
		case *objects.Call:
			r.Arg = uint32(g.add(abi.KindCall, a))
		case int:
			r.Arg = uint32(a)
		}
	}
	if d.kind == abi.EventDrop {
		in.table.Remove(r.Object)
		if sc := d.obj.scope; sc != nil {
			sc.release(nil)
		}
	}
	r.Put(rec)
}

// waitReady reports whether one of w's handles is ready or gone.
func (in *instance) waitReady(w *waitFD) bool {
	for _, h := range w.handles {
		s, ok := in.table.Held(h)
		if !ok {
			return true // closed meanwhile: the guest's next call says so
		}
		if p, ok := s.Obj.(pollable); !ok || p.Ready() {
			return true
		}
	}
	return false
}

// Write refuses: no descriptor of a guest is writable.
func (in *instance) Write(uint32, []byte) (int, plugins.Errno) { return 0, plugins.ErrnoBadf }

// Close frees a wait descriptor.
func (in *instance) Close(fd uint32) plugins.Errno {
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.waits[fd]; !ok {
		return plugins.ErrnoBadf
	}
	delete(in.waits, fd)
	in.freeFDs = append(in.freeFDs, fd)
	return plugins.ErrnoSuccess
}

// Open reports whether fd is one of the instance's descriptors.
func (in *instance) Open(fd uint32) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.waits[fd]
	return ok || fd == eventFD && in.serving
}

// Ready reports, level-triggered, whether a read of fd would not block.
func (in *instance) Ready(fd uint32, write bool) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if write {
		return true
	}
	if fd == eventFD {
		return len(in.queue) > 0
	}
	w, ok := in.waits[fd]
	return !ok || in.waitReady(w)
}

// Wait blocks until something the guest waits on may have changed.
func (in *instance) Wait(ctx context.Context, timeout time.Duration) {
	plugins.WaitFor(ctx, in.wakeup, timeout)
}

// importWaitFD is wait_fd(handles, n, fd_out).
func importWaitFD(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	handles, err := pollHandles(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	in := g.inst
	if len(in.waits) >= maxWaitFDs {
		return fmt.Errorf("%w: %d goroutines wait on the host, the limit is %d", abi.StatusTooLarge, len(in.waits), maxWaitFDs)
	}
	fd := in.nextFD
	if n := len(in.freeFDs); n > 0 {
		fd, in.freeFDs = in.freeFDs[n-1], in.freeFDs[:n-1]
	} else {
		in.nextFD++
	}
	if err := writeU32(mem, u32(a[2]), fd); err != nil {
		in.freeFDs = append(in.freeFDs, fd)
		return err
	}
	in.waits[fd] = &waitFD{handles: handles}
	return nil
}

// importWaitRebind is wait_rebind(fd, handles, n).
func importWaitRebind(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	handles, err := pollHandles(g, mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	w, ok := g.inst.waits[u32(a[0])]
	if !ok {
		return fmt.Errorf("%w: %d is not an open wait descriptor", abi.StatusBadHandle, u32(a[0]))
	}
	w.handles = handles
	return nil
}

// importServe is serve(fd_out): the guest is initialised and reads events
// from then on.
func importServe(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	in := g.inst
	if in.serving {
		return fmt.Errorf("%w: serve was already called", abi.StatusInvalid)
	}
	if err := writeU32(mem, u32(a[0]), eventFD); err != nil {
		return err
	}
	in.serving = true
	close(in.ready)
	return nil
}

// importEventDone is event_done(status): the event g ended; non-zero means
// it failed.
func importEventDone(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if g == g.inst.self {
		return fmt.Errorf("%w: event_done needs an event handle", abi.StatusInvalid)
	}
	var failure error
	if st := int32(a[0]); st != 0 {
		failure = &guestStatus{status: st, detail: g.lastErr}
	}
	in := g.inst
	size := mem.Size()
	in.memory.Store(size)
	if in.drainAt > 0 && size > uint64(in.drainAt) && in.draining.CompareAndSwap(false, true) { // Wasm memory never shrinks: replace the instance
		in.base.Info("plugin instance grew past its drain threshold (3/4 of [limits] memory_mib); it takes no new work and is replaced once idle",
			pluginKey, in.plugin, "memory_bytes", size, "threshold_bytes", in.drainAt)
	}
	if g.chains {
		failure = g.object.obj.Chain(g, failure)
	}
	g.end(failure)
	return nil
}

// guestStatus is an event the guest ended with a non-zero status. The
// SDK's is 1, after logging why (a panic, the error of a constructor): its
// message leaves the number out.
type guestStatus struct {
	status int32
	detail string
}

func (e *guestStatus) Error() string {
	msg := "the plugin's code failed the event"
	if e.status != 1 {
		msg += fmt.Sprintf(" (status %d)", e.status)
	}
	if e.detail != "" {
		msg += "; its last failed host call said: " + e.detail
	}
	return msg
}
