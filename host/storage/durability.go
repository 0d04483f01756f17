package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Commits are made durable apart from the commit itself. SQLite runs with
// synchronous=NORMAL, so a commit writes its WAL frames without waiting for
// the disk; the WAL is then synced (fdatasync) by Flush, or for SyncThen by
// a sync of that WAL alone that covers every request made before it
// began. While a WAL syncs, its object goes on running events, whose
// replies wait for its next sync; the WALs of different objects sync
// independently, at most maxParallelSyncs at once.

// ErrNotDurable wraps a failed sync: commits since the last durable one may
// be lost, or kept (SQLite committed them), so the database must be closed
// and opened again.
var ErrNotDurable = errors.New("syncing the commit to disk failed: its writes may be lost")

// walFile is an open database's WAL. SQLite creates it at the first write
// after opening and removes it at close (after checkpointing it), so it is
// the same file for as long as the database stays open; Close waits for
// the syncs under way. It is opened for each sync, so an open database
// keeps three descriptors.
type walFile struct {
	path string
	// dirSynced: its name in its directory is durable. SQLite syncs the
	// directory of a WAL it creates only in its own sync, which
	// synchronous=NORMAL skips.
	dirSynced atomic.Bool

	mu sync.Mutex
	// waiting are the SyncThen requests its next sync answers.
	waiting []syncRequest
	// syncing: a goroutine is syncing it, or waiting for a slot to.
	syncing bool
}

func (w *walFile) sync() error {
	if !w.dirSynced.Load() {
		if err := syncPath(filepath.Dir(w.path)); err != nil {
			return err
		}
		w.dirSynced.Store(true)
	}
	f, err := openToSync(w.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fdatasync(int(f.Fd()))
}

// syncPath syncs the file or directory at path.
func syncPath(path string) error {
	f, err := openToSync(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	return err
}

// descriptorWait is how long syncs wait for a descriptor to open their
// files with while the process or the system has none free.
const descriptorWait = 5 * time.Second

// shortageGap ends a shortage: an open that finds none for this long
// (syncs waiting one out try at least every 100 ms) meets a new one.
const shortageGap = time.Second

// descriptorShortage is the descriptor shortage syncs are waiting out: when it
// began, and when an open last met it.
var descriptorShortage struct {
	sync.Mutex
	began, seen time.Time
}

// openToSync opens path for a sync. Out of descriptors (EMFILE, ENFILE), it
// tries again, backing off, until the shortage has lasted descriptorWait:
// the commits are in the page cache and a sync through any descriptor
// makes them durable, so a passing shortage must not fail them (and close
// their database). The wait is the shortage's, not each sync's: the syncs
// of many databases, made batch after batch, or one after another as they
// close, do not each wait descriptorWait again.
func openToSync(path string) (*os.File, error) {
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		f, err := os.Open(path)
		if !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENFILE) || !waitOutShortage() {
			return f, err
		}
		time.Sleep(delay)
	}
}

// waitOutShortage records that an open met a descriptor shortage and
// reports whether it began less than descriptorWait ago.
func waitOutShortage() bool {
	descriptorShortage.Lock()
	defer descriptorShortage.Unlock()
	now := time.Now()
	if now.Sub(descriptorShortage.seen) > shortageGap {
		descriptorShortage.began = now
	}
	descriptorShortage.seen = now
	return now.Sub(descriptorShortage.began) < descriptorWait
}

// syncNow makes every commit so far durable before it returns.
func (d *DB) syncNow() error {
	if p := d.syncErr.Load(); p != nil {
		return *p
	}
	target := d.commits
	if d.onDisk.Load() >= target {
		return nil
	}
	return d.synced(target, d.wal.sync())
}

// NotDurable reports whether a sync failed: commits since the last durable
// one may be lost, and the database refuses commits until it is closed.
func (d *DB) NotDurable() bool { return d.syncErr.Load() != nil }

// synced records the outcome of a sync that covered the commits up to
// target: durable, or a failure (ErrNotDurable) that later commits repeat.
// A sync that succeeds after one failed proves nothing: the failed sync's
// pages may be lost (a descriptor opened after the error does not report
// it), and target covers them, so it repeats the failure.
func (d *DB) synced(target uint64, err error) error {
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrNotDurable, err)
		d.syncErr.CompareAndSwap(nil, &err)
		return err
	}
	if p := d.syncErr.Load(); p != nil {
		return *p
	}
	for {
		old := d.onDisk.Load()
		if old >= target || d.onDisk.CompareAndSwap(old, target) {
			return nil
		}
	}
}

// SyncThen calls done once every commit made so far is durable (at once if
// they are), from another goroutine, with the sync's error if it failed;
// the database goes on being used meanwhile. After a failure, Commit
// refuses with ErrNotDurable until the database is closed.
func (d *DB) SyncThen(done func(error)) {
	if p := d.syncErr.Load(); p != nil {
		done(*p)
		return
	}
	target := d.commits
	if d.onDisk.Load() >= target {
		done(nil)
		return
	}
	d.syncs.Add(1)
	d.wal.request(syncRequest{db: d, target: target, done: done})
}

// syncRequest asks that db's commits up to target be made durable.
type syncRequest struct {
	db     *DB
	target uint64
	done   func(error)
}

// maxParallelSyncs bounds the WALs synced at once (each holds a thread in
// the kernel while it waits for the disk).
const maxParallelSyncs = 32

// syncSlots holds a token for each WAL being synced.
var syncSlots = make(chan struct{}, maxParallelSyncs)

// request queues r for the WAL's next sync, starting the goroutine that
// syncs it unless one runs.
func (w *walFile) request(r syncRequest) {
	w.mu.Lock()
	w.waiting = append(w.waiting, r)
	start := !w.syncing
	w.syncing = true
	w.mu.Unlock()
	if start {
		go w.syncWaiting()
	}
}

// syncWaiting syncs the WAL for the requests waiting, again and again while
// more arrive, taking a slot for each sync: the WALs waiting for one take
// turns (a channel's senders are served in order), so busy objects do not
// starve the others. Each request is answered once a sync that began after
// it ends: a WAL's replies do not wait for other WALs' syncs.
func (w *walFile) syncWaiting() {
	for {
		syncSlots <- struct{}{}
		w.mu.Lock()
		batch := w.waiting
		w.waiting = nil
		if len(batch) == 0 {
			w.syncing = false
			w.mu.Unlock()
			<-syncSlots
			return
		}
		w.mu.Unlock()
		err := w.sync()
		<-syncSlots
		for _, r := range batch {
			r.done(r.db.synced(r.target, err))
			r.db.syncs.Done()
		}
	}
}
