package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/plugins"
)

// instance is the host side of one long-running guest instance: its handle
// table, the events waiting to be read from its event descriptor, its wait
// descriptors and the events it is serving. mu guards all of it; every
// import runs under it, so host goroutines that post events or give up on
// them never race the guest.
type instance struct {
	plugin string
	base   *slog.Logger
	logs   *guestLogs // bounds what the guest logs
	run    *plugins.Instance
	// lastPanic is the last "panic: " or "fatal error: " line the guest
	// wrote: why its Go runtime ended the instance.
	lastPanic atomic.Value

	mu      sync.Mutex
	table   handleTable
	wakeup  signal
	scratch []byte // reused to encode heads
	// self is the scope of calls made outside any event (event handle 0).
	self *guest
	// classes and bindings are what the guest registered and said it uses
	// (sdk.GetNamespace) before it called serve.
	classes  []string
	bindings []string
	ready    chan struct{} // closed by serve
	serving  bool
	queue    []*delivery // posted, not yet read by the guest
	waits    map[uint32]*waitFD
	freeFDs  []uint32
	nextFD   uint32
	events   int // posted and not yet done
	objects  int // live objects placed here
	// drainAt is the linear memory size past which the instance is
	// drained and replaced; 0 never.
	drainAt  uint32
	memory   uint32 // linear memory size when the last event ended
	draining bool
	dead     bool
}

// guest is what an import acts for: one event, or the instance itself
// (self). Handles an event creates are released when it ends.
type guest struct {
	inst   *instance
	table  *handleTable
	handle abi.Handle // the event's handle; 0 for self and until it is read
	ctx    context.Context
	id     eventID
	logger *slog.Logger
	// object is the Durable Object the event is for; nil for a Worker event.
	object  *object
	lastErr string
	owned   []abi.Handle
	byKind  [16]int
	// done is closed when the event ends; status is then its outcome.
	done   chan struct{}
	ended  bool
	status error
}

// eventID names an event in logs: a per-host prefix and a counter.
type eventID struct {
	prefix string
	n      uint64
}

func (id eventID) String() string {
	if id.prefix == "" {
		return ""
	}
	return id.prefix + "-" + strconv.FormatUint(id.n, 10)
}

func newInstance(logs *guestLogs) *instance {
	in := &instance{plugin: logs.plugin, base: logs.base, logs: logs, wakeup: newSignal(),
		ready: make(chan struct{}), waits: map[uint32]*waitFD{}, nextFD: firstWaitFD}
	in.self = &guest{inst: in, table: &in.table, ctx: context.Background()}
	return in
}

// newEvent makes the scope of an event for obj (nil for the Worker).
func (in *instance) newEvent(ctx context.Context, id eventID, obj *object) *guest {
	return &guest{inst: in, table: &in.table, ctx: ctx, id: id, object: obj, done: make(chan struct{})}
}

func (g *guest) wake() { g.inst.wakeup.notify() }

// log returns the logger of the event, tagged with the plugin name and the
// request id; it is made on first use.
func (g *guest) log() *slog.Logger {
	if g.logger == nil {
		g.logger = g.inst.base.With("plugin", g.inst.plugin)
		if id := g.id.String(); id != "" {
			g.logger = g.logger.With("request_id", id)
		}
	}
	return g.logger
}

// add registers obj as a handle the event owns.
func (g *guest) add(kind abi.Kind, obj any) abi.Handle {
	h := g.table.add(kind, obj)
	g.table.slots[h.Index()].owner = g
	g.byKind[kind%16]++
	if g.done != nil {
		g.owned = append(g.owned, h)
	}
	return h
}

// end finishes the event (under inst.mu): it releases every handle the
// event left open (writable streams are finished cleanly unless the event
// failed, then aborted) and tells whoever waits.
func (g *guest) end(failure error) {
	if g.ended {
		return
	}
	g.ended = true
	g.status = failure
	g.release(g.toldAs(failure))
	if g.handle != 0 {
		g.table.remove(g.handle)
	}
	g.inst.events--
	close(g.done)
}

// release frees the handles g owns.
func (g *guest) release(failure error) {
	for _, h := range g.owned {
		if s, err := g.table.slot(h); err == nil && s.owner == g {
			_, obj, _ := g.table.remove(h)
			releaseObject(obj, failure)
		}
	}
	g.owned = nil
}

// objectScope is the scope of the event's object itself, for handles that
// outlive the event (a container monitor a constructor's goroutine waits
// on); they are released when the object leaves the instance.
func (g *guest) objectScope() *guest {
	obj := g.object
	if obj.scope == nil || obj.scope.inst != g.inst {
		obj.scope = &guest{inst: g.inst, table: g.table, ctx: context.Background(), object: obj, done: make(chan struct{})}
	}
	return obj.scope
}

// releaseObject frees what a handle held.
func releaseObject(obj any, failure error) {
	switch o := obj.(type) {
	case *readStream:
		o.close()
	case *writeStream:
		if failure != nil {
			o.abort(failure)
		} else {
			o.close()
		}
	case *pending:
		o.cancel()
	case *timer:
		o.stop()
	case *fetchedResponse:
		o.close()
	case *process:
		if !o.ready() { // an exec no event waits for any more
			go o.proc.Kill(context.Background(), syscall.SIGKILL)
		}
	}
}

// fail records err as the last error and returns its status.
func (g *guest) fail(err error) abi.Status {
	g.lastErr = err.Error()
	return statusOf(err)
}

// statusOf finds the abi.Status an error wraps; TIMEOUT for an event
// (such as a called object's) that exceeded its time limit; IO if none.
func statusOf(err error) abi.Status {
	var st abi.Status
	switch {
	case errors.As(err, &st):
	case errors.Is(err, plugins.ErrDeadline):
		st = abi.StatusTimeout
	default:
		st = abi.StatusIO
	}
	return st
}

// scope finds what a call with event handle h acts for.
func (in *instance) scope(h abi.Handle) (*guest, error) {
	if h == 0 {
		return in.self, nil
	}
	obj, err := in.table.lookup(h, abi.KindEvent)
	if err != nil {
		return nil, fmt.Errorf("%w: event %d is not being served (it ended, timed out or never existed)", abi.StatusBadHandle, h)
	}
	return obj.(*guest), nil
}

// pending is a result that arrives later: a fetch or a forward.
type pending struct {
	done     chan struct{}
	once     sync.Once
	value    any
	err      error
	cancelFn func()
	wake     func()
}

func newPending(wake func(), cancel func()) *pending {
	return &pending{done: make(chan struct{}), wake: wake, cancelFn: cancel}
}

func (p *pending) resolve(v any, err error) {
	p.once.Do(func() {
		p.value, p.err = v, err
		close(p.done)
		p.wake()
	})
}

// isFetch tells a fetch's pending result from a forward's: only a fetch can
// be canceled.
func (p *pending) isFetch() bool { return p.cancelFn != nil }

func (p *pending) ready() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cancel gives up on the result; a value that arrives anyway is released.
func (p *pending) cancel() {
	if p.cancelFn == nil {
		return
	}
	p.cancelFn()
	go func() {
		<-p.done
		if r, ok := p.value.(*fetchedResponse); ok {
			r.close()
		}
	}()
}
