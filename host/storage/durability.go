package storage

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Commits are made durable apart from the commit itself. SQLite runs with
// synchronous=NORMAL, so a commit writes its WAL frames without waiting for
// the disk; logCommit copies them into the host's commit log, whose next
// sync (one for the commits of every database since the last) makes them
// durable: Flush waits for it, SyncThen calls back after it, and the
// object runs on meanwhile.

// ErrNotDurable wraps a failed sync: commits since the last durable one may
// be lost, or kept (SQLite committed them), so the database must be closed
// and opened again.
var ErrNotDurable = errors.New("syncing the commit to disk failed: its writes may be lost")

// logCommit hands the commit just made to the log: the WAL frames written
// since the last one.
func (d *DB) logCommit() error {
	if d.walFile == nil {
		wal, err := openToSync(d.path + "-wal")
		if err != nil {
			return err
		}
		d.walFile, d.walReadsShort = wal, readsShort(wal)
	}
	buf := walReads.Get().(*[]byte)
	pageSize, frames, err := readCommits(d.walFile, d.walReadsShort, &d.walPos, (*buf)[:0])
	if err == nil {
		err = d.log.append(d, pageSize, frames)
	}
	if cap(frames) <= maxPooledRead {
		*buf = frames
		walReads.Put(buf)
	}
	return err
}

// maxPooledRead bounds the buffers kept for reading frames: a commit that
// wrote more than a few pages is rare.
const maxPooledRead = 256 << 10

// walReads are the buffers logCommit reads frames into.
var walReads = sync.Pool{New: func() any { return new([]byte) }}

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
	return openWaiting(path, os.O_RDONLY, 0)
}

// openWaiting is os.OpenFile that waits out a descriptor shortage as
// openToSync does.
func openWaiting(path string, flag int, perm os.FileMode) (*os.File, error) {
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		f, err := os.OpenFile(path, flag, perm)
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
	synced := make(chan error, 1)
	d.log.syncThen(func(err error) { synced <- err })
	return d.synced(target, <-synced)
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
	d.log.syncThen(func(err error) {
		done(d.synced(target, err))
		d.syncs.Done()
	})
}
