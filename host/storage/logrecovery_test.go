package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// batchHost is a host with databases a, b and c, each holding k=1
// durably, whose later commits are written to the log in batches.
type batchHost struct {
	*host
	dbs map[string]*DB
	// then is a copy of the databases' files as they were before the
	// batches; commits counts each database's commits since.
	then    string
	commits map[string]int
}

func newBatchHost(t *testing.T) *batchHost {
	t.Helper()
	h := &batchHost{host: openHost(t, t.TempDir()), dbs: map[string]*DB{}, then: t.TempDir(), commits: map[string]int{}}
	for _, name := range []string{"a", "b", "c"} {
		d := Lazy(filepath.Join(h.root, name+".sqlite"), h.log)
		h.put(t, d, "k", "1")
		h.dbs[name] = d
		copyFiles(t, h.then, dbFiles(d.path)...)
	}
	return h
}

// batch commits k of each database named, in order (a database's n-th
// commit since the batches began sets k=n+1), and writes them to the log
// in one write: one sync is asked for once all are committed.
func (h *batchHost) batch(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		d := h.dbs[name]
		h.commits[name]++
		d.BeginEvent()
		require.NoError(t, d.Put([]byte("k"), []byte(fmt.Sprint(h.commits[name]+1))))
		require.NoError(t, d.EndEvent(false))
		require.NoError(t, d.Commit())
	}
	require.NoError(t, h.dbs[names[0]].Flush())
}

// crash is a copy of the host's data directory as a power cut after the
// batches would leave it: the databases as they were before them, the log
// as it is. The databases are closed.
func (h *batchHost) crash(t *testing.T) string {
	t.Helper()
	after := t.TempDir()
	crash(t, h.host, h.then, after)
	for _, d := range h.dbs {
		d.Close()
	}
	return after
}

// writtenRecord is a record of a segment file: where it begins, its
// length and its database.
type writtenRecord struct {
	segment string
	off, n  int
	name    string
}

// writtenRecords are the records of the segments of the log of data
// directory root, in log order, walked by their lengths.
func writtenRecords(t *testing.T, root string) []writtenRecord {
	t.Helper()
	var records []writtenRecord
	for _, num := range must(segmentNumbers(filepath.Join(root, "log"))) {
		segment := segmentPath(filepath.Join(root, "log"), num)
		data, err := os.ReadFile(segment)
		require.NoError(t, err)
		for off := segmentHeaderBytes; off+recordHeadBytes <= len(data); {
			n := int(binary.LittleEndian.Uint32(data[off+16:]))
			if n == 0 {
				break
			}
			name, _, _ := strings.Cut(string(data[off+recordHeadBytes:off+n]), ".sqlite")
			records = append(records, writtenRecord{segment, off, n, name})
			off += n
		}
	}
	return records
}

// damageRecord flips a bit of the record of database name that is fromEnd
// records before its last in the log of data directory root: in its
// frames, or in its head (its path), and says the record's segment.
func damageRecord(t *testing.T, root, name string, fromEnd int, where string) string {
	t.Helper()
	var its []writtenRecord
	for _, r := range writtenRecords(t, root) {
		if r.name == name {
			its = append(its, r)
		}
	}
	require.Greater(t, len(its), fromEnd)
	r := its[len(its)-1-fromEnd]
	at := map[string]int{"frames": r.off + r.n - 10, "head": r.off + recordHeadBytes + 1}[where]
	flipBit(t, r.segment, at)
	return r.segment
}

// flipBit flips the lowest bit of byte at of the file at path.
func flipBit(t *testing.T, path string, at int) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[at] ^= 1
	require.NoError(t, os.WriteFile(path, data, 0o644))
}

// requireLastBatch checks that the last batch of the log of data directory
// root, read as unsynced, is the last records of the databases named, in
// order.
func requireLastBatch(t *testing.T, root string, names ...string) {
	t.Helper()
	var unsynced []string // of the last segment with records
	for _, num := range must(segmentNumbers(filepath.Join(root, "log"))) {
		data, err := os.ReadFile(segmentPath(filepath.Join(root, "log"), num))
		require.NoError(t, err)
		if records, _, _ := parseRecords(num, data); len(records) > 0 {
			unsynced = nil
			for _, r := range records {
				if r.unsynced {
					unsynced = append(unsynced, strings.TrimSuffix(r.rel, ".sqlite"))
				}
			}
		}
	}
	require.Equal(t, names, unsynced)
	written := writtenRecords(t, root)
	var last []string
	for _, r := range written[len(written)-len(names):] {
		last = append(last, r.name)
	}
	require.Equal(t, names, last, "the last batch is not the log's last records")
}

// value is k of the database name in data directory root, opened with l.
func value(t *testing.T, l *Log, root, name string) string {
	t.Helper()
	v, _ := get(t, l, filepath.Join(root, name+".sqlite"), "k")
	return v
}

// TestLogTornLastBatchLosesOnlyItsDamagedCommits: the last batch a crash
// left half written (none of its commits acknowledged) may have a record
// damaged before an intact one: its pages reach the disk in any order.
// That database opens at its commit before (it is not refused, as for
// damage inside the log), and the others of the batch are replayed. The
// same when the batch was the first of a segment, whose header, synced
// with it, is damaged too.
func TestLogTornLastBatchLosesOnlyItsDamagedCommits(t *testing.T) {
	for _, c := range []struct {
		name, where string
		newSegment  bool
	}{
		{"frames", "frames", false},
		{"head", "head", false},
		{"frames, first batch of a segment, its header torn", "frames", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newBatchHost(t)
			if c.newSegment {
				h.log.mu.Lock()
				seg := h.log.seg
				h.log.mu.Unlock()
				h.log.rotate(seg, false)
			}
			h.batch(t, "a", "b", "c")
			after := h.crash(t)
			requireLastBatch(t, after, "a", "b", "c")
			segment := damageRecord(t, after, "a", 0, c.where)
			if c.newSegment {
				var in []string
				for _, r := range writtenRecords(t, after) {
					if r.segment == segment {
						in = append(in, r.name)
					}
				}
				require.Equal(t, []string{"a", "b", "c"}, in, "the batch is not the first of its segment")
				flipBit(t, segment, 3) // the magic
			}

			l := openLog(t, after)
			r := l.Recovery()
			assert.Empty(t, r.Unreplayed, "a database lacking a commit of the torn batch was refused")
			assert.Zero(t, r.Damaged, "the torn batch counted as damage inside the log")
			assert.Equal(t, "1", value(t, l, after, "a"))
			assert.Equal(t, "2", value(t, l, after, "b"))
			assert.Equal(t, "2", value(t, l, after, "c"))
		})
	}
}

// TestLogDamageInASyncedBatchStillStopsItsDatabase: the same damage in a
// batch a later one followed (it was synced, its commits acknowledged) is
// damage inside the log: the database is not opened without its commit.
func TestLogDamageInASyncedBatchStillStopsItsDatabase(t *testing.T) {
	for where, message := range map[string]string{
		"frames": "is damaged: the commit is lost",
		"head":   "commits are missing", // its commit after, in the last batch, shows the gap
	} {
		t.Run(where, func(t *testing.T) {
			h := newBatchHost(t)
			h.batch(t, "a", "b", "c")
			h.batch(t, "a", "b")
			after := h.crash(t)
			requireLastBatch(t, after, "a", "b")
			damageRecord(t, after, "a", 1, where)

			l := openLog(t, after)
			r := l.Recovery()
			assert.Equal(t, 1, r.Damaged)
			a := filepath.Join(after, "a.sqlite")
			require.Contains(t, r.Unreplayed, a)
			assert.ErrorContains(t, r.Unreplayed[a], message)
			_, _, err := Lazy(a, l).Get([]byte("k"))
			assert.ErrorIs(t, err, ErrUnreplayed)
			assert.Equal(t, "3", value(t, l, after, "b"))
			assert.Equal(t, "2", value(t, l, after, "c"))
		})
	}
}

// TestLogAcceptLostCommitsOpensTheDatabaseWithoutThem: a database lacking
// a commit the log has no whole record of is refused at every start, the
// commit being lost for good, unless the log is opened accepting the loss:
// then it opens at its commit before that one, the commits it goes
// without are reported, and the log keeps no segment for it, so the next
// start, without the option, opens it with the writes made since.
func TestLogAcceptLostCommitsOpensTheDatabaseWithoutThem(t *testing.T) {
	for where, message := range map[string]string{
		"frames": "is damaged: the commit is lost",
		"head":   "commits are missing",
	} {
		t.Run(where, func(t *testing.T) {
			h := newBatchHost(t)
			h.batch(t, "a", "b", "c")
			h.batch(t, "a", "b")
			after := h.crash(t)
			damageRecord(t, after, "a", 1, where)
			first, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{})
			require.NoError(t, err)
			var lost *Lost
			require.ErrorAs(t, first.Recovery().Unreplayed[filepath.Join(after, "a.sqlite")], &lost)
			require.NoError(t, first.Close())

			l, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{AcceptLostCommits: true})
			require.NoError(t, err)
			r := l.Recovery()
			a := filepath.Join(after, "a.sqlite")
			assert.Empty(t, r.Unreplayed)
			require.Contains(t, r.LostFrom, a)
			assert.Equal(t, *lost, r.LostFrom[a], "the commits given up are not those refused")
			assert.Equal(t, uint64(1), r.LostFrom[a].Through-r.LostFrom[a].From, "a's two commits after k=1 are not the ones lost")
			assert.Contains(t, r.LostFrom[a].Why, message)
			assert.Len(t, r.LostFrom, 1, "a database the log has whole was reported lost")
			assert.Equal(t, "1", value(t, l, after, "a"))
			assert.Equal(t, "3", value(t, l, after, "b"))
			assert.Equal(t, "2", value(t, l, after, "c"))
			d := Lazy(a, l)
			(&host{root: after, log: l}).put(t, d, "k", "9")
			d.Close()
			require.NoError(t, l.Close())

			again := openLog(t, after)
			assert.Empty(t, again.Recovery().Unreplayed)
			assert.Empty(t, again.Recovery().LostFrom)
			assert.Equal(t, "9", value(t, again, after, "a"))
		})
	}
}

// TestLogTornBatchLosesTheCommitsAfterItsDamagedOne: a database with two
// commits in the torn batch, the first damaged, opens at its commit before
// both: the second cannot be replayed without the first.
func TestLogTornBatchLosesTheCommitsAfterItsDamagedOne(t *testing.T) {
	for _, where := range []string{"frames", "head"} {
		t.Run(where, func(t *testing.T) {
			h := newBatchHost(t)
			h.batch(t, "a", "b", "a")
			after := h.crash(t)
			requireLastBatch(t, after, "a", "b", "a")
			damageRecord(t, after, "a", 1, where)

			l := openLog(t, after)
			r := l.Recovery()
			assert.Empty(t, r.Unreplayed)
			assert.Zero(t, r.Damaged)
			assert.Equal(t, "1", value(t, l, after, "a"))
			assert.Equal(t, "2", value(t, l, after, "b"))
		})
	}
}

// TestLogRecoveryCountsTheCommitsDroppedFromATornBatch: the commits of a
// torn last batch that are not replayed are counted, per database and in
// all: a database's damaged one, those missing before it (a record whose
// head is damaged is not read) and those after it in the batch; not
// those replayed, nor the commits of the databases the batch holds whole.
func TestLogRecoveryCountsTheCommitsDroppedFromATornBatch(t *testing.T) {
	for _, c := range []struct {
		name     string
		batches  [][]string
		damage   map[string]int // a database's record, counted from its last
		where    string
		dropped  map[string]int
		replayed int
	}{
		{"frames", [][]string{{"a", "b", "a"}}, map[string]int{"a": 1}, "frames", map[string]int{"a": 2}, 1},
		{"head", [][]string{{"a", "b", "a"}}, map[string]int{"a": 1}, "head", map[string]int{"a": 2}, 1},
		{"two databases, after a synced batch", [][]string{{"a", "b", "c"}, {"a", "b", "a", "b", "c"}},
			map[string]int{"a": 1, "b": 0}, "frames", map[string]int{"a": 2, "b": 1}, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newBatchHost(t)
			for _, b := range c.batches {
				h.batch(t, b...)
			}
			after := h.crash(t)
			requireLastBatch(t, after, c.batches[len(c.batches)-1]...)
			for name, fromEnd := range c.damage {
				damageRecord(t, after, name, fromEnd, c.where)
			}

			l := openLog(t, after)
			r := l.Recovery()
			require.Empty(t, r.Unreplayed)
			dropped := map[string]int{}
			total := 0
			for name, n := range c.dropped {
				dropped[filepath.Join(after, name+".sqlite")] = n
				total += n
			}
			assert.Equal(t, dropped, r.DroppedFrom)
			assert.Equal(t, total, r.Dropped)
			assert.Equal(t, c.replayed, r.Commits)
			assert.Zero(t, r.Damaged)
		})
	}
}

// TestLogCommitsDroppedFromATornBatchStayDropped: the log keeps its segments
// when a database could not be replayed into; the next start reads the
// torn batch, no longer in the newest segment, as this one did, and
// replays the commits made since in place of the dropped ones (their
// numbers again), rather than refuse the database or replay the dropped
// ones.
func TestLogCommitsDroppedFromATornBatchStayDropped(t *testing.T) {
	h := newBatchHost(t)
	h.batch(t, "a", "b", "a")
	after := h.crash(t)
	damageRecord(t, after, "a", 1, "frames")
	require.NoError(t, os.WriteFile(filepath.Join(after, "c.sqlite"), []byte(strings.Repeat("damaged!", 512)), 0o644))

	l, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{})
	require.NoError(t, err)
	require.Contains(t, l.Recovery().Unreplayed, filepath.Join(after, "c.sqlite"), "the segments are not kept")
	assert.Equal(t, map[string]int{filepath.Join(after, "a.sqlite"): 2}, l.Recovery().DroppedFrom)
	then := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		copyFiles(t, then, dbFiles(filepath.Join(after, name+".sqlite"))...)
	}
	assert.Equal(t, "1", value(t, l, after, "a"))
	second := &host{root: after, log: l}
	a := Lazy(filepath.Join(after, "a.sqlite"), l)
	second.put(t, a, "k", "again 2")
	second.put(t, a, "k", "again 3")
	again := t.TempDir()
	crash(t, second, then, again)
	require.NoError(t, a.Close())
	require.NoError(t, l.Close())
	require.Len(t, must(segmentNumbers(filepath.Join(again, "log"))), 2)

	l = openLog(t, again)
	assert.Equal(t, map[string]int{filepath.Join(again, "a.sqlite"): 2}, l.Recovery().DroppedFrom,
		"a start that reads the torn batch again counts its dropped commits again")
	assert.Equal(t, "again 3", value(t, l, again, "a"))
	assert.Equal(t, "2", value(t, l, again, "b"))
	assert.Equal(t, []string{filepath.Join(again, "c.sqlite")}, slices.Sorted(maps.Keys(l.Recovery().Unreplayed)))
}

// appendRecordV2 appends a record of version 2 sealed for segment num:
// one of this version without its batch.
func appendRecordV2(b []byte, num uint64, rel string, incarnation uint32, seq uint64, pageSize int, frames []byte) []byte {
	rec := slices.Delete(appendRecord(nil, rel, incarnation, seq, pageSize, frames), batchAt, formatV3.commitAt)
	binary.LittleEndian.PutUint32(rec[lengthAt:], uint32(len(rec)))
	binary.LittleEndian.PutUint64(rec[segmentAt:], num)
	headEnd := formatV2.headEnd(rec)
	head := crc32.Checksum(rec[segmentAt:headEnd], castagnoli)
	binary.LittleEndian.PutUint32(rec[headCRCAt:], head)
	binary.LittleEndian.PutUint32(rec[recordCRCAt:], crc32.Update(head, castagnoli, rec[headEnd:]))
	return append(b, rec...)
}

// TestLogSegmentsOfVersion2AreReadAsTheyWere: a segment of version 2, whose
// records say no batch, is read as before: a record damaged before a valid
// one is damage inside the log, however they were written. The same
// records in one batch of this version are the segment's last batch.
func TestLogSegmentsOfVersion2AreReadAsTheyWere(t *testing.T) {
	frame := make([]byte, walFrameHeaderBytes+512)
	v2 := slices.Clone(formatV2.header)
	v3 := slices.Clone(segmentHeader)
	for seq := uint64(1); seq <= 3; seq++ {
		v2 = appendRecordV2(v2, 9, "a.sqlite", 7, seq, 512, frame)
		v3 = appendRecord(v3, "a.sqlite", 7, seq, 512, frame)
	}
	sealRecords(v3[segmentHeaderBytes:], 9, segmentHeaderBytes)
	for name, c := range map[string]struct {
		data     []byte
		damaged  int
		unsynced bool
	}{
		"version 2": {v2, 1, false},
		"version 3": {v3, 0, true},
	} {
		t.Run(name, func(t *testing.T) {
			data := slices.Clone(c.data)
			data[segmentHeaderBytes+(len(data)-segmentHeaderBytes)/3*2-10] ^= 1 // the second record's frames
			records, damaged, _ := parseRecords(9, data)
			require.Len(t, records, 3)
			assert.Equal(t, c.damaged, damaged)
			for i, r := range records {
				assert.Equal(t, uint64(i+1), r.seq)
				assert.Equal(t, i == 1, r.damaged)
				assert.Equal(t, c.unsynced, r.unsynced)
				if !r.damaged {
					assert.Len(t, r.frames, 1)
				}
			}
		})
	}
}

// TestLogDamageBeginningInASyncedBatchIsInsideTheLog: a damaged stretch
// that begins in a synced batch and runs into the last one is damage
// inside the log, however far it runs: a commit missing before a record
// after it may have been acknowledged.
func TestLogDamageBeginningInASyncedBatchIsInsideTheLog(t *testing.T) {
	b, starts := segmentOfBatches([][]uint64{{1, 2}, {3, 4}})
	clear(b[starts[1]+lengthAt : starts[2]+lengthAt]) // from the second record's head into the third's
	records, damaged, _ := parseRecords(9, b)
	require.Len(t, records, 2)
	assert.Equal(t, 1, damaged)
	first, last := records[0], records[1]
	assert.Equal(t, []uint64{1, 4}, []uint64{first.seq, last.seq})
	assert.False(t, first.unsynced)
	assert.True(t, last.unsynced)
	assert.NotEqual(t, first.damageBefore, last.damageBefore, "the stretch is not between them")
}

// segmentOfBatches is a segment (number 9) of database a.sqlite's commits,
// written and sealed in batches (each a write of its own), and where each
// record begins.
func segmentOfBatches(batches [][]uint64) (b []byte, starts []int) {
	frame := make([]byte, walFrameHeaderBytes+512)
	b = slices.Clone(segmentHeader)
	for _, batch := range batches {
		start := len(b)
		for _, seq := range batch {
			starts = append(starts, len(b))
			b = appendRecord(b, "a.sqlite", 7, seq, 512, frame)
		}
		sealRecords(b[start:], 9, int64(start))
	}
	return b, starts
}

// TestLogAcceptedLossIsNotUndoneWhileTheSegmentsStay: the log keeps its
// segments while another database cannot be replayed into (c, damaged);
// a database opened without its lost commits must not be given them back
// by a later start, which reads those segments again: neither refused
// again (the loss was accepted), nor given its old commits after the lost
// one over the writes made since (a's old k=4 and k=5 over "again").
func TestLogAcceptedLossIsNotUndoneWhileTheSegmentsStay(t *testing.T) {
	for _, name := range []string{"no write since", "a write since"} {
		t.Run(name, func(t *testing.T) {
			h := newBatchHost(t)
			h.batch(t, "a", "b")
			h.batch(t, "a", "b")
			h.batch(t, "a", "b")
			h.batch(t, "a", "b")
			h.batch(t, "b")
			after := h.crash(t)
			damageRecord(t, after, "a", 2, "frames") // a's k=3
			require.NoError(t, os.WriteFile(filepath.Join(after, "c.sqlite"), []byte(strings.Repeat("damaged!", 512)), 0o644))
			a := filepath.Join(after, "a.sqlite")

			l, err := OpenLog(filepath.Join(after, "log"), after, LogOptions{AcceptLostCommits: true})
			require.NoError(t, err)
			require.Contains(t, l.Recovery().Unreplayed, filepath.Join(after, "c.sqlite"), "the segments are not kept")
			require.Contains(t, l.Recovery().LostFrom, a)
			assert.Equal(t, "2", value(t, l, after, "a"))
			want := "2"
			if name == "a write since" {
				d := Lazy(a, l)
				(&host{root: after, log: l}).put(t, d, "k", "again")
				require.NoError(t, d.Close())
				want = "again"
			}
			require.NoError(t, l.Close())
			require.NotEmpty(t, must(segmentNumbers(filepath.Join(after, "log"))))

			again := openLog(t, after)
			assert.NotContains(t, again.Recovery().Unreplayed, a, "the accepted loss is refused again")
			assert.Empty(t, again.Recovery().LostFrom)
			assert.Equal(t, want, value(t, again, after, "a"))
			assert.Equal(t, "6", value(t, again, after, "b"))
		})
	}
}

// TestRecoveryBroughtBackNamesEachDatabaseOnce: the databases a start
// brings back to an earlier commit are those of a torn batch and those
// whose loss was accepted, sorted, each once.
func TestRecoveryBroughtBackNamesEachDatabaseOnce(t *testing.T) {
	r := Recovery{DroppedFrom: map[string]int{"/d/C/b.sqlite": 1, "/d/C/a.sqlite": 2},
		LostFrom: map[string]Lost{"/d/C/c.sqlite": {}, "/d/C/a.sqlite": {}}}
	assert.Equal(t, []string{"/d/C/a.sqlite", "/d/C/b.sqlite", "/d/C/c.sqlite"}, r.BroughtBack())
	assert.Empty(t, Recovery{}.BroughtBack())
}
