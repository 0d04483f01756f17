package host

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
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
	table   guestio.Table[*guest]
	wakeup  guestio.Signal
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
	// drainAt is the linear memory size past which the instance is
	// drained and replaced; 0 never.
	drainAt uint32

	// What picking an instance for new work reads is read without mu
	// (and written under it): an import that blocks holds mu, and new
	// work must not wait for it, only work for this instance.
	events   atomic.Int64  // posted and not yet done
	objects  atomic.Int64  // live objects placed here
	memory   atomic.Uint64 // linear memory size when the last event ended
	draining atomic.Bool
	dead     atomic.Bool
	// served is set once an event ended on the instance: one that ends
	// without, soon after upAt (when it went into service), is failing on
	// its own (see instanceSet.supervise).
	served atomic.Bool
	upAt   time.Time
}

// guest is what an import acts for: one event, or the instance itself
// (self). Handles an event creates are released when it ends.
type guest struct {
	inst   *instance
	table  *guestio.Table[*guest]
	handle abi.Handle // the event's handle; 0 for self and until it is read
	ctx    context.Context
	id     guestio.EventID
	logger *slog.Logger
	// object is the Durable Object the event is for, on this instance; nil
	// for a Worker event.
	object *placement
	// chains marks an object event whose end may deliver the object's next
	// event (see objects.Object.Chain); storageEnded is set when its end
	// ended its storage event too.
	chains       bool
	storageEnded bool
	lastErr      string
	owned        []abi.Handle
	byKind       [16]int
	// execsStarting counts the execs whose results the event has not
	// taken yet: their processes count against its cap (reserveProcess).
	execsStarting atomic.Int32
	// done is closed when the event ends; status is then its outcome.
	done   chan struct{}
	ended  bool
	status error
}

func newInstance(logs *guestLogs) *instance {
	in := &instance{plugin: logs.plugin, base: logs.base, logs: logs, wakeup: guestio.NewSignal(),
		ready: make(chan struct{}), waits: map[uint32]*waitFD{}, nextFD: firstWaitFD}
	in.self = &guest{inst: in, table: &in.table, ctx: context.Background()}
	return in
}

// newEvent makes the scope of an event for obj (nil for the Worker).
func (in *instance) newEvent(ctx context.Context, id guestio.EventID, obj *placement) *guest {
	return &guest{inst: in, table: &in.table, ctx: ctx, id: id, object: obj, done: make(chan struct{})}
}

func (g *guest) wake() { g.inst.wakeup.Notify() }

// Keys of the attributes every guest log line carries.
const (
	pluginKey    = "plugin"
	requestIDKey = "request_id"
)

// Log returns the logger of the event, tagged with the plugin name and the
// request id; it is made on first use.
func (g *guest) Log() *slog.Logger {
	if g.logger == nil {
		g.logger = g.inst.base.With(pluginKey, g.inst.plugin)
		if id := g.id.String(); id != "" {
			g.logger = g.logger.With(requestIDKey, id)
		}
	}
	return g.logger
}

// add registers obj as a handle the event owns.
func (g *guest) add(kind abi.Kind, obj any) abi.Handle {
	h := g.table.Add(kind, obj, g)
	g.byKind[kind%16]++
	if g.done != nil {
		g.owned = append(g.owned, h)
	}
	return h
}

// Released counts a handle g owned of kind as released; the handle table
// calls it.
func (g *guest) Released(kind abi.Kind) { g.byKind[kind%16]-- }

// eventCap bounds the live handles of one kind an event owns at once
// (those it created; they are released when it ends): a pending
// fetch holds a socket, a stream a buffer, a process a process in a
// container.
type eventCap struct {
	max  int
	what string
}

// eventCaps are the caps by kind; a kind without one is bounded only by
// maxHandles.
var eventCaps = [...]eventCap{
	abi.KindPending:     {1000, "pending results (fetches, object calls, forwards, monitors)"},
	abi.KindReadStream:  {1000, "readable streams"},
	abi.KindWriteStream: {1000, "writable streams"},
	abi.KindProcess:     {64, "processes"},
}

// checkCap refuses one more handle of kind beyond its event cap.
func (g *guest) checkCap(kind abi.Kind) error {
	var starting int
	if kind == abi.KindProcess {
		starting = int(g.execsStarting.Load())
	}
	open := g.byKind[kind%16] + starting
	if int(kind) >= len(eventCaps) || eventCaps[kind].max == 0 || open < eventCaps[kind].max {
		return nil
	}
	c, state := eventCaps[kind], "open"
	if starting > 0 {
		state = "open or starting"
	}
	return fmt.Errorf("%w: %d %s are %s in this event, the limit is %d", abi.StatusTooLarge, open, c.what, state, c.max)
}

// reserveProcess counts an exec's process against the event's cap from
// the call until settle (which may be called more than once), so that
// results left untaken cannot go past the cap.
func (g *guest) reserveProcess() (settle func(), err error) {
	if err := g.checkCap(abi.KindProcess); err != nil {
		return nil, err
	}
	g.execsStarting.Add(1)
	return sync.OnceFunc(func() { g.execsStarting.Add(-1) }), nil
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
		g.table.Remove(g.handle)
	}
	g.inst.events.Add(-1)
	g.inst.served.Store(true)
	close(g.done)
}

// lose ends the event as its instance ended, without the guest (under
// inst.mu): whoever waits is told, and its object's goroutine, which may
// not be waiting for it (objects.Object.Lost).
func (g *guest) lose(status error) {
	g.ended, g.status = true, status
	close(g.done)
	if g.object != nil {
		g.object.obj.Lost()
	}
}

// release frees the handles g owns.
func (g *guest) release(failure error) {
	for _, h := range g.owned {
		if s, ok := g.table.Held(h); ok && s.Owner == g {
			_, obj, _ := g.table.Remove(h)
			releaseObject(obj, failure)
		}
	}
	g.owned = nil
}

// objectScope is the scope of the event's object itself, for handles that
// outlive the event (a container monitor a constructor's goroutine waits
// on); they are released when the object leaves the instance.
func (g *guest) objectScope() *guest {
	p := g.object
	if p.scope == nil {
		p.scope = &guest{inst: g.inst, table: g.table, ctx: context.Background(), object: p, done: make(chan struct{})}
	}
	return p.scope
}

// releaseObject frees what a handle held.
func releaseObject(obj any, failure error) {
	switch o := obj.(type) {
	case *guestio.ReadStream:
		o.Close()
	case *guestio.WriteStream:
		if failure != nil {
			o.Abort(failure)
		} else {
			o.Close()
		}
	case *guestio.Pending:
		o.Cancel(releaseLate)
	case *timer:
		o.stop()
	case *fetchedResponse:
		o.close()
	case *containers.Execution:
		o.Release()
	}
}

// releaseLate frees a result that arrives after its pending handle was
// given up on.
func releaseLate(v any) {
	switch r := v.(type) {
	case *fetchedResponse:
		r.close()
	case *outcome:
		r.release()
	}
}

// fail records err as the last error and returns its status.
func (g *guest) fail(err error) abi.Status {
	g.lastErr = lastErrorText(err)
	return guestio.StatusOf(err)
}

// maxLastError bounds the message last_error keeps: a message that
// quotes what a guest passed must not cost the host the guest's size
// again, kept with the event and logged with its failure.
const maxLastError = 4096

// lastErrorText is err's message, cut to maxLastError bytes at a rune's
// start and marked.
func lastErrorText(err error) string {
	msg := err.Error()
	if len(msg) <= maxLastError {
		return msg
	}
	cut := maxLastError
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + " …[truncated]"
}

// scope finds what a call with event handle h acts for.
func (in *instance) scope(h abi.Handle) (*guest, error) {
	if h == 0 {
		return in.self, nil
	}
	obj, err := in.table.Lookup(h, abi.KindEvent)
	if err != nil {
		return nil, fmt.Errorf("%w: event %d is not being served (it ended, timed out or never existed)", abi.StatusBadHandle, h)
	}
	return obj.(*guest), nil
}
