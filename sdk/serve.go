package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Serve ends the plugin's initialisation and serves events until the host
// stops the instance; it never returns. Call it at the end of main, after
// Handle, RegisterClass, HandleOutbound and GetNamespace (from main or from
// init functions):
//
//	func main() { sdk.Serve() }
//
// The main goroutine reads the host's events; each event runs on a
// goroutine of its own, so Worker requests and different objects are served
// concurrently, while the events of one object arrive one at a time.
func Serve() {
	fd, err := wharf.Serve()
	if err != nil {
		// The host's *Error says "wharf: " and its words, or without
		// words the import ("serve: ") and what its status means.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	events := bufio.NewReaderSize(os.NewFile(uintptr(fd), "wharf-events"), 64*abi.EventRecordSize)
	var rec [abi.EventRecordSize]byte
	for {
		if _, err := io.ReadFull(events, rec[:]); err != nil {
			if errors.Is(err, io.EOF) { // the host is done with this instance
				os.Exit(0)
			}
			fmt.Fprintln(os.Stderr, "wharf: reading events:", err)
			os.Exit(2)
		}
		e := eventOfRecord(rec[:])
		if e.kind == abi.EventDrop { // nothing to answer
			if o, ok := objects.LoadAndDelete(e.object); ok {
				o.(*object).state.Container.evicted()
			}
			continue
		}
		dispatch(e)
	}
}

// Events run on goroutines that are kept for the next event: a new
// goroutine's stack starts at 2 KiB and is copied each time it doubles,
// which cost about a fifth of a guest's CPU when every event started one.

// maxIdleRunners bounds the goroutines kept waiting for an event (each
// keeps its grown stack).
const maxIdleRunners = 64

var (
	nextEvent   = make(chan event) // to a runner waiting for one
	idleRunners atomic.Int32       // runners waiting on nextEvent
)

// dispatch runs e on an idle runner, or on a new one if none waits.
func dispatch(e event) {
	select {
	case nextEvent <- e:
	default:
		go runEvents(e)
	}
}

// runEvents runs e, then the events dispatch hands it, until enough other
// runners are idle.
func runEvents(e event) {
	for {
		e.run()
		if idleRunners.Add(1) > maxIdleRunners {
			idleRunners.Add(-1)
			return
		}
		e = <-nextEvent
		idleRunners.Add(-1)
	}
}

// event is one record of the event descriptor.
type event struct {
	kind   abi.EventKind
	ev     wharf.Event
	object uint32 // 0 for a Worker event
	arg    uint32
}

// eventOfRecord decodes an event record.
func eventOfRecord(rec []byte) event {
	r := abi.ParseEventRecord(rec)
	return event{kind: r.Kind, ev: wharf.Event(r.Event), object: uint32(r.Object), arg: r.Arg}
}

// run serves the event and ends it with its status. A panic that escapes
// the handlers still ends the event, as failed.
func (e event) run() {
	status := int32(1)
	defer func() {
		if p := recover(); p != nil {
			e.ev.Log(abi.LogError, fmt.Sprintf("panic serving event: %v\n%s", p, debug.Stack()))
		}
		// An error means the host ended the event already (a client that
		// left, a deadline) and has logged why: nothing is left to do.
		e.ev.Done(status)
	}()
	switch {
	case e.kind == abi.EventOutbound: // from a container, for the Worker
		status = serveRequest(e.ev, e.arg, outboundHandler)
	case e.kind == abi.EventFetch && e.object == 0:
		status = serveRequest(e.ev, e.arg, func(*http.Request) http.Handler { return handler })
	case e.kind == abi.EventConstruct:
		status = construct(e.ev, e.object)
	case e.object == 0:
		e.ev.Log(abi.LogError, fmt.Sprintf("unknown event kind %d for the Worker", e.kind))
	default:
		status = e.forObject()
	}
}

// forObject serves an event of a live object: a fetch, a call or an alarm.
func (e event) forObject() int32 {
	v, ok := objects.Load(e.object)
	if !ok {
		e.ev.Log(abi.LogError, fmt.Sprintf("event %d for object %d, which is not live in this instance", e.kind, e.object))
		return 1
	}
	o := v.(*object)
	o.ev.Store(uint32(e.ev))
	defer o.ev.Store(0) // calls from goroutines left running are refused, not misattributed
	switch e.kind {
	case abi.EventFetch:
		return serveRequest(e.ev, e.arg, func(*http.Request) http.Handler { return o.handler() })
	case abi.EventCall:
		return o.call(e.arg)
	case abi.EventAlarm:
		return o.alarm(int(e.arg))
	}
	e.ev.Log(abi.LogError, fmt.Sprintf("unknown event kind %d for an object", e.kind))
	return 1
}

// objects holds the live Durable Objects of this instance by object handle.
var objects sync.Map // uint32 → *object

// object is a live Durable Object: its value and the event it is serving.
type object struct {
	handle uint32
	// ev is the event being served, 0 between events. Every call the
	// object's storage, container and the like make passes it: the host
	// acts only for an object's current event.
	ev    atomic.Uint32
	state *ObjectState
	value any
}

// event is the event the object serves now.
func (o *object) event() wharf.Event {
	if o == nil {
		return 0
	}
	return wharf.Event(o.ev.Load())
}

// current is the event the object serves now, for a storage, alarm or
// container call; between its events (a goroutine an event started, still
// running after it), ErrEventOver.
func (o *object) current() (wharf.Event, error) {
	if ev := o.event(); ev != 0 {
		return ev, nil
	}
	return 0, ErrEventOver
}

// outlived returns err, or ErrEventOver when err is the host refusing ev
// because that event has ended since the call began (a transaction a
// goroutine commits after its event, say).
func (o *object) outlived(ev wharf.Event, err error) error {
	if errors.Is(err, abi.StatusBadHandle) && o.event() != ev {
		return ErrEventOver
	}
	return err
}

// log logs on behalf of the object's current event.
func (o *object) log(level int32, msg string) { o.event().Log(level, msg) }

// eventKey carries the event a request is served for in its context.
type eventKey struct{}

// withEvent returns ctx carrying ev.
func withEvent(ctx context.Context, ev wharf.Event) context.Context {
	return context.WithValue(ctx, eventKey{}, ev)
}

// eventOf returns the event ctx carries, or 0 (the instance itself).
func eventOf(ctx context.Context) wharf.Event {
	if ctx == nil {
		return 0
	}
	ev, _ := ctx.Value(eventKey{}).(wharf.Event)
	return ev
}
