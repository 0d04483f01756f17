package objects

import (
	"context"
	"time"
)

// deliverAlarm runs the object's alarm as an event (Alarms calls
// it); done gets the outcome.
func (o *Objects) deliverAlarm(class, id string, retry int, done func(error)) error {
	ev := &objectEvent{kind: alarmEvent, ctx: context.Background(), retry: retry, reply: done}
	return o.dispatch(o.classes[class], id, ev, nil)
}

// alarmDue checks the object's own database before an alarm runs. If the
// alarm is there and due, it is deleted inside the event (so the handler can
// set a new one, and a failure restores it); otherwise the index is fixed
// and the event is skipped.
func (obj *Object) alarmDue(ev *objectEvent) bool {
	class, id := obj.ns.class, obj.id
	sched := obj.objs.alarms
	skip := func() bool {
		done := ev.reply
		ev.reply = func(error) { done(ErrAlarmSkipped) }
		return false
	}
	if obj.db == nil {
		if err := obj.activate(ev); err != nil {
			ev.finish(err)
			return false
		}
	}
	at, ok, err := obj.db.Alarm()
	switch {
	case err != nil:
		ev.finish(err)
		return false
	case !ok:
		sched.Remove(class, id)
		return skip()
	case at.After(time.Now()):
		sched.Set(class, id, at)
		return skip()
	}
	return true
}
