package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Commits are made durable apart from the commit itself. SQLite runs with
// synchronous=NORMAL, so a commit writes its WAL frames without waiting for
// the disk; the WAL is then synced (fdatasync) by Flush, or by a round of
// the process's syncer for SyncThen. While a round syncs, the object goes
// on running events (their replies wait for a later round), and one round
// syncs every database committed since the last one, each once.

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
func (d *DB) synced(target uint64, err error) error {
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrNotDurable, err)
		d.syncErr.CompareAndSwap(nil, &err)
		return err
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
	walSyncer.add(syncRequest{db: d, wal: d.wal, target: target, done: done})
}

// syncRequest asks that db's commits up to target be made durable.
type syncRequest struct {
	db     *DB
	wal    *walFile
	target uint64
	done   func(error)
}

// syncer makes commits durable in rounds: a round takes every request made
// before it started and syncs each WAL they name once, concurrently; the
// requests made meanwhile wait for the next round. Its goroutine runs while
// there are requests.
type syncer struct {
	mu      sync.Mutex
	queue   []syncRequest
	running bool
}

var walSyncer syncer

// maxParallelSyncs bounds the WALs a round syncs at once (each holds a
// thread in the kernel while it waits for the disk).
const maxParallelSyncs = 32

func (s *syncer) add(r syncRequest) {
	s.mu.Lock()
	s.queue = append(s.queue, r)
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.run()
	}
}

func (s *syncer) run() {
	for {
		s.mu.Lock()
		round := s.queue
		s.queue = nil
		if len(round) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		// Each WAL once; the syncs write only their own slot of errs.
		index := map[*walFile]int{}
		var wals []*walFile
		for _, r := range round {
			if _, ok := index[r.wal]; !ok {
				index[r.wal] = len(wals)
				wals = append(wals, r.wal)
			}
		}
		errs := make([]error, len(wals))
		var g errgroup.Group
		g.SetLimit(maxParallelSyncs)
		for i, w := range wals {
			g.Go(func() error {
				errs[i] = w.sync()
				return nil
			})
		}
		g.Wait()
		for _, r := range round {
			r.done(r.db.synced(r.target, errs[index[r.wal]]))
			r.db.syncs.Done()
		}
	}
}
