package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The commit log. A host's databases commit with synchronous=NORMAL: a
// commit writes its WAL frames without waiting for the disk. Instead of
// syncing each database's WAL (one fdatasync per object per commit, which
// bounds a host with many busy objects), each commit's frames (the pages
// it wrote) are copied into one log, and one fdatasync of the log makes
// the commits of every database since the last one durable together.
//
// The log is a series of segment files. When the one being written passes
// segmentBytes, a new one is begun and the old one is removed once the
// WAL of every database with a commit in it has been synced (a database
// closed since was checkpointed by SQLite, which syncs). After a crash,
// OpenLog replays each surviving commit that its database lacks: the
// database says which commit it holds (_wharf_commit) and what file it is
// (its incarnation, in the header's application_id), so a commit is never
// replayed twice, out of order, or into another database at the same path.

// segmentBytes is the size past which the log begins a new segment (a
// log keeps the value it was opened with).
var segmentBytes int64 = 128 << 20

// Log is a host's commit log (see above). Its methods are safe for
// concurrent use.
type Log struct {
	dir      string // its segment files
	root     string // the databases' paths are recorded relative to it
	segBytes int64  // segmentBytes when it was opened
	// recovery is what OpenLog replayed.
	recovery Recovery

	mu sync.Mutex
	// seg is the segment being written: nil once the log is closed (err
	// says so, and every sync fails with it), or while a write failed and
	// no segment could be begun after it (the disk was full): the next
	// sync begins segment nextNum.
	seg     *segment
	err     error
	nextNum uint64
	// pending are records not yet written, and their commits; waiting,
	// the callers the next sync answers.
	pending        []byte
	pendingCommits []loggedCommit
	waiting        []func(error)
	// spare is the buffer pending was last written from, for the next
	// records.
	spare []byte
	// syncing: a goroutine writes and syncs the log; running, until it
	// ends.
	syncing bool
	running sync.WaitGroup
	// cleaning are the sealed segments being removed.
	cleaning sync.WaitGroup
}

// loggedCommit is a commit with a record in the log: commit number target
// of db.
type loggedCommit struct {
	db     *DB
	target uint64
}

// segment is one file of the log.
type segment struct {
	f    *os.File
	num  uint64
	size int64
	// wals are the WAL files of the databases with a commit in it.
	wals map[string]struct{}
	// full: a write to it, or a database's while it was written, found
	// the disk full; it is not kept as the spare.
	full atomic.Bool
}

// OpenLog opens the commit log in dir for the databases under root: it
// first replays into each database the commits of the log it lacks (see
// above, and LogOptions), then removes the old segments.
func OpenLog(dir, root string, opts LogOptions) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	nums, err := segmentNumbers(dir)
	if err != nil {
		return nil, err
	}
	if err := dropOldSpare(dir); err != nil {
		return nil, err
	}
	recovery, err := recoverSegments(dir, root, nums, opts)
	if err != nil {
		return nil, err
	}
	// Segments are numbered on from the clock, so a number is not used
	// again after a restart: a recycled segment's old records never pass
	// for new ones.
	next := uint64(time.Now().UnixNano())
	if len(nums) > 0 {
		next = max(next, nums[len(nums)-1]+1)
	}
	seg, err := newSegment(dir, next)
	if err != nil {
		return nil, err
	}
	return &Log{dir: dir, root: root, segBytes: segmentBytes, seg: seg, recovery: recovery}, nil
}

// ErrUnreplayed is a database the commit log could not bring up to date
// when the host started (its Recovery says why): its last commits may be
// missing from its file, so it is not opened until that is mended and the
// host restarted (the log keeps them meanwhile).
var ErrUnreplayed = errors.New("the database could not be brought up to date from the commit log when the host started; it is not used until that is mended")

// Recovery is what the log replayed when it opened.
func (l *Log) Recovery() Recovery { return l.recovery }

// segmentNumbers lists the segments in dir, oldest first.
func segmentNumbers(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if n, err := strconv.ParseUint(name, 16, 64); ok && len(name) == 16 && err == nil {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

func segmentPath(dir string, num uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.log", num))
}

// spareName is a segment kept once removed, to be written over as a later
// one: writing over a file's blocks syncs faster than growing the file,
// which changes its size and allocates blocks at each sync.
const spareName = "spare"

// releaseSpare removes the spare segment of the log in dir, and reports
// whether there was one: the disk is full, and its blocks go to the
// commits that need them.
func releaseSpare(dir string) bool { return os.Remove(filepath.Join(dir, spareName)) == nil }

// diskFull is told by a database whose write found the disk full
// (SQLite's FULL): the spare's blocks go to its next try, and a sync
// begun now rotates the segment being written, whose blocks go too (see
// rotate).
func (l *Log) diskFull() {
	l.mu.Lock()
	if l.seg != nil {
		l.seg.full.Store(true)
	}
	l.mu.Unlock()
	releaseSpare(l.dir)
	l.syncThen(func(error) {})
}

// dropOldSpare removes the spare if it is not of this format (a log
// written before kept it): its records, which do not say their segment
// (version 1) or are not of this format, would be passed over to the
// file's end after a crash.
func dropOldSpare(dir string) error {
	path := filepath.Join(dir, spareName)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	header := make([]byte, segmentHeaderBytes)
	_, err = f.ReadAt(header, 0)
	f.Close()
	if err == nil && string(header) == string(segmentHeader) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("commit log: %w", err)
	}
	return nil
}

// newSegment begins segment num, from the spare if there is one, with its
// name durable in dir. A descriptor shortage is waited out (see
// openToSync); a failure leaves no file at num's path, so that it can be
// tried again.
func newSegment(dir string, num uint64) (*segment, error) {
	path, spare := segmentPath(dir, num), filepath.Join(dir, spareName)
	flags := os.O_WRONLY
	if err := os.Rename(spare, path); err != nil {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := openWaiting(path, flags, 0o644)
	if err == nil {
		// The header is durable with the segment's first records.
		if _, err = f.WriteAt(segmentHeader, 0); err != nil {
			f.Close()
			if flags&os.O_CREATE != 0 {
				os.Remove(path) // this call made it; a path that was taken is not ours
			}
		}
	}
	if err != nil {
		if flags&os.O_CREATE == 0 {
			os.Rename(path, spare)
		}
		return nil, fmt.Errorf("commit log: %w", err)
	}
	if err := syncPath(dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("commit log: %w", err)
	}
	return &segment{f: f, num: num, size: segmentHeaderBytes, wals: map[string]struct{}{}}, nil
}

// append adds d's last commit to the next write: its frames as they are
// in the WAL.
func (l *Log) append(d *DB, pageSize int, frames []byte) error {
	rel, err := filepath.Rel(l.root, d.path)
	if err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("commit log: %s is not under %s", d.path, l.root)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = appendRecord(l.pending, rel, d.incarnation, d.seq, pageSize, frames)
	l.pendingCommits = append(l.pendingCommits, loggedCommit{db: d, target: d.commits})
	return nil
}

// syncThen calls done, from another goroutine, once a sync of the log that
// began after the call ends, with its error.
func (l *Log) syncThen(done func(error)) {
	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		done(err)
		return
	}
	l.waiting = append(l.waiting, done)
	start := !l.syncing
	l.syncing = true
	if start {
		l.running.Add(1)
	}
	l.mu.Unlock()
	if start {
		go l.syncWaiting()
	}
}

// syncWaiting writes and syncs the pending records, again and again while
// requests arrive, answering the requests each sync covers.
func (l *Log) syncWaiting() {
	defer l.running.Done()
	for {
		l.mu.Lock()
		batch, seg := l.waiting, l.seg
		if len(batch) == 0 || l.err != nil {
			l.waiting, l.syncing = nil, false
			err := l.err
			l.mu.Unlock()
			for _, done := range batch { // the log was closed
				done(err)
			}
			return
		}
		buf, commits := l.pending, l.pendingCommits
		l.pending, l.pendingCommits, l.waiting, l.spare = l.spare[:0], nil, nil, nil
		num := l.nextNum
		l.mu.Unlock()
		var err error
		if seg == nil { // see rotate: try again
			if seg, err = newSegment(l.dir, num); err == nil {
				l.mu.Lock()
				l.seg = seg
				l.mu.Unlock()
			} else {
				for _, c := range commits {
					c.db.synced(c.target, err)
				}
			}
		}
		if err == nil {
			err = seg.write(buf, commits)
		}
		l.mu.Lock()
		l.spare = buf
		l.mu.Unlock()
		for _, done := range batch {
			done(err)
		}
		if seg != nil && (err != nil || seg.size >= l.segBytes || seg.full.Load() && seg.size > segmentHeaderBytes) {
			l.rotate(seg, err != nil)
		}
	}
}

// syncSegment makes what was written to a segment durable.
var syncSegment = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// write appends buf, the records of commits, to the segment as one batch
// and syncs it.
// When that fails, each of those databases refuses commits until it is
// closed (see DB.synced), even those that have not asked for a sync yet: a
// later sync would not cover their records.
func (s *segment) write(buf []byte, commits []loggedCommit) error {
	for _, c := range commits {
		s.wals[c.db.path+"-wal"] = struct{}{}
	}
	sealRecords(buf, s.num, s.size)
	n, err := s.f.WriteAt(buf, s.size)
	s.size += int64(n)
	if errors.Is(err, unix.ENOSPC) {
		s.full.Store(true)
		if releaseSpare(filepath.Dir(s.f.Name())) {
			n, err = s.f.WriteAt(buf[n:], s.size)
			s.size += int64(n)
		}
	}
	if err == nil {
		err = syncSegment(s.f)
	}
	if err != nil {
		err = fmt.Errorf("commit log: %w", err)
		for _, c := range commits {
			c.db.synced(c.target, err)
		}
	}
	return err
}

// rotate begins a new segment after seg and removes seg once its
// databases' WALs are durable. When no new segment can be begun, the log
// goes on in seg, and tries again after its next write, unless a write to
// seg failed (failed): what follows a record half written is not read, so
// the log is left without a segment, and the next sync tries to begin one
// (each sync until one can be: the disk was full, say, and has room once
// seg is removed or its owner frees some), failing its commits meanwhile.
//
// A segment that found the disk full (a write to it, or a database's while
// it was written) is removed first, and the new one begun after: the disk
// may have no block for it until seg's are free, and a segment that is
// not written to never reaches segBytes, so its blocks would be held for
// as long as the host runs while every commit fails for want of them.
func (l *Log) rotate(seg *segment, failed bool) {
	if seg.full.Load() {
		l.mu.Lock()
		l.seg, l.nextNum = nil, seg.num+1
		l.mu.Unlock()
		seg.remove()
		next, err := newSegment(l.dir, seg.num+1)
		if err == nil {
			l.mu.Lock()
			l.seg = next
			l.mu.Unlock()
		}
		return
	}
	next, err := newSegment(l.dir, seg.num+1)
	if err != nil && !failed {
		return
	}
	l.mu.Lock()
	l.seg, l.nextNum = next, seg.num+1
	l.mu.Unlock()
	l.cleaning.Add(1)
	go func() {
		defer l.cleaning.Done()
		seg.remove()
	}()
}

// remove syncs the WAL of every database with a commit in the segment
// (a closed database's WAL is gone: SQLite checkpointed it), and their
// directories, then removes it, keeping it as the spare if there is none
// and it did not find the disk full.
// A segment that cannot be removed stays for the next OpenLog, which
// replays what its databases lack.
func (s *segment) remove() {
	s.f.Close()
	dirs := map[string]struct{}{}
	for wal := range s.wals {
		if err := syncPath(wal); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
		dirs[filepath.Dir(wal)] = struct{}{}
	}
	for dir := range dirs {
		if err := syncPath(dir); err != nil {
			return
		}
	}
	spare := filepath.Join(filepath.Dir(s.f.Name()), spareName)
	if s.full.Load() || unix.Renameat2(unix.AT_FDCWD, s.f.Name(), unix.AT_FDCWD, spare, unix.RENAME_NOREPLACE) != nil {
		os.Remove(s.f.Name())
	}
}

// Close writes and syncs what is pending and removes every segment whose
// databases are durable without it (all of them once every database has
// been closed). Syncs asked for later fail.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	done := make(chan error, 1)
	l.syncThen(func(err error) { done <- err })
	err := <-done
	l.mu.Lock()
	if l.err == nil {
		l.err = errors.New("commit log: closed")
	}
	l.mu.Unlock()
	// The writes under way end (and the rotation they may begin) before
	// the segment is taken: later syncs fail at once.
	l.running.Wait()
	l.mu.Lock()
	seg := l.seg
	l.seg = nil
	l.mu.Unlock()
	if seg != nil {
		seg.remove()
	}
	l.cleaning.Wait()
	return err
}
