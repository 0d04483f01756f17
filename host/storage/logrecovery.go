package storage

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Recovery is what OpenLog found in the log and replayed.
type Recovery struct {
	// Segments were in the log; Commits were replayed, into Databases;
	// Damaged records were found inside the log (not at its torn end, nor
	// in the last batch of a segment, which may not have been synced):
	// their commits are lost (a database known to lack one is
	// Unreplayed).
	Segments, Databases, Commits, Damaged int
	// Dropped commits were in the last batch of a segment, torn by a
	// crash before it was synced (none of them acknowledged), and not
	// replayed: a database's commits from the first one damaged or
	// missing there to its last one in the batch. DroppedFrom says how
	// many of each database (by path; one Unreplayed is in neither). Only
	// commits the batch shows are counted: not one whose record is torn
	// with no record of its database after it in the batch (as at the
	// log's torn end). A start that reads the batch again (the segments
	// stay while a database is Unreplayed) counts its commits again.
	Dropped     int
	DroppedFrom map[string]int
	// Read is the bytes of the segments read: up to the end of their
	// records, not the rest of a recycled segment's file.
	Read int64
	// Took is how long reading and replaying took.
	Took time.Duration
	// Unreplayed are the databases that could not be replayed into, and
	// why (see ErrUnreplayed).
	Unreplayed map[string]error
	// LostFrom are the databases, by path, that lacked a commit the log
	// has no whole record of (damaged or missing inside it) when the log
	// was opened with LogOptions.AcceptLostCommits: each was brought up to
	// the commit before it and opens without it and its later ones, which
	// Lost says.
	LostFrom map[string]Lost
}

// BroughtBack are the databases, by path and sorted, that open at an
// earlier commit than their last one in the log: those of DroppedFrom and
// LostFrom.
func (r Recovery) BroughtBack() []string {
	paths := slices.Collect(maps.Keys(r.DroppedFrom))
	for p := range r.LostFrom {
		if _, ok := r.DroppedFrom[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return paths
}

// Lost are a database's commits the log cannot bring it up to: From, its
// first the log has no whole record of, through Through, its last in the
// log. It is the error a database is Unreplayed with, unless the log was
// opened with LogOptions.AcceptLostCommits, which gives them up.
type Lost struct {
	From, Through uint64
	// Why is what the log lacks.
	Why string
}

// Error says what the log lacks.
func (l *Lost) Error() string { return l.Why }

// LogOptions are how OpenLog treats what it finds.
type LogOptions struct {
	// AcceptLostCommits opens a database lacking a commit that the log
	// has no whole record of (damaged inside it, or missing) at its commit
	// before that one, instead of refusing it (ErrUnreplayed) until the
	// next start: such a commit cannot be recovered from the log, so an
	// operator who has no copy to restore gives it, and the database's
	// later commits in the log, up (see Recovery.LostFrom). The database
	// gets a new incarnation: the log's records of it, which later starts
	// read again while the segments stay, are no longer its.
	AcceptLostCommits bool
}

// recoverSegments replays into each database under root the commits of the
// segments nums of dir that it lacks, then removes the segments. A
// database that cannot be replayed into (damaged, say) does not stop the
// others: it is in the Recovery's Unreplayed, and the segments stay for
// the next start, so its commits are not lost.
func recoverSegments(dir, root string, nums []uint64, opts LogOptions) (r Recovery, err error) {
	err = faultAsError(func() error {
		r, err = readAndReplay(dir, root, nums, opts)
		return err
	})
	return r, err
}

// faultAsError runs f, which reads mapped segments, and returns a fault
// one of its reads meets (the disk failed the read, or the file shrank) as
// an error, not a crash of the host.
func faultAsError(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if _, fault := p.(interface{ Addr() uintptr }); !fault {
				panic(p)
			}
			err = fmt.Errorf("commit log: reading a segment failed: %v", p)
		}
	}()
	return f()
}

// readAndReplay is recoverSegments reading mapped segments.
func readAndReplay(dir, root string, nums []uint64, opts LogOptions) (Recovery, error) {
	start := time.Now()
	r := Recovery{Segments: len(nums), DroppedFrom: map[string]int{}, Unreplayed: map[string]error{}, LostFrom: map[string]Lost{}}
	byPath := map[string][]logRecord{}
	var order []string
	damageBefore := 0 // in the segments before
	for _, num := range nums {
		data, unmap, err := mapSegment(segmentPath(dir, num))
		if err != nil {
			return r, fmt.Errorf("commit log: %w", err)
		}
		defer unmap() // the records' frames are in it
		records, damaged, end := parseRecords(num, data)
		r.Damaged += damaged
		r.Read += int64(end)
		for i := range records {
			records[i].damageBefore += damageBefore
		}
		if len(records) > 0 { // the segment's damage of synced batches is before its last record
			damageBefore = records[len(records)-1].damageBefore
		}
		for _, rec := range records {
			if !filepath.IsLocal(rec.rel) {
				continue
			}
			if _, ok := byPath[rec.rel]; !ok {
				order = append(order, rec.rel)
			}
			byPath[rec.rel] = append(byPath[rec.rel], rec)
		}
	}
	for _, rel := range order {
		path := filepath.Join(root, rel)
		n, dropped, lost, err := replayInto(path, byPath[rel], opts.AcceptLostCommits)
		if err != nil {
			r.Unreplayed[path] = err
			continue
		}
		if lost != nil {
			r.LostFrom[path] = *lost
		}
		if n > 0 {
			r.Databases++
			r.Commits += n
		}
		if dropped > 0 {
			r.Dropped += dropped
			r.DroppedFrom[path] = dropped
		}
	}
	r.Took = time.Since(start)
	if len(r.Unreplayed) > 0 {
		return r, nil
	}
	for _, num := range nums {
		if err := os.Remove(segmentPath(dir, num)); err != nil {
			return r, fmt.Errorf("commit log: %w", err)
		}
	}
	if len(nums) > 0 {
		return r, syncPath(dir)
	}
	return r, nil
}

// mapSegment maps the segment at path into memory, read-only: reading its
// records reads from the disk only the part of the file they are in.
func mapSegment(path string) (data []byte, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return nil, func() {}, err
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { unix.Munmap(data) }, nil
}

// replayInto writes into the database at path the pages of the commits in
// records (in log order) that follow the last one it holds, when it is the
// file the records were made for, and says how many it replayed and how
// many it dropped (below). A database that is gone was removed after its
// commits. One that lacks a commit the log has no whole record of
// (damaged inside the log, even its last) is not replayed into: it would
// be opened without it.
//
// But a segment's last batch (its records unsynced) may have been torn by
// the crash before it was synced, so none of its commits were
// acknowledged: when one of them is damaged, or missing before a record of
// the batch, the database's commits from it to the batch's end are dropped
// (a replay cannot pass over one), and it goes on with its records of
// later segments (commits made after a restart, numbered again). A commit
// missing before a record of such a batch is taken for one of such a batch
// when no damaged stretch of synced batches lies in the log between the
// database's record before and this one: otherwise it may have been
// acknowledged.
//
// With acceptLoss, a database lacking a commit the log has no whole
// record of is brought up to the commit before it instead, and lost says
// which of its commits it goes without.
func replayInto(path string, records []logRecord, acceptLoss bool) (replayed, dropped int, lost *Lost, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil, nil
	}
	if err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return 0, 0, nil, ErrEmptyFile // SQLite would checkpoint a WAL beside it into it
	}
	incarnation, held, err := settle(path)
	if err != nil {
		return 0, 0, nil, err
	}
	var (
		todo     []logRecord
		expected = held + 1
		prev     logRecord // the database's record before, in the log
		// dropping: its records in the last batch of segment droppedIn
		// are dropped; through is the last commit dropped there.
		dropping  bool
		droppedIn uint64
		through   uint64
	)
	// dropTo counts as dropped the commits after through up to seq.
	dropTo := func(seq uint64) {
		if seq > through {
			dropped += int(seq - through)
			through = seq
		}
	}
records:
	for _, r := range records {
		if r.incarnation != incarnation {
			continue
		}
		before := prev
		prev = r
		var why string
		switch {
		case r.seq <= held: // held
		case dropping && r.segment == droppedIn:
			dropTo(r.seq)
		case !r.damaged && r.seq == expected:
			todo = append(todo, r)
			expected++
		case r.unsynced && (r.damaged || r.seq > expected && r.damageBefore == before.damageBefore):
			dropping, droppedIn, through = true, r.segment, expected-1
			dropTo(r.seq) // and those missing before it
		case r.damaged:
			why = fmt.Sprintf("the log's record of commit %d is damaged: the commit is lost", r.seq)
		default:
			why = fmt.Sprintf("the log holds commit %d after %d: commits are missing", r.seq, expected-1)
		}
		if why == "" {
			continue
		}
		lost = &Lost{From: expected, Through: r.seq, Why: why}
		for _, later := range records {
			if later.incarnation == incarnation {
				lost.Through = max(lost.Through, later.seq)
			}
		}
		if !acceptLoss {
			return 0, 0, nil, lost
		}
		break records
	}
	if lost != nil {
		// The log's later starts may read these records again (its
		// segments stay while another database is unreplayed): a new
		// incarnation keeps them from being taken for this file's, which
		// would refuse it again or, once it has commits of those numbers
		// again, replay the old ones after them over its new writes.
		return len(todo), dropped, lost, writeReplayed(path, todo, true)
	}
	if len(todo) == 0 {
		return 0, dropped, nil, nil
	}
	return len(todo), dropped, nil, writeReplayed(path, todo, false)
}

// writeReplayed writes the pages of records over a copy of the database at
// path (which SQLite settled: the file alone holds it) and puts the copy
// in its place, so a crash while replaying leaves the database as it was
// and the next start replays again. With reincarnate the copy gets an
// incarnation of its own (see place), so the log's records of the file as
// it was are no longer replayed into it.
func writeReplayed(path string, records []logRecord, reincarnate bool) error {
	tmp := path + ".replay"
	if err := copyFile(path, tmp); err != nil {
		return err
	}
	defer os.Remove(tmp) // after a failure
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var pages uint32
	for _, r := range records {
		for _, fr := range r.frames {
			if _, err := f.WriteAt(fr.page, int64(fr.pgno-1)*int64(r.pageSize)); err != nil {
				return err
			}
			if fr.dbSize != 0 {
				pages = fr.dbSize
			}
		}
	}
	if len(records) > 0 {
		if pages == 0 {
			return errors.New("the log's commits hold no commit frame")
		}
		if err := f.Truncate(int64(pages) * int64(records[len(records)-1].pageSize)); err != nil {
			return err
		}
	}
	if reincarnate {
		if err := newIncarnation(f); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// The old file's shared memory must not describe the new one.
	if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

// copyFile copies the file at from to a new file at to.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	return errors.Join(err, dst.Close())
}

// settle opens the database at path through SQLite, which recovers its WAL,
// reads its incarnation and the number of the last commit it holds, and
// checkpoints the WAL into the file, which then holds the database alone.
func settle(path string) (incarnation uint32, seq uint64, err error) {
	db, err := sql.Open(driverName, "file:"+path+"?mode=rw")
	if err != nil {
		return 0, 0, err
	}
	defer func() { err = errors.Join(err, db.Close()) }() // the last close removes the WAL
	db.SetMaxOpenConns(1)
	var id int64
	if err := db.QueryRow("PRAGMA application_id").Scan(&id); err != nil {
		return 0, 0, err
	}
	incarnation = uint32(id)
	var stamped int
	if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = '_wharf_commit'").Scan(&stamped); err != nil {
		return 0, 0, err
	}
	if stamped > 0 {
		err := db.QueryRow("SELECT seq FROM _wharf_commit WHERE id = 1").Scan(&seq)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, 0, err
		}
	}
	var busy, logged, checkpointed int
	if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &checkpointed); err != nil {
		return 0, 0, err
	}
	if busy != 0 {
		return 0, 0, errors.New("its WAL could not be checkpointed: another process has it open")
	}
	return incarnation, seq, nil
}

// newIncarnation gives the database file f an incarnation of its own in
// its header's application_id (bytes 68–71): random, non-zero and not the
// one it had.
func newIncarnation(f *os.File) error {
	var id [4]byte
	if _, err := f.ReadAt(id[:], fileIncarnationAt); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(id[:], otherIncarnation(binary.BigEndian.Uint32(id[:])))
	_, err := f.WriteAt(id[:], fileIncarnationAt)
	return err
}
