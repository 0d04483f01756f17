package objects

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"time"

	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/storage"
)

// What the host's imports read and set of the object an event is for.
// Only the object's own events call these.

// Class is the object's class name.
func (obj *Object) Class() string { return obj.ns.class }

// ID is the object's id, in hex.
func (obj *Object) ID() string { return obj.id }

// Name is the name the object's id was made from, if the host saw it.
func (obj *Object) Name() (string, bool) { return obj.ns.names.Name(obj.id) }

// DB is the object's storage; nil while it has none open.
func (obj *Object) DB() *storage.DB { return obj.db }

// PersistDir is where the object's persistent directories live on the
// host; deleting the object's storage removes it.
func (obj *Object) PersistDir() string { return filepath.Join(obj.ns.dir, "persist", obj.id) }

// Egress is the policy of the object's container; nil until SetEgress.
func (obj *Object) Egress() *containers.Policy { return obj.egress }

// SetEgress sets the policy of the object's container (made on first use).
func (obj *Object) SetEgress(p *containers.Policy) { obj.egress = p }

// StorageFailed logs that a storage call of the object failed with err,
// the host's fault (storage.HostFault): its client hears SQLite's words,
// the operator needs the file. Once while the object is live: each of its
// calls fails alike until the file is mended. A failure to open the file
// is logged as it happens (lazyDB).
func (obj *Object) StorageFailed(err error) {
	if errors.As(err, new(*storage.OpenError)) || !obj.storageFailed.CompareAndSwap(false, true) {
		return
	}
	obj.objs.logger.Error("an object's storage call failed: the database is damaged, or the disk failed or is full; its calls like it fail until that is mended",
		"class", obj.ns.class, "id", obj.id, "file", obj.storagePath(), "err", err)
}

// ScheduleAlarm puts the object's alarm at at in the alarm index (the
// object's own database holds the truth).
func (obj *Object) ScheduleAlarm(at time.Time) error {
	return obj.objs.alarms.Set(obj.ns.class, obj.id, at)
}

// SendFetch sends req to the object id of ns; resp gets its answer, or why
// there is none.
func (o *Objects) SendFetch(ns *Namespace, id string, req *http.Request, resp *Response) {
	if err := o.dispatch(ns, id, &objectEvent{kind: fetchEvent, ctx: req.Context(), req: req, resp: resp}, nil); err != nil {
		resp.release(err)
	}
}

// SendCall sends c to the object id of ns, as an event bounded by ctx; c
// gets its answer, or why there is none. A call made from an instance
// (from: nil otherwise) to an idle object is delivered to the object's
// instance at once, and its goroutine is woken only if the call writes,
// fails or outlasts its time (deliverNowLocked).
func (o *Objects) SendCall(ctx context.Context, ns *Namespace, id string, c *Call, from Caller) {
	if err := o.dispatch(ns, id, &objectEvent{kind: callEvent, ctx: ctx, call: c}, from); err != nil {
		c.resolve(err)
	}
}

// deliverNowLocked delivers ev to the object's instance at once, from the
// instance from (under its lock), if the object is idle, on a single host,
// and its instance's lock is free. Its run goroutine sleeps on: the
// instance finishes the call as it ends if it can (finishInline), else
// wakes the run goroutine to finish it like an event Chain delivered, as
// does the end of ev's time or of its instance. It runs under Objects.mu
// and mu, in dispatch.
func (obj *Object) deliverNowLocked(from Caller, ev *objectEvent) bool {
	o := obj.objs
	// While idle, the run goroutine touches none of inst, db and chainRoom.
	if !obj.idle || len(obj.queue) > 0 || obj.evictNow || obj.closeDB || o.cluster != nil ||
		obj.inst == nil || obj.db == nil || obj.db.NotDurable() {
		return false
	}
	unlock, ok := from.LockFor(obj.inst)
	if !ok {
		return false
	}
	defer unlock()
	obj.idle = false
	if obj.dbElem != nil { // busy now: not a database to close
		o.idleDBs.Remove(obj.dbElem)
		obj.dbElem = nil
	}
	obj.chainRoom = maxBatch - 1
	obj.deliverLocked(obj.inst, ev)
	ev.inline = true
	ev.stopWake = context.AfterFunc(ev.runCtx, obj.wakeup.Notify)
	return true
}

// Lost tells the object that its instance ended, failing its events there:
// the run goroutine, asleep perhaps since an event was delivered at once
// (deliverNowLocked), finishes them.
func (obj *Object) Lost() { obj.wakeup.Notify() }

// Class is the namespace of class, if the manifest binds it.
func (o *Objects) Class(class string) (*Namespace, bool) {
	ns, ok := o.classes[class]
	return ns, ok
}
