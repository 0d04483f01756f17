package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shared is the commit log of the databases of tests that are not about
// the log: rooted at /, so any temporary directory is under it.
var shared struct {
	once sync.Once
	dir  string
	log  *Log
}

func sharedLog() *Log {
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "wharf-storage-log-")
		if err != nil {
			panic(err)
		}
		l, err := OpenLog(dir, "/", LogOptions{})
		if err != nil {
			panic(err)
		}
		shared.dir, shared.log = dir, l
	})
	return shared.log
}

// lazy is Lazy with the tests' shared log.
func lazy(path string) *DB { return Lazy(path, sharedLog()) }

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.log != nil {
		if err := shared.log.Close(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "closing the shared commit log:", err)
			code = 1
		}
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// host is a data directory with its commit log, as a host has: databases
// under root, the log in root/log.
type host struct {
	root string
	log  *Log
}

func openHost(t *testing.T, root string) *host {
	t.Helper()
	return &host{root: root, log: openLog(t, root)}
}

// openLog opens the log of the data directory root, as a host starting
// does: closed when the test ends.
func openLog(t *testing.T, root string) *Log {
	t.Helper()
	l, err := OpenLog(filepath.Join(root, "log"), root, LogOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// oneObject is a host with one database, obj.sqlite, holding a=1.
func oneObject(t *testing.T) (*host, *DB, string) {
	t.Helper()
	h := openHost(t, t.TempDir())
	path := filepath.Join(h.root, "obj.sqlite")
	d := Lazy(path, h.log)
	h.put(t, d, "a", "1")
	return h, d, path
}

// put writes key=value in one event and commits it durably.
func (h *host) put(t *testing.T, d *DB, key, value string) {
	t.Helper()
	d.BeginEvent()
	require.NoError(t, d.Put([]byte(key), []byte(value)))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
}

// get reads key from the database at path, opened afresh.
func get(t *testing.T, l *Log, path, key string) (string, bool) {
	t.Helper()
	d := Lazy(path, l)
	defer d.Close()
	v, ok, err := d.Get([]byte(key))
	require.NoError(t, err)
	require.NoError(t, d.Flush()) // ends the read
	var integrity string
	require.NoError(t, d.db.QueryRow("PRAGMA integrity_check").Scan(&integrity))
	require.Equal(t, "ok", integrity)
	return string(v), ok
}

// copyFiles copies the files at paths (those that exist) into dir under
// their base names: what a disk holds at one moment.
func copyFiles(t *testing.T, dir string, paths ...string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, 0o644))
	}
}

// crash makes after, a copy of a host's data directory as a power cut would
// leave it: the database and its WAL as they were at an earlier moment
// (copied to dbThen), the log as it is now.
func crash(t *testing.T, h *host, dbThen, after string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(after, "log"), 0o755))
	entries, err := os.ReadDir(filepath.Join(h.root, "log"))
	require.NoError(t, err)
	for _, e := range entries {
		copyFiles(t, filepath.Join(after, "log"), filepath.Join(h.root, "log", e.Name()))
	}
	entries, err = os.ReadDir(dbThen)
	require.NoError(t, err)
	for _, e := range entries {
		copyFiles(t, after, filepath.Join(dbThen, e.Name()))
	}
}

// crashAndOpen makes the copy of the host's data directory a power cut
// would leave (see crash), with the database's files as they were in then,
// ends the host and its database d, and opens the copy's log; it returns
// the log and the copy.
func crashAndOpen(t *testing.T, h *host, d *DB, then string) (*Log, string) {
	t.Helper()
	after := t.TempDir()
	crash(t, h, then, after)
	require.NoError(t, d.Close())
	require.NoError(t, h.log.Close())
	return openLog(t, after), after
}

func dbFiles(path string) []string { return []string{path, path + "-wal"} }

// TestLogReplaysCommitsTheDatabaseLost: after a power cut that lost the
// database's last commits (its WAL frames never reached the disk), or its
// whole WAL, the log puts back every commit that was acknowledged.
func TestLogReplaysCommitsTheDatabaseLost(t *testing.T) {
	for _, lost := range []string{"last commits", "whole WAL"} {
		t.Run(lost, func(t *testing.T) {
			h, d, path := oneObject(t)
			then := t.TempDir()
			switch lost {
			case "last commits":
				copyFiles(t, then, dbFiles(path)...)
			case "whole WAL":
				copyFiles(t, then, path) // the WAL was created after the file was synced
			}
			for i := range 50 {
				h.put(t, d, fmt.Sprint("k", i), fmt.Sprint(i))
			}
			h.put(t, d, "a", "2")
			l, after := crashAndOpen(t, h, d, then)
			assert.Equal(t, 1, l.Recovery().Databases)
			lacked := map[string]int{"last commits": 51, "whole WAL": 52}[lost]
			assert.Equal(t, lacked, l.Recovery().Commits, "the commits the copy lacks")
			moved := filepath.Join(after, "obj.sqlite")
			v, ok := get(t, l, moved, "a")
			assert.True(t, ok)
			assert.Equal(t, "2", v, "the last acknowledged commit")
			v, _ = get(t, l, moved, "k49")
			assert.Equal(t, "49", v)
			segments, err := segmentNumbers(filepath.Join(after, "log"))
			require.NoError(t, err)
			assert.Len(t, segments, 1, "the replayed segments are removed; one new one is open")
		})
	}
}

// TestLogLeavesADatabaseAheadOfIt: a database whose commits reached the
// disk while the log's last records did not (they were never
// acknowledged) keeps them: replaying the older records would mix pages
// of two moments.
func TestLogLeavesADatabaseAheadOfIt(t *testing.T) {
	h, d, path := oneObject(t)
	logThen, segment := t.TempDir(), firstSegment(t, h)
	copyFiles(t, logThen, filepath.Join(h.root, "log", segment))
	for i := range 20 {
		h.put(t, d, fmt.Sprint("k", i), fmt.Sprint(i))
	}
	now := t.TempDir()
	copyFiles(t, now, dbFiles(path)...)
	require.NoError(t, d.Close())
	require.NoError(t, h.log.Close())

	after := t.TempDir()
	copyFiles(t, after, dbFiles(filepath.Join(now, "obj.sqlite"))...)
	copyFiles(t, filepath.Join(after, "log"), filepath.Join(logThen, segment))
	l := openLog(t, after)
	v, ok := get(t, l, filepath.Join(after, "obj.sqlite"), "k19")
	assert.True(t, ok, "the database lost commits it had")
	assert.Equal(t, "19", v)
}

// TestLogStopsAtATornRecord: a record the power cut left half written (it
// was never acknowledged) ends the log; the records before it are
// replayed.
func TestLogStopsAtATornRecord(t *testing.T) {
	h, d, path := oneObject(t)
	then := t.TempDir()
	copyFiles(t, then, path)
	h.put(t, d, "a", "2")
	segment := filepath.Join(h.root, "log", firstSegment(t, h))
	info, err := os.Stat(segment)
	require.NoError(t, err)
	h.put(t, d, "a", "3")
	after := t.TempDir()
	crash(t, h, then, after)
	require.NoError(t, d.Close())
	require.NoError(t, h.log.Close())
	torn := filepath.Join(after, "log", filepath.Base(segment))
	full, err := os.Stat(torn)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(torn, info.Size()+(full.Size()-info.Size())/2))

	l := openLog(t, after)
	v, _ := get(t, l, filepath.Join(after, "obj.sqlite"), "a")
	assert.Equal(t, "2", v, "the last whole record")
}

// TestLogDoesNotReplayIntoANewDatabase: a database deleted and created
// again at the same path is another file: the old one's commits are not
// replayed into it.
func TestLogDoesNotReplayIntoANewDatabase(t *testing.T) {
	h := openHost(t, t.TempDir())
	path := filepath.Join(h.root, "obj.sqlite")
	d := Lazy(path, h.log)
	h.put(t, d, "old", "1")
	require.NoError(t, d.Close())
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		require.NoError(t, os.RemoveAll(p))
	}
	d = Lazy(path, h.log)
	_, ok, err := d.Get([]byte("old"))
	require.NoError(t, err)
	assert.False(t, ok)
	h.put(t, d, "new", "1") // creates the new file
	require.NoError(t, d.Close())
	after := t.TempDir()
	copyFiles(t, after, path)
	require.NoError(t, os.MkdirAll(filepath.Join(after, "log"), 0o755))
	copyFiles(t, filepath.Join(after, "log"), filepath.Join(h.root, "log", firstSegment(t, h)))
	require.NoError(t, h.log.Close())

	l := openLog(t, after)
	_, ok = get(t, l, filepath.Join(after, "obj.sqlite"), "old")
	assert.False(t, ok, "the deleted database's commit was replayed into the new one")
}

// TestLogSegmentsAreRemovedOnceTheirDatabasesAreDurable: the log begins a
// new segment past segmentBytes and removes the old one after syncing its
// databases' WALs, so it stays small however long the host runs; what a
// power cut then loses is still in the log or on disk.
func TestLogSegmentsAreRemovedOnceTheirDatabasesAreDurable(t *testing.T) {
	defer func(old int64) { segmentBytes = old }(segmentBytes)
	segmentBytes = 64 << 10
	h := openHost(t, t.TempDir())
	var dbs []*DB
	for i := range 4 {
		dbs = append(dbs, Lazy(filepath.Join(h.root, fmt.Sprintf("%d.sqlite", i)), h.log))
	}
	for i := range 100 {
		h.put(t, dbs[i%4], fmt.Sprint("k", i), fmt.Sprint(i))
	}
	var segments []uint64
	require.Eventually(t, func() bool {
		var err error
		segments, err = segmentNumbers(filepath.Join(h.root, "log"))
		require.NoError(t, err)
		return len(segments) == 1
	}, 5*time.Second, 10*time.Millisecond, "the old segments are removed")
	assert.FileExists(t, filepath.Join(h.root, "log", spareName), "a removed segment is kept to be written over")
	for _, d := range dbs {
		require.NoError(t, d.Close())
	}
	require.NoError(t, h.log.Close())
	after, err := segmentNumbers(filepath.Join(h.root, "log"))
	require.NoError(t, err)
	assert.Empty(t, after, "a log closed after its databases leaves nothing to replay")
	l := openLog(t, h.root)
	v, _ := get(t, l, filepath.Join(h.root, "3.sqlite"), "k99")
	assert.Equal(t, "99", v)
}

// TestFailedLogSyncRefusesLaterCommits: when the log cannot be written, the
// waiting replies get ErrNotDurable, and so does every later commit of that
// database (its writes undone) until it is closed; the log goes on in a new
// segment, and the database opened again commits.
func TestFailedLogSyncRefusesLaterCommits(t *testing.T) {
	h, d, path := oneObject(t)
	h.log.mu.Lock()
	h.log.seg.f.Close() // the next write fails
	h.log.mu.Unlock()

	d.BeginEvent()
	require.NoError(t, d.Put([]byte("b"), []byte("2")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit())
	answered := make(chan error, 1)
	d.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable)

	require.NoError(t, d.Put([]byte("c"), []byte("3")))
	assert.ErrorIs(t, d.Commit(), ErrNotDurable)
	assert.False(t, d.Dirty(), "the refused commit's writes were kept")
	assert.ErrorIs(t, d.Flush(), ErrNotDurable)
	d.SyncThen(func(err error) { answered <- err })
	assert.ErrorIs(t, <-answered, ErrNotDurable)
	assert.ErrorIs(t, d.Close(), ErrNotDurable, "closing says the commits may be lost")

	d = Lazy(path, h.log)
	defer d.Close()
	h.put(t, d, "d", "4")
	v, ok, err := d.Get([]byte("d"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "4", string(v))
	require.NoError(t, h.log.Close())
}

// firstSegment is the name of the oldest segment of h's log.
func firstSegment(t *testing.T, h *host) string {
	t.Helper()
	nums, err := segmentNumbers(filepath.Join(h.root, "log"))
	require.NoError(t, err)
	require.NotEmpty(t, nums)
	return filepath.Base(segmentPath("", nums[0]))
}

// TestRecordsOfAnotherSegmentAreNotRead: a recycled segment still holds the
// records of its use before past what was written since; they are not
// read as its own, since their head names their segment's number.
func TestRecordsOfAnotherSegmentAreNotRead(t *testing.T) {
	b := appendRecord(slices.Clone(segmentHeader), "a.sqlite", 7, 1, 512, make([]byte, walFrameHeaderBytes+512))
	sealRecords(b[segmentHeaderBytes:], 41, segmentHeaderBytes)
	records, _, _ := parseRecords(41, b)
	require.Len(t, records, 1)
	records, damaged, _ := parseRecords(42, b)
	assert.Empty(t, records)
	assert.Zero(t, damaged, "a recycled segment's old records counted as damage")
}

// TestARecycledSegmentIsReadToItsRecordsEnd: after a crash, a recycled
// segment is read up to the first record of its use before, not through
// the rest of the file (128 MiB of old records, which took half a second
// to pass over byte by byte), whether the new records end where an old one
// begins or inside one, or torn.
func TestARecycledSegmentIsReadToItsRecordsEnd(t *testing.T) {
	frame := make([]byte, walFrameHeaderBytes+4096)
	oldUse := func(num uint64) []byte {
		old := slices.Clone(segmentHeader)
		for seq := uint64(1); len(old) < 4<<20; seq++ {
			old = appendRecord(old, "old.sqlite", 7, seq, 4096, frame)
		}
		sealRecords(old[segmentHeaderBytes:], num, segmentHeaderBytes)
		return old
	}
	// Its use before had an earlier number, or a later one if the clock
	// went back between (numbers begin at the time a log opens).
	earlier, later := oldUse(1), oldUse(3)
	oldRecord := len(appendRecord(nil, "old.sqlite", 7, 1, 4096, frame))
	var asLarge []byte // two new records, each an old one's size
	for seq := uint64(1); seq <= 2; seq++ {
		asLarge = appendRecord(asLarge, "new.sqlite", 8, seq, 4096, frame)
	}
	sealRecords(asLarge, 2, segmentHeaderBytes)
	var small []byte // a new record smaller than the old ones, its frames unlike theirs
	small = appendRecord(small, "new.sqlite", 8, 1, 512, slices.Repeat([]byte{1}, walFrameHeaderBytes+512))
	sealRecords(small, 2, segmentHeaderBytes)
	for name, c := range map[string]struct {
		written     []byte
		torn, count int
	}{
		"ends where an old record begins": {asLarge, 0, 2},
		"ends inside an old record":       {small, 0, 1},
		"torn":                            {small, 100, 0},
	} {
		for before, old := range map[string][]byte{"earlier": earlier, "later": later} {
			t.Run(name+", "+before, func(t *testing.T) {
				data := slices.Clone(old)
				written := copy(data[segmentHeaderBytes:], c.written[:len(c.written)-c.torn])
				records, damaged, end := parseRecords(2, data)
				assert.Len(t, records, c.count)
				assert.Zero(t, damaged)
				assert.GreaterOrEqual(t, end, segmentHeaderBytes+written)
				assert.LessOrEqual(t, end, segmentHeaderBytes+len(c.written)+oldRecord, "read past the first old record")
			})
		}
	}
}

// TestARecycledSegmentIsRecoveredToItsRecordsEnd: the same through OpenLog,
// with a segment the log recycled: a crash after a few commits in it reads
// the log up to them (Recovery.Read), and replays them.
func TestARecycledSegmentIsRecoveredToItsRecordsEnd(t *testing.T) {
	defer func(old int64) { segmentBytes = old }(segmentBytes)
	segmentBytes = 1 << 20
	h := openHost(t, t.TempDir())
	d := Lazy(filepath.Join(h.root, "obj.sqlite"), h.log)
	value := strings.Repeat("v", 64<<10)
	spare := filepath.Join(h.root, "log", spareName)
	for i := 0; ; i++ {
		h.put(t, d, fmt.Sprint("k", i%4), value)
		if _, err := os.Stat(spare); err == nil {
			break
		}
		require.Less(t, i, 1000, "no segment was kept as the spare")
	}
	// Write until the spare is taken again as the next segment: its first
	// commits are written over the old ones.
	for {
		h.put(t, d, "k", "x")
		if _, err := os.Stat(spare); err != nil {
			break
		}
	}
	// The segment before is removed once the database's WAL is durable:
	// the database then holds its commits.
	require.Eventually(t, func() bool {
		segments, err := segmentNumbers(filepath.Join(h.root, "log"))
		require.NoError(t, err)
		return len(segments) == 1
	}, 5*time.Second, 10*time.Millisecond)
	then := t.TempDir()
	copyFiles(t, then, dbFiles(filepath.Join(h.root, "obj.sqlite"))...)
	h.put(t, d, "last", "1")
	after := t.TempDir()
	crash(t, h, then, after)
	require.NoError(t, d.Close())
	segments, err := segmentNumbers(filepath.Join(after, "log"))
	require.NoError(t, err)
	var size int64
	for _, num := range segments {
		info, err := os.Stat(segmentPath(filepath.Join(after, "log"), num))
		require.NoError(t, err)
		size += info.Size()
	}
	require.Len(t, segments, 1)
	require.Greater(t, size, int64(1<<20), "no recycled segment")

	l := openLog(t, after)
	r := l.Recovery()
	t.Logf("read %d of %d bytes of segments", r.Read, size)
	assert.Less(t, r.Read, int64(256<<10), "the recycled segment's old records were read")
	assert.Zero(t, r.Damaged)
	v, ok := get(t, l, filepath.Join(after, "obj.sqlite"), "last")
	assert.True(t, ok, "the last commit was not replayed")
	assert.Equal(t, "1", v)
}

// appendRecordV1 appends a record of the first format, sealed for
// segment num.
func appendRecordV1(b []byte, num uint64, rel string, incarnation uint32, seq uint64, pageSize int, frames []byte) []byte {
	var body []byte
	body = binary.LittleEndian.AppendUint32(body, incarnation)
	body = binary.LittleEndian.AppendUint64(body, seq)
	body = binary.LittleEndian.AppendUint32(body, uint32(pageSize))
	body = binary.LittleEndian.AppendUint16(body, uint16(len(rel)))
	body = append(append(body, rel...), frames...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = binary.LittleEndian.AppendUint32(b, recordCRCV1(num, body))
	return append(b, body...)
}

// TestSegmentsOfTheFirstFormatAreRead: a log written before segments had
// a header (version 1) is still replayed after a crash, and its spare,
// whose records do not say their segment, is not recycled.
func TestSegmentsOfTheFirstFormatAreRead(t *testing.T) {
	frame := make([]byte, walFrameHeaderBytes+512)
	binary.BigEndian.PutUint32(frame, 3)
	var b []byte
	for seq := uint64(1); seq <= 3; seq++ {
		b = appendRecordV1(b, 5, "a.sqlite", 7, seq, 512, frame)
	}
	b = append(b, appendRecordV1(nil, 4, "a.sqlite", 7, 9, 512, frame)...) // a recycled one's old record
	records, damaged, _ := parseRecords(5, b)
	require.Len(t, records, 3)
	assert.Zero(t, damaged)
	for i, r := range records {
		assert.Equal(t, "a.sqlite", r.rel)
		assert.Equal(t, uint64(i+1), r.seq)
		require.Len(t, r.frames, 1)
		assert.Equal(t, uint32(3), r.frames[0].pgno)
	}

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, spareName), b, 0o644))
	l, err := OpenLog(dir, t.TempDir(), LogOptions{})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	spare, err := os.ReadFile(filepath.Join(dir, spareName)) // the segment it closed
	require.NoError(t, err)
	assert.Equal(t, segmentHeader, spare[:segmentHeaderBytes], "a spare of the first format was kept")
}

// TestACrashWhileReplayingLosesNothing: a replay cut short (here: its copy
// of the database left half written) leaves the database as it was, and
// the next start replays everything.
func TestACrashWhileReplayingLosesNothing(t *testing.T) {
	h, d, path := oneObject(t)
	then := t.TempDir()
	copyFiles(t, then, path)
	for i := range 30 {
		h.put(t, d, fmt.Sprint("k", i), fmt.Sprint(i))
	}
	after := t.TempDir()
	crash(t, h, then, after)
	require.NoError(t, d.Close())
	require.NoError(t, h.log.Close())
	moved := filepath.Join(after, "obj.sqlite")
	before, err := os.ReadFile(moved)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(moved+".replay", before[:len(before)/2], 0o644)) // the cut replay's copy

	l := openLog(t, after)
	v, ok := get(t, l, moved, "k29")
	assert.True(t, ok)
	assert.Equal(t, "29", v)
	assert.NoFileExists(t, moved+".replay")
}

// TestLogDoesNotReplayIntoAnInstalledSnapshot: a snapshot installed in
// place of a database (a cluster host adopting an object) carries the
// incarnation of the file it was copied from, which can be this one's
// (this host owned the object before), and a commit number below the
// replaced file's: after a crash the replaced file's commits still in the
// log are not replayed into it.
func TestLogDoesNotReplayIntoAnInstalledSnapshot(t *testing.T) {
	h := openHost(t, t.TempDir())
	path := filepath.Join(h.root, "obj.sqlite")
	d := Lazy(path, h.log)
	h.put(t, d, "a", "snapshot")
	snap := filepath.Join(t.TempDir(), "snap.sqlite")
	_, err := d.SnapshotTo(snap)
	require.NoError(t, err)
	for i := range 20 {
		h.put(t, d, fmt.Sprint("k", i), strings.Repeat("x", 1000))
		h.put(t, d, "a", fmt.Sprint("replaced ", i))
	}
	require.NoError(t, d.Close())
	data, err := os.ReadFile(snap)
	require.NoError(t, err)
	require.NoError(t, Install(path, data))

	after := t.TempDir() // killed: the log still holds the replaced file's commits
	require.NoError(t, os.CopyFS(after, os.DirFS(h.root)))
	require.NoError(t, h.log.Close())
	l, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	v, _ := get(t, l, filepath.Join(after, "obj.sqlite"), "a")
	assert.Equal(t, "snapshot", v)
	_, ok := get(t, l, filepath.Join(after, "obj.sqlite"), "k0")
	assert.False(t, ok)
}

// TestLogClosedAsItRotatesLeavesNoSegment: Close racing the rotation its
// own last write set off still leaves no segment behind, and no segment
// begun after it.
func TestLogClosedAsItRotatesLeavesNoSegment(t *testing.T) {
	defer func(old int64) { segmentBytes = old }(segmentBytes)
	segmentBytes = 1 // every write rotates
	for i := range 50 {
		h := openHost(t, t.TempDir())
		d := Lazy(filepath.Join(h.root, "obj.sqlite"), h.log)
		d.BeginEvent()
		require.NoError(t, d.Put([]byte("a"), []byte(fmt.Sprint(i))))
		require.NoError(t, d.EndEvent(false))
		require.NoError(t, d.Commit()) // Close's write is of this commit
		require.NoError(t, h.log.Close())
		d.Close()                         // its commit was synced, but not through it: it says it may be lost
		time.Sleep(10 * time.Millisecond) // for what runs on after Close
		nums, err := segmentNumbers(filepath.Join(h.root, "log"))
		require.NoError(t, err)
		require.Empty(t, nums, "round %d: segments left after Close", i)
	}
}

// TestObjectMayNotSetApplicationID: an object's SQL may not set the
// header's application_id, where the log keeps the file's incarnation: a
// database made durable with another one would not take the commits
// acknowledged after it at the next replay (they were logged with the
// incarnation the file had when opened). Reading it is allowed.
func TestObjectMayNotSetApplicationID(t *testing.T) {
	d := lazy(filepath.Join(t.TempDir(), "obj.sqlite"))
	defer d.Close()
	d.BeginEvent()
	for _, q := range []string{
		"PRAGMA application_id = 7",
		"pragma main.application_id=7",
		"/* x */ PRAGMA \"main\".\"application_id\" (7)",
		"PRAGMA\n\tapplication_id\n=\n7;",
	} {
		_, err := d.Exec(q)
		assert.ErrorIs(t, err, ErrReserved, q)
	}
	_, err := d.Exec("PRAGMA application_id")
	require.NoError(t, err)
	_, err = d.Exec("CREATE TABLE apps (application_id INTEGER)")
	require.NoError(t, err)
	_, err = d.Exec("UPDATE apps SET application_id = 7 WHERE application_id = (1)")
	require.NoError(t, err)
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
}

// TestLogGoesOnAfterARotationMetADescriptorShortage: a new segment begun
// while the process is out of descriptors (EMFILE) waits for one, as the
// syncs of WALs do, rather than leave the log failing every commit of the
// host until it restarts.
func TestLogGoesOnAfterARotationMetADescriptorShortage(t *testing.T) {
	defer func(old int64) { segmentBytes = old }(segmentBytes)
	segmentBytes = 1 // every write rotates
	h := openHost(t, t.TempDir())
	defer h.log.Close()
	d := Lazy(filepath.Join(h.root, "obj.sqlite"), h.log)
	defer d.Close()
	h.put(t, d, "a", "1")
	time.Sleep(shortageGap) // an earlier test's shortage is over
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("a"), []byte("2")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Commit())
	restore := exhaustDescriptors(t)
	synced := make(chan error, 1)
	go func() { synced <- d.Flush() }() // writes, then rotates
	time.Sleep(300 * time.Millisecond)
	restore()
	require.NoError(t, <-synced)
	h.put(t, d, "a", "3") // the next segment is written
}

// TestLogGoesOnInItsSegmentWhenNoNewOneCanBegin: when the next segment
// cannot be created, the log goes on writing the one it has, and begins
// the next once it can, rather than fail every later commit of the host.
func TestLogGoesOnInItsSegmentWhenNoNewOneCanBegin(t *testing.T) {
	defer func(old int64) { segmentBytes = old }(segmentBytes)
	segmentBytes = 1 // every write rotates
	h := openHost(t, t.TempDir())
	d := Lazy(filepath.Join(h.root, "obj.sqlite"), h.log)
	h.put(t, d, "a", "1")
	h.log.mu.Lock()
	num := h.log.seg.num // or the one before, if its rotation is under way
	h.log.mu.Unlock()
	var blocked []string // the next segment's name is taken
	for _, n := range []uint64{num + 1, num + 2} {
		if err := os.Mkdir(segmentPath(h.log.dir, n), 0o755); err == nil {
			blocked = append(blocked, segmentPath(h.log.dir, n))
		}
	}
	h.put(t, d, "a", "2")
	h.put(t, d, "a", "3")
	for _, b := range blocked {
		require.NoError(t, os.Remove(b))
	}
	h.put(t, d, "a", "4")
	h.put(t, d, "a", "5")
	require.NoError(t, d.Close())
	require.NoError(t, h.log.Close())

	l, err := OpenLog(filepath.Join(h.root, "log"), h.root, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	v, _ := get(t, l, filepath.Join(h.root, "obj.sqlite"), "a")
	assert.Equal(t, "5", v)
}

// TestADatabaseThatCannotBeReplayedIntoStopsOnlyItself: a damaged database
// with commits in the log does not stop the host from starting: the others
// are replayed, it refuses to open (ErrUnreplayed) rather than serve a file
// that may lack acknowledged commits, and the log keeps its segments, so
// once the file is mended the next start replays them.
func TestADatabaseThatCannotBeReplayedIntoStopsOnlyItself(t *testing.T) {
	h, d, path := oneObject(t)
	other := Lazy(filepath.Join(h.root, "other.sqlite"), h.log)
	h.put(t, other, "o", "1")
	then := t.TempDir()
	copyFiles(t, then, path, other.path)
	h.put(t, d, "a", "2")
	h.put(t, other, "o", "2")
	after := t.TempDir()
	crash(t, h, then, after)
	good, err := os.ReadFile(filepath.Join(after, "obj.sqlite"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(after, "obj.sqlite"), []byte(strings.Repeat("damaged!", 512)), 0o644))

	l, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{})
	require.NoError(t, err, "one damaged database stopped the host")
	damaged := filepath.Join(after, "obj.sqlite")
	require.Contains(t, l.Recovery().Unreplayed, damaged)
	assert.Contains(t, l.Recovery().Unreplayed[damaged].Error(), "not a database")
	v, _ := get(t, l, filepath.Join(after, "other.sqlite"), "o")
	assert.Equal(t, "2", v, "the other database was replayed")
	_, _, err = Lazy(damaged, l).Get([]byte("a"))
	assert.ErrorIs(t, err, ErrUnreplayed)
	require.NoError(t, l.Close())

	require.NoError(t, os.WriteFile(damaged, good, 0o644)) // mended: the file as the crash left it
	l = openLog(t, after)
	assert.Empty(t, l.Recovery().Unreplayed)
	v, _ = get(t, l, damaged, "a")
	assert.Equal(t, "2", v, "the kept segments were replayed once the file was mended")
}

// TestOtherFilesInTheLogAreNotSegments: a file in the log's directory that
// is not named as a segment (16 hex digits, .log) is left alone, and does
// not stop the host from starting.
func TestOtherFilesInTheLogAreNotSegments(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "log")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, name := range []string{"bad.log", "abc.log", "notes.txt", "00000000000000001.log"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644))
	}
	l := openLog(t, root)
	assert.Zero(t, l.Recovery().Segments)
	assert.FileExists(t, filepath.Join(dir, "bad.log"))
}

// TestARecordWithoutACommitFrameIsNotReplayed: commits whose frames hold no
// commit frame (the database's size) are refused, not replayed as a
// database of no pages.
func TestARecordWithoutACommitFrameIsNotReplayed(t *testing.T) {
	_, d, path := oneObject(t)
	require.NoError(t, d.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	page := make([]byte, 4096)
	err = writeReplayed(path, []logRecord{{seq: 2, pageSize: 4096, frames: []walFrame{{pgno: 2, page: page}}}}, false)
	assert.ErrorContains(t, err, "no commit frame")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the database was changed")
}

// TestFramesPastTheLastValidOneAreNotLogged: what follows the last commit in
// a WAL with the current salts but a checksum that does not chain on (frames
// a crash left half written, which SQLite writes over) is not logged as
// part of the next commit; replaying it would put back older pages.
func TestFramesPastTheLastValidOneAreNotLogged(t *testing.T) {
	h, d, path := oneObject(t)
	then := t.TempDir()
	copyFiles(t, then, path) // the file alone: every commit is replayed
	wal, err := os.ReadFile(path + "-wal")
	require.NoError(t, err)
	frameBytes := walFrameHeaderBytes + int(binary.BigEndian.Uint32(wal[8:12]))
	first := wal[len(wal)-2*frameBytes:] // the first commit's frames: its key-value page, then its commit frame
	f, err := os.OpenFile(path+"-wal", os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	for range 3 {
		_, err = f.Write(first)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	h.put(t, d, "b", "2") // written over the first copies only
	after := t.TempDir()
	crash(t, h, then, after)
	require.NoError(t, d.Close())
	l := openLog(t, after)
	v, ok := get(t, l, filepath.Join(after, "obj.sqlite"), "b")
	assert.True(t, ok, "the stale frames logged with the commit put the older page back")
	assert.Equal(t, "2", v)
}

// TestDamagedRecords: a record damaged inside a segment (its frames, its
// head, or its length, smaller or larger) is passed over to the next valid
// record, which is read, and counted, so the host can say commits were
// lost; a damaged length used to hide the records after it as if they
// were the log's torn end. A record whose head is whole is read as
// damaged, so its database is known to miss the commit. A damaged last
// record is the torn end, not damage.
func TestDamagedRecords(t *testing.T) {
	b, _ := segmentOfBatches([][]uint64{{1}, {2}, {3}}) // each in its own batch, synced before the next
	size := (len(b) - segmentHeaderBytes) / 3
	second := segmentHeaderBytes + size
	for name, c := range map[string]struct {
		at            int
		bit           byte
		seqs, damaged []uint64
		count         int
	}{
		"frames":                  {second + 100, 0x01, []uint64{1, 3}, []uint64{2}, 1},
		"head":                    {second + 30, 0x01, []uint64{1, 3}, nil, 1},
		"length smaller":          {second + 17, 0x01, []uint64{1, 3}, nil, 1},
		"length past the segment": {second + 19, 0x80, []uint64{1, 3}, nil, 1},
		"length a page larger":    {second + 17, 0x02, []uint64{1, 3}, nil, 1},
		"the last record":         {segmentHeaderBytes + 2*size + 100, 0x01, []uint64{1, 2}, nil, 0},
	} {
		t.Run(name, func(t *testing.T) {
			data := slices.Clone(b)
			data[c.at] ^= c.bit
			records, count, _ := parseRecords(9, data)
			var seqs, damaged []uint64
			for _, r := range records {
				if r.damaged {
					damaged = append(damaged, r.seq)
				} else {
					seqs = append(seqs, r.seq)
				}
			}
			assert.Equal(t, c.seqs, seqs)
			assert.Equal(t, c.damaged, damaged)
			assert.Equal(t, c.count, count)
		})
	}
}

// TestADamagedLastCommitOfAnObjectStopsIt: a record damaged inside the log
// whose commit was its database's last (no later commit of it shows the
// gap) keeps the database from opening, as a missing commit before later
// ones does, when the database lacks that commit; the other databases are
// replayed. The same record at the log's end is its torn end: the
// database opens without it.
func TestADamagedLastCommitOfAnObjectStopsIt(t *testing.T) {
	for _, inside := range []bool{true, false} {
		t.Run(fmt.Sprint("inside=", inside), func(t *testing.T) {
			h := openHost(t, t.TempDir())
			a, b := filepath.Join(h.root, "a.sqlite"), filepath.Join(h.root, "b.sqlite")
			da, db := Lazy(a, h.log), Lazy(b, h.log)
			h.put(t, da, "a", "1")
			h.put(t, db, "b", "1")
			then := t.TempDir()
			copyFiles(t, then, append(dbFiles(a), dbFiles(b)...)...)
			h.put(t, da, "a", "2") // a's last commit
			if inside {
				h.put(t, db, "b", "2")
			}
			after := t.TempDir()
			crash(t, h, then, after)
			require.NoError(t, da.Close())
			require.NoError(t, db.Close())
			segment := segmentPath(filepath.Join(after, "log"), must(segmentNumbers(filepath.Join(after, "log")))[0])
			data, err := os.ReadFile(segment)
			require.NoError(t, err)
			last := -1 // a's last record
			for off := segmentHeaderBytes; off+recordHeadBytes <= len(data); {
				n := int(binary.LittleEndian.Uint32(data[off+16:]))
				if n == 0 {
					break
				}
				if strings.HasPrefix(string(data[off+recordHeadBytes:]), "a.sqlite") {
					last = off + n
				}
				off += n
			}
			require.Positive(t, last)
			data[last-10] ^= 1 // in its frames
			require.NoError(t, os.WriteFile(segment, data, 0o644))

			l := openLog(t, after)
			r := l.Recovery()
			if !inside {
				assert.Zero(t, r.Damaged)
				assert.Empty(t, r.Unreplayed, "the torn end kept a database from opening")
				v, _ := get(t, l, filepath.Join(after, "a.sqlite"), "a")
				assert.Equal(t, "1", v)
				return
			}
			assert.Equal(t, 1, r.Damaged)
			assert.ErrorContains(t, r.Unreplayed[filepath.Join(after, "a.sqlite")], "damaged")
			_, _, err = Lazy(filepath.Join(after, "a.sqlite"), l).Get([]byte("a"))
			assert.ErrorIs(t, err, ErrUnreplayed, "the database missing its last commit was opened")
			v, _ := get(t, l, filepath.Join(after, "b.sqlite"), "b")
			assert.Equal(t, "2", v)
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAFaultReadingASegmentIsAnError: segments are mapped, so a read the
// disk fails is a fault; recovery returns it as an error instead of
// crashing the host. A file that shrank after its mapping faults alike.
func TestAFaultReadingASegmentIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "segment")
	require.NoError(t, os.WriteFile(path, make([]byte, 1<<20), 0o644))
	err := faultAsError(func() error {
		data, unmap, err := mapSegment(path)
		require.NoError(t, err)
		defer unmap()
		require.NoError(t, os.Truncate(path, 0))
		if data[len(data)-1] != 0 { // faults
			return errors.New("the page read back is not what was written")
		}
		return nil
	})
	assert.ErrorContains(t, err, "commit log: reading a segment failed: runtime error: invalid memory address or nil pointer dereference")
}

// TestADamagedSegmentHeaderHidesNoRecords: a segment whose header is
// damaged (one bit of its magic, version or padding) is still read for
// its whole records, the header counted as damage; it was read as of the
// first format, which found none, and the database opened without its
// acknowledged commit, nothing said.
func TestADamagedSegmentHeaderHidesNoRecords(t *testing.T) {
	for name, at := range map[string]int{"magic": 3, "version": 8, "padding": 14} {
		t.Run(name, func(t *testing.T) {
			h := openHost(t, t.TempDir())
			a := filepath.Join(h.root, "a.sqlite")
			da := Lazy(a, h.log)
			h.put(t, da, "a", "1")
			then := t.TempDir()
			copyFiles(t, then, dbFiles(a)...)
			h.put(t, da, "a", "2")
			after := t.TempDir()
			crash(t, h, then, after)
			require.NoError(t, da.Close())
			segment := segmentPath(filepath.Join(after, "log"), must(segmentNumbers(filepath.Join(after, "log")))[0])
			data, err := os.ReadFile(segment)
			require.NoError(t, err)
			data[at] ^= 1
			require.NoError(t, os.WriteFile(segment, data, 0o644))

			l := openLog(t, after)
			assert.Equal(t, 1, l.Recovery().Damaged)
			v, _ := get(t, l, filepath.Join(after, "a.sqlite"), "a")
			assert.Equal(t, "2", v, "the commit of a segment whose header is damaged was lost")
		})
	}
}
