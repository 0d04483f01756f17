package host

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Alarms. The truth is each object's own database; the scheduler keeps an
// index (class, id, time) in one SQLite file so it knows, after a restart,
// which objects to wake without opening every database. The index is
// written before the object's commit, so it may name an alarm that was never
// committed or has moved; the object's database is checked before the alarm
// runs. Delivery is at least once: a failed alarm is retried with
// exponential backoff.

const (
	maxAlarmRetries = 6
	firstRetryDelay = time.Second
)

type alarmKey struct{ class, id string }

type alarmScheduler struct {
	objs *Objects
	db   *sql.DB

	mu      sync.Mutex
	due     map[alarmKey]time.Time
	retries map[alarmKey]int
	running map[alarmKey]bool
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup
}

func newAlarmScheduler(path string, objs *Objects) (*alarmScheduler, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=5000")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS alarms (class TEXT, id TEXT, at_ms INTEGER, PRIMARY KEY (class, id)) WITHOUT ROWID"); err != nil {
		db.Close()
		return nil, fmt.Errorf("alarm index %s: %w", path, err)
	}
	s := &alarmScheduler{objs: objs, db: db, due: map[alarmKey]time.Time{}, retries: map[alarmKey]int{}, running: map[alarmKey]bool{}}
	rows, err := db.Query("SELECT class, id, at_ms FROM alarms")
	if err != nil {
		db.Close()
		return nil, err
	}
	for rows.Next() {
		var k alarmKey
		var ms int64
		if err := rows.Scan(&k.class, &k.id, &ms); err == nil {
			if _, known := objs.classes[k.class]; known {
				s.due[k] = time.UnixMilli(ms)
			}
		}
	}
	rows.Close()
	return s, nil
}

// start begins delivering alarms, those already due first. Until then
// alarms are only recorded: the worker calls it once it has fully started
// (containers opened, images built), or an alarm due meanwhile would fail
// for want of what it needs and, after its retries, be dropped.
func (s *alarmScheduler) start() {
	s.mu.Lock() // fire may run before AfterFunc returns; reschedule waits for the timer
	defer s.mu.Unlock()
	if !s.closed {
		s.timer = time.AfterFunc(0, s.fire)
	}
}

// set records that the object's alarm is due at t.
func (s *alarmScheduler) set(k alarmKey, t time.Time) error {
	if _, err := s.db.Exec("INSERT INTO alarms (class, id, at_ms) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET at_ms = excluded.at_ms",
		k.class, k.id, t.UnixMilli()); err != nil {
		return err
	}
	s.mu.Lock()
	s.due[k] = t
	delete(s.retries, k)
	s.mu.Unlock()
	s.reschedule()
	return nil
}

// remove forgets the object's alarm.
func (s *alarmScheduler) remove(k alarmKey) {
	s.db.Exec("DELETE FROM alarms WHERE class = ? AND id = ?", k.class, k.id)
	s.mu.Lock()
	delete(s.due, k)
	delete(s.retries, k)
	s.mu.Unlock()
}

// reschedule arms the timer for the earliest alarm that is not running.
func (s *alarmScheduler) reschedule() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.timer == nil { // not started: start fires what is due
		return
	}
	var next time.Time
	for k, t := range s.due {
		if !s.running[k] && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if !next.IsZero() {
		s.timer.Reset(max(time.Until(next), 0))
	}
}

// fire delivers every alarm that is due.
func (s *alarmScheduler) fire() {
	now := time.Now()
	s.mu.Lock()
	var ready []alarmKey
	for k, t := range s.due {
		if !s.running[k] && !t.After(now) {
			s.running[k] = true
			ready = append(ready, k)
		}
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	for _, k := range ready {
		s.deliver(k)
	}
	s.reschedule()
}

func (s *alarmScheduler) deliver(k alarmKey) {
	s.mu.Lock()
	retry := s.retries[k]
	dueAt := s.due[k]
	s.mu.Unlock()
	ns := s.objs.classes[k.class]
	s.wg.Add(1)
	ev := &objectEvent{kind: alarmEvent, ctx: context.Background(), retry: retry}
	ev.reply = func(err error) {
		defer s.wg.Done()
		s.finished(k, dueAt, err)
	}
	if err := s.objs.dispatch(ns, k.id, ev); err != nil {
		s.wg.Done()
		s.mu.Lock()
		delete(s.running, k)
		s.mu.Unlock()
	}
}

// errAlarmSkipped marks an alarm event that found nothing due.
var errAlarmSkipped = errors.New("alarm not due")

// finished records an alarm's outcome: done, moved, or retried later.
func (s *alarmScheduler) finished(k alarmKey, dueAt time.Time, err error) {
	s.mu.Lock()
	delete(s.running, k)
	s.mu.Unlock()
	switch {
	case errors.Is(err, errAlarmSkipped):
		// The object's database says it moved or is gone; alarmDue fixed
		// the index.
	case err == nil:
		s.mu.Lock()
		again := !s.due[k].Equal(dueAt) // the handler set a new alarm
		s.mu.Unlock()
		if !again {
			s.remove(k)
		}
	default:
		s.mu.Lock()
		n := s.retries[k] + 1
		if n > maxAlarmRetries {
			s.mu.Unlock()
			s.objs.logger.Error("alarm failed too often; giving up", "class", k.class, "id", k.id, "retries", maxAlarmRetries, "err", err)
			s.remove(k)
			return
		}
		s.retries[k] = n
		s.due[k] = time.Now().Add(firstRetryDelay << (n - 1))
		s.mu.Unlock()
		s.objs.logger.Warn("alarm failed; retrying", "class", k.class, "id", k.id, "retry", n, "err", err)
	}
	s.reschedule()
}

func (s *alarmScheduler) close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.db.Close()
}

// alarmDue checks the object's own database before an alarm runs. If the
// alarm is there and due, it is deleted inside the event (so the handler can
// set a new one, and a failure restores it); otherwise the index is fixed
// and the event is skipped.
func (obj *object) alarmDue(ev *objectEvent) bool {
	k := alarmKey{obj.ns.class, obj.id}
	sched := obj.objs.alarms
	skip := func() bool {
		done := ev.reply
		ev.reply = func(error) { done(errAlarmSkipped) }
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
		sched.remove(k)
		return skip()
	case at.After(time.Now()):
		sched.set(k, at)
		return skip()
	}
	return true
}
