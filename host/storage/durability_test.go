package storage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSyncThenAnswersOnceTheCommitIsDurable: Commit does not wait for the
// disk, SyncThen answers once a sync of the log covered the commit, or at
// once when nothing new was committed; what was committed is there after
// reopening.
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
	assert.Less(t, d.onDisk.Load(), d.commits, "Commit waited for the disk")

	d.SyncThen(func(err error) { answered <- err })
	require.NoError(t, <-answered)
	assert.Equal(t, d.commits, d.onDisk.Load())

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

// TestASyncAfterAFailedOneDoesNotAnswerDurable: a sync that succeeds after
// one failed (a new descriptor no longer reports the error, and the failed
// sync's pages may be lost) covers the commits of the failed one too, so
// the requests it answers get ErrNotDurable, not nil.
func TestASyncAfterAFailedOneDoesNotAnswerDurable(t *testing.T) {
	d, _ := open(t)
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	require.NoError(t, d.Commit())
	require.NoError(t, d.Put([]byte("b"), []byte("2")))
	require.NoError(t, d.Commit())
	assert.ErrorIs(t, d.synced(1, errors.New("EIO")), ErrNotDurable)
	assert.ErrorIs(t, d.synced(2, nil), ErrNotDurable, "a sync after a failed one answered that commits the failed one covered are durable")
	assert.Equal(t, uint64(0), d.onDisk.Load())
}

// TestSyncsOfManyDatabases: requests for many databases, made together, are
// each answered once, by syncs of the log that cover many databases each.
// (Run with -race: the syncs run beside the commits.)
func TestSyncsOfManyDatabases(t *testing.T) {
	const n = 100
	h := openHost(t, t.TempDir())
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = Lazy(filepath.Join(h.root, fmt.Sprintf("%d.sqlite", i)), h.log)
		require.NoError(t, dbs[i].Put([]byte("k"), []byte("v")))
		require.NoError(t, dbs[i].Commit())
	}
	answers := make([]chan error, n)
	for i, d := range dbs {
		answers[i] = make(chan error, 2)
		d.SyncThen(func(err error) { answers[i] <- err })
		d.SyncThen(func(err error) { answers[i] <- err }) // the same database twice
	}
	for i, d := range dbs {
		for range 2 {
			assert.NoError(t, <-answers[i], "database %d", i)
		}
		assert.Equal(t, d.commits, d.onDisk.Load(), "database %d", i)
		require.NoError(t, d.Close())
	}
	assert.Eventually(t, func() bool {
		h.log.mu.Lock()
		defer h.log.mu.Unlock()
		return !h.log.syncing
	}, 5*time.Second, 10*time.Millisecond, "the log's syncing goroutine ends with nothing left to sync")
	require.NoError(t, h.log.Close())
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

// TestCommitWaitsOutADescriptorShortage: while the process can open no
// file (EMFILE), a database's first commit, which opens its WAL to log
// from, waits for a descriptor instead of failing and closing the
// database; once one is free it is logged and becomes durable.
func TestCommitWaitsOutADescriptorShortage(t *testing.T) {
	d := reopened(t)
	commitOutlastsShortage(t, d, exhaustDescriptors(t))
	assert.False(t, d.NotDurable())
	require.NoError(t, d.Flush())
	require.NoError(t, d.Put([]byte("k2"), []byte("v2")))
	require.NoError(t, d.Flush(), "the database goes on committing")
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
// descriptorWait, the commits of many databases all fail once it has
// lasted descriptorWait, not each after waiting descriptorWait again, so
// neither their replies nor a Close waiting for them are held for minutes;
// a shortage that comes later is waited out anew.
func TestALongShortageIsWaitedOutOnce(t *testing.T) {
	var dbs []*DB
	for range 65 {
		dbs = append(dbs, reopened(t))
	}
	later := dbs[0]

	time.Sleep(shortageGap) // an earlier test's shortage is over
	restore := exhaustDescriptors(t)
	start := time.Now()
	for _, d := range dbs[1:] {
		assert.ErrorIs(t, d.Commit(), ErrNotDurable)
	}
	took := time.Since(start)
	restore()
	t.Logf("%d commits failed after %v", len(dbs)-1, took)
	assert.GreaterOrEqual(t, took, descriptorWait, "the commits waited the shortage out")
	assert.Less(t, took, descriptorWait+time.Second, "each commit waited descriptorWait")

	time.Sleep(shortageGap + 100*time.Millisecond)
	commitOutlastsShortage(t, later, exhaustDescriptors(t)) // a later shortage is waited out again
}

// reopened is a database that was committed to and closed, opened again
// with a write to commit.
func reopened(t *testing.T) *DB {
	t.Helper()
	d, path := open(t)
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.Close())
	d, err := openNow(path)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	require.NoError(t, d.Put([]byte("k"), []byte("v2")))
	return d
}

// commitOutlastsShortage commits d's writes during a descriptor shortage
// that restore ends: the commit must not return during it, and must
// succeed after.
func commitOutlastsShortage(t *testing.T, d *DB, restore func()) {
	t.Helper()
	committed := make(chan error, 1)
	go func() { committed <- d.Commit() }()
	select {
	case err := <-committed:
		restore()
		t.Fatalf("committed during the shortage: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	restore()
	require.NoError(t, <-committed)
}

// TestReadAfterAnUnsyncedWriteWaitsForTheSync: a read-only batch that may
// have seen a write whose sync of the log is under way is not answered
// before that sync ends, and when it fails the read fails too rather than
// hand out a write that may be lost.
func TestReadAfterAnUnsyncedWriteWaitsForTheSync(t *testing.T) {
	d, _ := open(t)
	held, release := make(chan struct{}), make(chan struct{})
	defer func(old func(*os.File) error) { syncSegment = old }(syncSegment)
	var first sync.Once
	syncSegment = func(*os.File) error {
		first.Do(func() { close(held) })
		<-release
		return errors.New("EIO")
	}
	require.NoError(t, d.Put([]byte("k"), []byte("unsure")))
	require.NoError(t, d.Commit())
	write := make(chan error, 1)
	d.SyncThen(func(err error) { write <- err })
	<-held
	v, _, err := d.Get([]byte("k"))
	require.NoError(t, err)
	require.Equal(t, "unsure", string(v))
	require.NoError(t, d.Commit())
	read := make(chan error, 1)
	d.SyncThen(func(err error) { read <- err })
	select {
	case err := <-read:
		t.Fatalf("the read was answered before the write it saw was durable: %v", err)
	case err := <-write:
		t.Fatalf("the write was answered before its sync: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	assert.ErrorIs(t, <-write, ErrNotDurable)
	assert.ErrorIs(t, <-read, ErrNotDurable)
}

// TestFailedLogWriteFailsEveryCommitInIt: a commit whose record was in a
// log write that failed is not durable even if its database asks for a
// sync only after: that later sync would not cover the lost record.
func TestFailedLogWriteFailsEveryCommitInIt(t *testing.T) {
	asker, silent := reopened(t), reopened(t)
	require.NoError(t, silent.Commit()) // its record waits in the log
	require.NoError(t, asker.Commit())
	defer func(old func(*os.File) error) { syncSegment = old }(syncSegment)
	syncSegment = func(*os.File) error { return errors.New("EIO") }
	answered := make(chan error, 1)
	asker.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable)
	syncSegment = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
	silent.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable, "a commit lost with a failed write was answered durable")
}

// TestAFullDiskTakesTheSpareSegment: when the log's disk is full, the spare
// segment (kept to be written over) is removed and its space goes to the
// commit being written, which is durable, instead of failing it while a
// segment's worth of space is kept for later.
func TestAFullDiskTakesTheSpareSegment(t *testing.T) {
	mnt := smallDisk(t)
	root := t.TempDir() // the database is on another disk
	d, spare := databaseWithSpare(t, filepath.Join(mnt, "log"), root)
	fillDisk(t, mnt)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("full"), []byte(strings.Repeat("v", 64<<10))))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush(), "the commit failed while the spare held space")
	assert.NoFileExists(t, spare)
}

// TestADatabaseOnAFullDiskTakesTheSpareSegment: when SQLite meets the full
// disk first (the databases and the log share it), its FULL releases the
// log's spare segment too, and the next try commits. The spare was kept:
// the commit failed again and again.
func TestADatabaseOnAFullDiskTakesTheSpareSegment(t *testing.T) {
	mnt := smallDisk(t)
	root := filepath.Join(mnt, "objects")
	require.NoError(t, os.Mkdir(root, 0o755))
	d, spare := databaseWithSpare(t, filepath.Join(mnt, "log"), root)
	fillDisk(t, mnt)
	write := func() error { return writeDurably(d, 4) } // more pages than the WAL has room for
	require.ErrorContains(t, write(), "database or disk is full", "SQLite met the full disk first")
	assert.NoFileExists(t, spare)
	require.NoError(t, write(), "the next try has the spare's space")
}

// TestLogGoesOnOnceAFullDiskHasRoomAgain: a log write that finds the disk
// full fails its commits, and the new segment begun after it cannot be
// written either (its header finds the disk full too); once there is room
// again, the next commit begins a segment and is durable. The log was left
// with no segment and failed every later commit of the host, naming the
// removed segment, until it restarted (seen with wharf serve whose objects
// were on a 20 MiB tmpfs: every increment a 500 with 10 MiB free).
func TestLogGoesOnOnceAFullDiskHasRoomAgain(t *testing.T) {
	mnt := smallDisk(t)
	root := t.TempDir() // the database is on another disk
	l, err := OpenLog(filepath.Join(mnt, "log"), root, LogOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	h := &host{root: root, log: l}
	path := filepath.Join(root, "obj.sqlite")
	d := Lazy(path, l)
	h.put(t, d, "a", "1")
	fillDisk(t, mnt)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("a"), []byte(strings.Repeat("v", 64<<10))))
	require.NoError(t, d.EndEvent(false))
	err = d.Flush()
	require.ErrorIs(t, err, ErrNotDurable)
	require.ErrorIs(t, err, unix.ENOSPC)
	require.ErrorIs(t, d.Close(), ErrNotDurable)

	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	d = Lazy(path, l)
	h.put(t, d, "a", "2")
	h.put(t, d, "a", "3")
	require.NoError(t, d.Close())
	require.NoError(t, l.Close())
	l, err = OpenLog(filepath.Join(mnt, "log"), root, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	v, _ := get(t, l, path, "a")
	assert.Equal(t, "3", v)
}

// TestADatabaseOnAFullDiskTakesTheLogsSegment: when SQLite finds the disk
// full and the log has no spare, the segment being written goes: its
// commits are made durable in their WALs, it is removed, and a new one is
// begun, so the commit tried again has its blocks. The segment was kept
// until it reached segmentBytes, which a log write that never got through
// never did: every commit failed for as long as the host ran (seen with
// wharf serve whose objects were on a 40 MiB tmpfs: the log's segment took
// 15 MiB of it and every increment was a 500, "database or disk is full").
func TestADatabaseOnAFullDiskTakesTheLogsSegment(t *testing.T) {
	mnt := smallDisk(t)
	root := filepath.Join(mnt, "objects")
	require.NoError(t, os.Mkdir(root, 0o755))
	logDir := filepath.Join(mnt, "log")
	l, err := OpenLog(logDir, root, LogOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	h := &host{root: root, log: l}
	path := filepath.Join(root, "obj.sqlite")
	d := Lazy(path, l)
	t.Cleanup(func() { d.Close() })
	for i := range 24 { // about 700 KiB of the segment's 1 MiB
		h.put(t, d, fmt.Sprint("k", i%4), strings.Repeat("v", 64<<10))
	}
	nums, err := segmentNumbers(logDir)
	require.NoError(t, err)
	require.Len(t, nums, 1, "the log was rotated")
	require.NoFileExists(t, filepath.Join(logDir, spareName))
	fillDisk(t, mnt)
	write := func() error { return writeDurably(d, 1) }
	require.ErrorContains(t, write(), "database or disk is full", "SQLite met the full disk first")
	deadline := time.Now().Add(5 * time.Second) // the segment goes as the log's next sync ends
	for err = write(); err != nil && time.Now().Before(deadline); err = write() {
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err, "the commit never got the log segment's blocks")
	require.NoError(t, d.Close())
	require.NoError(t, l.Close())
	l, err = OpenLog(logDir, root, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	v, _ := get(t, l, path, "full0")
	assert.Equal(t, strings.Repeat("w", 100<<10), v)
}

// smallDisk mounts a 4 MiB tmpfs for the test, with 1 MiB log segments.
func smallDisk(t *testing.T) string {
	old := segmentBytes
	segmentBytes = 1 << 20
	t.Cleanup(func() { segmentBytes = old })
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { // after the log closes, before mnt is removed
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			exec.Command("umount", "-l", mnt).Run()
			t.Errorf("unmounting %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// databaseWithSpare opens a log in logDir and a database under root, and
// commits to it until the log keeps a segment as its spare.
func databaseWithSpare(t *testing.T, logDir, root string) (d *DB, spare string) {
	l, err := OpenLog(logDir, root, LogOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	h := &host{root: root, log: l}
	d = Lazy(filepath.Join(root, "obj.sqlite"), l)
	t.Cleanup(func() { d.Close() })
	spare = filepath.Join(logDir, spareName)
	value := strings.Repeat("v", 64<<10)
	for i := 0; ; i++ {
		h.put(t, d, fmt.Sprint("k", i%4), value)
		if _, err := os.Stat(spare); err == nil {
			return d, spare
		}
		require.Less(t, i, 1000, "no segment was kept as the spare")
	}
}

// fillDisk fills the filesystem of dir.
func fillDisk(t *testing.T, dir string) {
	filler, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	for chunk := make([]byte, 4096); ; {
		if _, err := filler.Write(chunk); err != nil {
			require.ErrorIs(t, err, unix.ENOSPC)
			break
		}
	}
	require.NoError(t, filler.Close())
}

// writeDurably writes n values of 100 KiB to d in one event (keys full0,
// full1, ...; undone if one fails) and flushes it.
func writeDurably(d *DB, n int) error {
	d.BeginEvent()
	for i := range n {
		if err := d.Put([]byte(fmt.Sprint("full", i)), []byte(strings.Repeat("w", 100<<10))); err != nil {
			d.EndEvent(true)
			return err
		}
	}
	if err := d.EndEvent(false); err != nil {
		return err
	}
	return d.Flush()
}
