package storage

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSyncThenAnswersOnceTheCommitIsDurable: Commit leaves the WAL unsynced,
// SyncThen answers once a sync of its WAL synced it (and the WAL's name in its
// directory), or at once when nothing new was committed; what was committed
// is there after reopening.
func TestSyncThenAnswersOnceTheCommitIsDurable(t *testing.T) {
	d, path := open(t)
	answered := make(chan error, 1)
	d.SyncThen(func(err error) { answered <- err })
	select {
	case err := <-answered:
		require.NoError(t, err)
	default:
		t.Fatal("SyncThen waited with nothing committed")
	}

	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit())
	require.NotNil(t, d.wal, "a commit that wrote opened the WAL")
	assert.Less(t, d.onDisk.Load(), d.commits, "Commit waited for the disk")
	assert.False(t, d.wal.dirSynced.Load())

	d.SyncThen(func(err error) { answered <- err })
	require.NoError(t, <-answered)
	assert.Equal(t, d.commits, d.onDisk.Load())
	assert.True(t, d.wal.dirSynced.Load(), "the new WAL's directory entry was not synced")

	d.BeginEvent()
	_, _, err := d.Get([]byte("k")) // a read-only batch: nothing more to sync
	require.NoError(t, err)
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit())
	d.SyncThen(func(err error) { answered <- err })
	select {
	case err := <-answered:
		require.NoError(t, err)
	default:
		t.Fatal("SyncThen waited after a commit that wrote nothing")
	}

	require.NoError(t, d.Close())
	d2, err := openNow(path)
	require.NoError(t, err)
	defer d2.Close()
	v, ok, err := d2.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v", string(v))
}

// TestFailedSyncRefusesLaterCommits: when the WAL cannot be synced, the
// waiting replies get ErrNotDurable, and so does every later commit (its
// writes undone) and Flush, until the database is closed.
func TestFailedSyncRefusesLaterCommits(t *testing.T) {
	d, _ := open(t)
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	require.NoError(t, d.Commit())
	d.wal.path += "-elsewhere" // the sync cannot reach the file

	answered := make(chan error, 1)
	d.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable)

	require.NoError(t, d.Put([]byte("b"), []byte("2")))
	assert.ErrorIs(t, d.Commit(), ErrNotDurable)
	assert.False(t, d.Dirty(), "the refused commit's writes were kept")
	assert.ErrorIs(t, d.Flush(), ErrNotDurable)
	d.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable)
}

// TestASyncAfterAFailedOneDoesNotAnswerDurable: a request made while a sync
// that then fails was under way waits for the next sync, which may succeed
// (a new descriptor no longer reports the error, and the failed sync's pages
// may be lost); it covers the commits of the failed one too, so it gets
// ErrNotDurable, not nil.
func TestASyncAfterAFailedOneDoesNotAnswerDurable(t *testing.T) {
	d, _ := open(t)
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	require.NoError(t, d.Commit())
	dir := t.TempDir()
	fifo, link := filepath.Join(dir, "fifo"), filepath.Join(dir, "wal")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	require.NoError(t, os.Symlink(fifo, link))
	real := d.wal.path
	d.wal.path = link // the first sync opens the FIFO, and cannot sync it

	first, proceed := make(chan error, 1), make(chan struct{})
	d.SyncThen(func(err error) {
		first <- err
		<-proceed
	})
	require.Eventually(t, func() bool { // the first sync took its request
		d.wal.mu.Lock()
		defer d.wal.mu.Unlock()
		return len(d.wal.waiting) == 0
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, d.Put([]byte("b"), []byte("2")))
	require.NoError(t, d.Commit())
	second := make(chan error, 1)
	d.SyncThen(func(err error) { second <- err }) // waits for the next sync

	var w int
	require.Eventually(t, func() bool { // the first sync is opening the FIFO
		var err error
		w, err = unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0)
		return err == nil
	}, 5*time.Second, time.Millisecond)
	defer unix.Close(w)
	assert.ErrorIs(t, <-first, ErrNotDurable)
	// The next sync reaches the WAL and succeeds.
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink(real, link))
	close(proceed)
	assert.ErrorIs(t, <-second, ErrNotDurable, "a sync after a failed one answered that commits the failed one covered are durable")
	assert.Less(t, d.onDisk.Load(), d.commits)
}

// TestSyncsOfManyDatabases: requests for many databases, more than are
// synced at once, made together, are each answered once; a WAL that cannot
// be synced fails only its own database's requests. (Run with -race: the
// syncs run at once.)
func TestSyncsOfManyDatabases(t *testing.T) {
	const n = 3 * maxParallelSyncs
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i], _ = open(t)
		require.NoError(t, dbs[i].Put([]byte("k"), []byte("v")))
		require.NoError(t, dbs[i].Commit())
	}
	dbs[n/2].wal.path += "-elsewhere" // the sync cannot reach the file
	answers := make([]chan error, n)
	for i, d := range dbs {
		answers[i] = make(chan error, 2)
		d.SyncThen(func(err error) { answers[i] <- err })
		d.SyncThen(func(err error) { answers[i] <- err }) // the same WAL twice
	}
	for i, d := range dbs {
		for range 2 {
			err := <-answers[i]
			if i == n/2 {
				assert.ErrorIs(t, err, ErrNotDurable)
				continue
			}
			assert.NoError(t, err, "database %d", i)
		}
		if i != n/2 {
			assert.Equal(t, d.commits, d.onDisk.Load(), "database %d", i)
		}
	}
	for i, d := range dbs {
		assert.Eventually(t, func() bool {
			d.wal.mu.Lock()
			defer d.wal.mu.Unlock()
			return !d.wal.syncing
		}, 5*time.Second, 10*time.Millisecond, "database %d: its WAL's syncing goroutine ends with nothing left to sync", i)
	}
	assert.Empty(t, syncSlots, "every slot is given back")
}

// TestReadOnlyCommitWaitsForEarlierWrites: a batch that wrote nothing,
// committed after one whose sync is still due, is answered only once that
// earlier write is durable.
func TestReadOnlyCommitWaitsForEarlierWrites(t *testing.T) {
	d, _ := open(t)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit()) // its replies are not asked for yet
	d.BeginEvent()
	_, _, err := d.Get([]byte("k"))
	require.NoError(t, err)
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit())
	syncedWhenAnswered := make(chan uint64, 1)
	d.SyncThen(func(err error) {
		assert.NoError(t, err)
		syncedWhenAnswered <- d.onDisk.Load()
	})
	assert.Equal(t, uint64(1), <-syncedWhenAnswered, "answered before the write was synced")
}

// TestSyncWaitsOutADescriptorShortage: while the process can open no file
// (EMFILE), a sync waits for a descriptor instead of failing the commit
// and closing its database; once one is free the reply is durable.
func TestSyncWaitsOutADescriptorShortage(t *testing.T) {
	d, _ := open(t)
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.Commit())

	syncOutlastsShortage(t, d, exhaustDescriptors(t))
	assert.False(t, d.NotDurable())
	require.NoError(t, d.Put([]byte("k2"), []byte("v2")))
	require.NoError(t, d.Commit(), "the database goes on committing")
	require.NoError(t, d.Flush())
}

// exhaustDescriptors makes the process out of descriptors (EMFILE) until the
// returned func (or the test's end) restores its limit.
func exhaustDescriptors(t *testing.T) (restore func()) {
	t.Helper()
	var limit unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &limit))
	probe, err := os.Open(os.DevNull) // the lowest free descriptor
	require.NoError(t, err)
	lowest := probe.Fd()
	probe.Close()
	restore = func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &limit) }
	t.Cleanup(restore)
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(lowest), Max: limit.Max}))
	_, err = os.Open(os.DevNull)
	require.ErrorIs(t, err, unix.EMFILE, "the shortage")
	return restore
}

// TestALongShortageIsWaitedOutOnce: during a shortage that outlasts
// descriptorWait, the syncs of many databases (more than a round syncs at
// once) all fail once it has lasted descriptorWait, not batch after batch
// each after waiting descriptorWait again, so neither their replies nor a
// Close waiting for them are held for minutes; a shortage that comes later
// is waited out anew.
func TestALongShortageIsWaitedOutOnce(t *testing.T) {
	var dbs []*DB
	for range 2*maxParallelSyncs + 1 {
		d, _ := open(t)
		require.NoError(t, d.Put([]byte("k"), []byte("v")))
		require.NoError(t, d.Flush()) // its directory is synced
		require.NoError(t, d.Put([]byte("k"), []byte("v2")))
		require.NoError(t, d.Commit())
		dbs = append(dbs, d)
	}
	later := dbs[0]

	time.Sleep(shortageGap) // an earlier test's shortage is over
	restore := exhaustDescriptors(t)
	start := time.Now()
	answered := make(chan error, len(dbs))
	for _, d := range dbs[1:] {
		d.SyncThen(func(err error) { answered <- err })
	}
	for range dbs[1:] {
		assert.ErrorIs(t, <-answered, ErrNotDurable)
	}
	took := time.Since(start)
	restore()
	t.Logf("%d syncs answered after %v", len(dbs)-1, took)
	assert.GreaterOrEqual(t, took, descriptorWait, "the syncs waited the shortage out")
	assert.Less(t, took, descriptorWait+time.Second, "each batch waited descriptorWait")

	time.Sleep(shortageGap + 100*time.Millisecond)
	require.NoError(t, later.Put([]byte("k2"), []byte("v2")))
	require.NoError(t, later.Commit())
	syncOutlastsShortage(t, later, exhaustDescriptors(t)) // a later shortage is waited out again
}

// syncOutlastsShortage asks d for a sync during a descriptor shortage that
// restore ends: it must not answer during it, and must answer durable
// after.
func syncOutlastsShortage(t *testing.T, d *DB, restore func()) {
	t.Helper()
	answered := make(chan error, 1)
	d.SyncThen(func(err error) { answered <- err })
	select {
	case err := <-answered:
		restore()
		t.Fatalf("answered during the shortage: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	restore()
	require.NoError(t, <-answered)
}
