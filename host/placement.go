package host

import (
	"context"
	"net/http"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
)

// The Durable Objects runtime (package objects) reaches the plugin's
// instances through objectRuntime: it places an object on the least loaded
// instance, delivers its events there and awaits them, and the instance
// chains the object's next event as the guest ends one (event_done). An
// object call from a guest to an idle object is posted to the object's
// instance by the calling import itself (instance.LockFor).

// objectRuntime is the plugin's instances as the objects see them
// (objects.Runtime).
type objectRuntime struct{ sets *currentSet }

// EventContext bounds an event by the current code's time limit.
func (r objectRuntime) EventContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return r.sets.Load().eventContext(ctx)
}

// Place counts obj on the least loaded instance of the current set.
func (r objectRuntime) Place(ctx context.Context, obj *objects.Object) (objects.Placement, error) {
	in, err := r.sets.pick(ctx, placeRank)
	if err != nil {
		return nil, err
	}
	in.objects.Add(1)
	return &placement{in: in, obj: obj}, nil
}

// Request is the fetch's request as the guest reads it (guest I/O).
func (objectRuntime) Request(resp *objects.Response, req *http.Request, streamed func() error) objects.Request {
	in := newIncoming(resp, req)
	in.streamed = streamed
	return in
}

// placement is an object's value on an instance (objects.Placement).
type placement struct {
	in  *instance
	obj *objects.Object
	// ref is the object's handle on in, made when the guest reads its
	// first event (guarded by in.mu); 0 until then.
	ref abi.Handle
	// scope owns the object's handles that outlive its events.
	scope *guest
}

// Alive reports whether the instance still takes work.
func (p *placement) Alive() bool { return p.in.alive() }

// NewEvent makes the scope of one of the object's events on the instance.
func (p *placement) NewEvent(ctx context.Context, id guestio.EventID, chains bool) objects.Event {
	g := p.in.newEvent(ctx, id, p)
	g.chains = chains
	return g
}

// Deliver posts ev to the instance and waits for it.
func (p *placement) Deliver(ctx context.Context, ev objects.Event, kind abi.EventKind, arg any) error {
	return p.in.deliver(ctx, ev.(*guest), kind, arg)
}

// Drop counts the object off the instance and, if the guest ever saw it,
// posts its drop. The handle is looked at under the instance's lock, which
// readEvents holds as it makes it: an abandoned event may still be read
// after the object let go.
func (p *placement) Drop() {
	p.in.mu.Lock()
	seen := p.ref != 0
	p.in.objects.Add(-1)
	p.in.mu.Unlock()
	if seen {
		p.in.post(&delivery{kind: abi.EventDrop, obj: p})
	}
}

// DrainingLocked reports whether the instance drains (under in.mu).
func (p *placement) DrainingLocked() bool { return p.in.draining.Load() }

// PostLocked queues ev for the guest (under in.mu, at event_done).
func (p *placement) PostLocked(ev objects.Event, kind abi.EventKind, arg any) {
	p.in.postLocked(&delivery{kind: kind, scope: ev.(*guest), obj: p, arg: arg})
}

// LockFor takes the lock of the instance the object's value p is on, for
// an object call made from in (under in.mu, in an import): nothing to
// take if it is in itself, else only if it is free, as two instances
// calling each other's objects must not wait for each other. It fails for
// an instance that drains or ended. unlock releases the lock taken and
// wakes that instance's guest (objects.Caller).
func (in *instance) LockFor(p objects.Placement) (unlock func(), ok bool) {
	pl, ok := p.(*placement)
	if !ok {
		return nil, false
	}
	to := pl.in
	if to == in {
		return func() {}, in.alive()
	}
	if !to.mu.TryLock() {
		return nil, false
	}
	if !to.alive() {
		to.mu.Unlock()
		return nil, false
	}
	return func() {
		to.mu.Unlock()
		to.wakeup.Notify()
	}, true
}

// An object event's scope is an objects.Event.

// Placement is the object value the event runs on.
func (g *guest) Placement() objects.Placement { return g.object }

// Await waits for the event (see instance.await).
func (g *guest) Await(ctx context.Context) error { return g.inst.await(ctx, g) }

// EndStorage records that the event's end ended its storage event.
func (g *guest) EndStorage() { g.storageEnded = true }

// StorageEnded reports whether EndStorage was called.
func (g *guest) StorageEnded() bool { return g.storageEnded }
