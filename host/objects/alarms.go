package objects

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3" // the index's database
)

// Alarms. The truth is each object's own database; the scheduler keeps an
// index (class, id, time) in one SQLite file so it knows, after a restart,
// which objects to wake without opening every database. The index is
// written before the object's commit, so it may name an alarm that was never
// committed or has moved; the object's database is checked before the alarm
// runs. Delivery is at least once: a failed alarm is retried with
// exponential backoff, unless another event of the object sets its alarm
// meanwhile: that alarm replaces the retry, due at its own time with a
// count of 0 (as in the reference, where setAlarm replaces the one alarm an
// object has). One deleted meanwhile finds nothing in the database when its
// retry fires, and is not delivered.

const (
	maxAlarmRetries = 6
	firstRetryDelay = time.Second
)

type alarmKey struct{ class, id string }

// Alarms is the alarm index and scheduler of a Worker's objects.
type Alarms struct {
	deliver func(class, id string, retry int, done func(error)) error
	logger  *slog.Logger
	db      *sql.DB

	// indexMu makes each index write one step with the memory it matches:
	// an alarm set while the last one's success is recorded must not be
	// removed by it, from memory or from the index.
	indexMu sync.Mutex
	mu      sync.Mutex
	due     map[alarmKey]time.Time
	// sets numbers each object's latest Set (from setSeq): an alarm set
	// while the last one ran moved it, even to the very same time.
	sets   map[alarmKey]uint64
	setSeq uint64
	// since is, for each running alarm, the number in sets its outcome
	// compares with: the latest Set when it was delivered, or when its
	// failed event's writes were undone (undone), which undid its
	// handler's Sets too.
	since   map[alarmKey]uint64
	retries map[alarmKey]int
	running map[alarmKey]bool
	// waiting orders the alarms of due that are not running by time
	// (queueLocked keeps it so): the timer is armed for its first.
	waiting alarmQueue
	timer   *time.Timer
	closed  bool
	wg      sync.WaitGroup
}

// OpenAlarms opens the alarm index at path, keeping the alarms of the
// classes known accepts. deliver runs an object's alarm (retry is how many
// times it failed before) and calls done with its outcome, unless it
// returns an error: then nothing was delivered. An index that cannot be
// read whole (damaged partway, a row that is not an alarm) is an error.
func OpenAlarms(path string, known func(class string) bool, deliver func(class, id string, retry int, done func(error)) error, logger *slog.Logger) (*Alarms, error) {
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
	s := &Alarms{deliver: deliver, logger: logger, db: db, due: map[alarmKey]time.Time{}, sets: map[alarmKey]uint64{}, since: map[alarmKey]uint64{}, retries: map[alarmKey]int{}, running: map[alarmKey]bool{}}
	if err := s.load(known); err != nil {
		db.Close()
		return nil, fmt.Errorf("alarm index %s: reading its alarms: %w", path, err)
	}
	return s, nil
}

// errBadAlarmRow is a row of the alarm index that is not an alarm (a
// NULL, a time that is not a number): the index is damaged.
var errBadAlarmRow = errors.New("a row is not an alarm")

// load reads the index's alarms of the classes known accepts. A read that
// fails partway (a damaged page) or a row that is not an alarm fails it:
// the alarms after it would be dropped without a word.
func (s *Alarms) load(known func(class string) bool) error {
	rows, err := s.db.Query("SELECT class, id, at_ms FROM alarms")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k alarmKey
		var ms int64
		if err := rows.Scan(&k.class, &k.id, &ms); err != nil {
			return fmt.Errorf("%w: %w", errBadAlarmRow, err)
		}
		if known(k.class) {
			s.due[k] = time.UnixMilli(ms)
			s.queueLocked(k)
		}
	}
	return rows.Err()
}

// openAlarmIndex is OpenAlarms for a single host, whose objects' databases
// under namespaces are the truth the index is kept from: an index that is
// missing, empty (SQLite would open it as a new one) or damaged, at its
// start or partway through its rows (moved aside, with its WAL, to
// path.damaged-<time>) is rebuilt from them, so
// that their alarms still fire, and the rebuild is logged. A database it
// cannot read is logged: its alarm fires once its object sets one again.
func openAlarmIndex(path string, namespaces map[string]*Namespace, known func(class string) bool, deliver func(class, id string, retry int, done func(error)) error, logger *slog.Logger) (*Alarms, error) {
	companions := []string{"", "-wal", "-shm"}
	rebuild := false
	why := "missing"
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, fs.ErrNotExist):
		rebuild = true
	case err != nil:
		return nil, fmt.Errorf("alarm index %s: %w", path, err)
	case fi.Mode().IsRegular() && fi.Size() == 0:
		rebuild, why = true, "empty"
		for _, c := range companions { // a WAL beside it would be replayed into the new one
			if err := os.Remove(path + c); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("alarm index %s: %w", path, err)
			}
		}
	}
	s, err := OpenAlarms(path, known, deliver, logger)
	var se sqlite3.Error
	if err != nil && !rebuild && (errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) || errors.Is(err, errBadAlarmRow)) {
		aside := fmt.Sprintf("%s.damaged-%d", path, time.Now().Unix())
		for _, c := range companions {
			if rerr := os.Rename(path+c, aside+c); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return nil, fmt.Errorf("alarm index %s is damaged (%w), and could not be moved aside: %w", path, err, rerr)
			}
		}
		logger.Warn("the alarm index is damaged: moved aside, and rebuilt from the objects' databases", "file", path, "aside", aside, "err", err)
		rebuild, why = true, "damaged"
		s, err = OpenAlarms(path, known, deliver, logger)
	}
	if err != nil || !rebuild {
		return s, err
	}
	start := time.Now()
	databases, alarms, err := s.rebuild(namespaces, logger)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("alarm index %s: rebuilding it: %w", path, err)
	}
	if databases > 0 || why != "missing" {
		logger.Info("rebuilt the alarm index from the objects' databases", "file", path, "was", why, "databases", databases, "alarms", alarms, "took", time.Since(start).Round(time.Millisecond))
	}
	return s, nil
}

// rebuild puts in the index the alarm each object's database under
// namespaces holds, and says how many databases it read and how many
// alarms it found. A database that cannot be read is logged and passed
// over; a write to the index that fails ends it.
func (s *Alarms) rebuild(namespaces map[string]*Namespace, logger *slog.Logger) (databases, alarms int, err error) {
	for class, ns := range namespaces {
		files, err := filepath.Glob(filepath.Join(ns.dir, "*.sqlite"))
		if err != nil {
			return databases, alarms, err
		}
		for _, f := range files {
			if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
				continue // not a database an object opens (see storage.ErrEmptyFile)
			}
			databases++
			found, err := s.indexStored(class, f, "rebuilding the alarm index", logger)
			if err != nil {
				return databases, alarms, err
			}
			if found {
				alarms++
			}
		}
	}
	return databases, alarms, nil
}

// restore puts in the index the alarm each object database in files
// holds (by path, as storage.Recovery names them), of a class under
// namespaces. A start calls it for the databases whose latest commits a
// crash dropped or --accept-lost-commits gave up: brought back to an
// earlier commit, one may hold again an alarm the index no longer has (it
// ran, and its success removed the entry), which would never fire. An
// entry whose database lacks its alarm needs nothing: alarmDue finds that
// out when it fires. A failed write to the index is returned.
func (s *Alarms) restore(files []string, namespaces map[string]*Namespace, logger *slog.Logger) error {
	for _, f := range files {
		dir := filepath.Dir(f)
		class := filepath.Base(dir)
		if ns := namespaces[class]; ns == nil || filepath.Clean(ns.dir) != dir {
			continue
		}
		if _, err := s.indexStored(class, f, "restoring the alarm of an object brought back to an earlier commit", logger); err != nil {
			return err
		}
	}
	return nil
}

// indexStored puts in the index the alarm the database f of an object of
// class holds, if it holds one, and says whether it did. A database that
// cannot be read is logged, saying what was being done, and passed over; a
// failed write to the index is returned.
func (s *Alarms) indexStored(class, f, doing string, logger *slog.Logger) (bool, error) {
	at, ok, err := storedAlarm(f)
	if err != nil {
		logger.Warn(doing+": an object's database could not be read; its alarm, if it has one, fires once the object sets one again", "class", class, "file", f, "err", err)
		return false, nil
	}
	if !ok {
		return false, nil
	}
	k := alarmKey{class, strings.TrimSuffix(filepath.Base(f), ".sqlite")}
	if err := s.index(k, time.UnixMilli(at)); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.due[k] = time.UnixMilli(at)
	s.queueLocked(k)
	s.mu.Unlock()
	return true, nil
}

// storedAlarm reads the alarm of the object database at path (in
// milliseconds), opening it as a start's replay of the commit log does:
// SQLite recovers a WAL left beside it, and checkpoints it as it closes.
func storedAlarm(path string) (atMs int64, ok bool, err error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=rw")
	if err != nil {
		return 0, false, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	db.SetMaxOpenConns(1)
	err = db.QueryRow("SELECT at_ms FROM _wharf_alarm WHERE id = 1").Scan(&atMs)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return atMs, err == nil, err
}

// Start begins delivering alarms, those already due first. Until then
// alarms are only recorded: the worker calls it once it has fully started
// (containers opened, images built), or an alarm due meanwhile would fail
// for want of what it needs and, after its retries, be dropped.
func (s *Alarms) Start() {
	s.mu.Lock() // fire may run before AfterFunc returns; reschedule waits for the timer
	defer s.mu.Unlock()
	if !s.closed {
		s.timer = time.AfterFunc(0, s.fire)
	}
}

// Set records that the object's alarm is due at t.
func (s *Alarms) Set(class, id string, t time.Time) error {
	k := alarmKey{class, id}
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if err := s.index(k, t); err != nil {
		return err
	}
	s.mu.Lock()
	s.due[k] = t
	s.setSeq++
	s.sets[k] = s.setSeq
	if !s.running[k] {
		// A running alarm's own handler may set the next one and then
		// fail, which undoes it: its outcome (finished) settles the count.
		delete(s.retries, k)
	}
	s.queueLocked(k)
	s.mu.Unlock()
	s.reschedule()
	return nil
}

// index writes in the index that k's alarm is due at t.
func (s *Alarms) index(k alarmKey, t time.Time) error {
	_, err := s.db.Exec("INSERT INTO alarms (class, id, at_ms) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET at_ms = excluded.at_ms",
		k.class, k.id, t.UnixMilli())
	return err
}

// Remove forgets the object's alarm.
func (s *Alarms) Remove(class, id string) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	s.removeLocked(alarmKey{class, id})
}

// removeLocked forgets k's alarm, under indexMu.
func (s *Alarms) removeLocked(k alarmKey) {
	s.db.Exec("DELETE FROM alarms WHERE class = ? AND id = ?", k.class, k.id)
	s.mu.Lock()
	delete(s.due, k)
	delete(s.sets, k)
	delete(s.retries, k)
	s.queueLocked(k)
	s.mu.Unlock()
}

// queueLocked puts k among the alarms waiting for their time if it is due
// and not running, or takes it out, under mu: every change to due or
// running calls it (finished, under indexMu, once it is done with k).
func (s *Alarms) queueLocked(k alarmKey) {
	if at, ok := s.due[k]; ok && !s.running[k] {
		s.waiting.put(k, at)
	} else {
		s.waiting.drop(k)
	}
}

// reschedule arms the timer for the earliest alarm that is not running
// (the first waiting).
func (s *Alarms) reschedule() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.timer == nil { // not started: start fires what is due
		return
	}
	if _, next, ok := s.waiting.first(); ok {
		s.timer.Reset(max(time.Until(next), 0))
	}
}

// fire delivers every alarm that is due.
func (s *Alarms) fire() {
	now := time.Now()
	s.mu.Lock()
	var ready []alarmKey
	for {
		k, at, ok := s.waiting.first()
		if !ok || at.After(now) {
			break
		}
		s.running[k] = true
		s.queueLocked(k)
		ready = append(ready, k)
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	for _, k := range ready {
		s.run(k)
	}
	s.reschedule()
}

func (s *Alarms) run(k alarmKey) {
	s.mu.Lock()
	retry := s.retries[k]
	s.since[k] = s.sets[k]
	s.mu.Unlock()
	s.wg.Add(1)
	done := func(err error) {
		defer s.wg.Done()
		s.finished(k, err)
	}
	if err := s.deliver(k.class, k.id, retry, done); err != nil {
		s.wg.Done()
		s.mu.Lock()
		delete(s.running, k)
		delete(s.since, k)
		s.queueLocked(k)
		s.mu.Unlock()
	}
}

// ErrAlarmSkipped is the outcome of an alarm event that found nothing due
// in the object's database (which fixed the index with Set or Remove).
var ErrAlarmSkipped = errors.New("alarm not due")

// undone records that the running alarm of the object failed and its
// event's writes were rolled back, its handler's SetAlarm among them (the
// object calls it as that event ends, before any later event of the object
// runs): an alarm set after this is a later event's, which replaces the
// retry (finished).
func (s *Alarms) undone(class, id string) {
	k := alarmKey{class, id}
	s.mu.Lock()
	if s.running[k] {
		s.since[k] = s.sets[k]
	}
	s.mu.Unlock()
}

// finished records an alarm's outcome: done, moved, or retried later. A
// success keeps an alarm set since delivery (by its handler or a later
// event), even for the same time. A failure keeps an alarm a later event
// set since its event's writes were undone (see since): it replaces the
// retry, due at its own time with its count at 0; else the alarm is
// retried after a backoff, and the retry checks the object's database,
// which has the alarm that counts. Giving up after the last retry (whose
// event deleted the alarm from the database) keeps such an alarm too.
func (s *Alarms) finished(k alarmKey, err error) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	s.mu.Lock()
	// k waits again (queueLocked) only once its outcome is recorded: a
	// fire meanwhile must not deliver it again at its old time.
	delete(s.running, k)
	moved := s.sets[k] != s.since[k]
	delete(s.since, k)
	s.mu.Unlock()
	switch {
	case errors.Is(err, ErrAlarmSkipped):
		// The object's database says it moved or is gone; alarmDue fixed
		// the index.
		s.mu.Lock()
		delete(s.retries, k)
		s.mu.Unlock()
	case err == nil:
		if moved {
			s.mu.Lock()
			delete(s.retries, k)
			s.mu.Unlock()
		} else {
			s.removeLocked(k)
		}
	case moved:
		// Set by a later event: that alarm replaces the retry, due at its
		// own time (Set put it in due and the index), with its own count.
		s.mu.Lock()
		delete(s.retries, k)
		s.mu.Unlock()
		s.logger.Warn("alarm failed; not retried, as the object set its alarm again", "class", k.class, "id", k.id, "err", err)
	default:
		s.mu.Lock()
		n := s.retries[k] + 1
		if n > maxAlarmRetries {
			delete(s.retries, k)
			s.mu.Unlock()
			s.logger.Error("alarm failed too often; giving up", "class", k.class, "id", k.id, "retries", maxAlarmRetries, "err", err)
			s.removeLocked(k)
			break
		}
		at := time.Now().Add(firstRetryDelay << (n - 1))
		s.retries[k] = n
		s.due[k] = at
		s.mu.Unlock()
		s.logger.Warn("alarm failed; retrying", "class", k.class, "id", k.id, "retry", n, "err", err)
		// The index may have a time the failed handler set, undone: a
		// restart would wait for it. (If this fails, it waits: the
		// alarm is not lost.)
		if err := s.index(k, at); err != nil {
			s.logger.Error("writing an alarm's retry in the alarm index: after a restart, it runs at the time the index had", "class", k.class, "id", k.id, "err", err)
		}
	}
	s.mu.Lock()
	s.queueLocked(k)
	s.mu.Unlock()
	s.reschedule()
}

// Close stops delivering alarms and closes the index.
func (s *Alarms) Close() {
	s.mu.Lock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.db.Close()
}
