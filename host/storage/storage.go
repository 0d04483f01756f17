// Package storage is a Durable Object's embedded database: one SQLite file
// per object holding its key-value pairs, its SQL tables and its alarm.
//
// Writes of consecutive events accumulate in one open transaction and are
// committed together (group commit); the caller holds back every response
// that depends on them until they are durable: when Flush returns, or when
// SyncThen calls back, which lets the object run on while the disk syncs.
// Each event runs inside a savepoint, so a failed event's writes are undone
// without touching the events before it.
//
// The driver is mattn/go-sqlite3: the most widely used SQLite binding for Go,
// with SQLite's own C code (cgo), in WAL mode; see durability.go for how
// commits reach the disk.
package storage

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
)

// MaxSQLValueBytes bounds one string or BLOB an object's SQL may make
// (SQLite's own limit is 1 GB, allocated in the host's memory): a value
// cannot be returned beyond MaxResultBytes anyway.
const MaxSQLValueBytes = MaxResultBytes

// driverName is SQLite with MaxSQLValueBytes applied to every connection,
// and authorize its authorizer.
const driverName = "sqlite3_wharf"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		c.SetLimit(sqlite3.SQLITE_LIMIT_LENGTH, MaxSQLValueBytes)
		c.RegisterAuthorizer(func(op int, arg1, arg2, _ string) int { return authorize(c, op, arg1, arg2) })
		return nil
	}})
}

// Limits on what one object stores, as in the hosted system.
const (
	MaxKeyBytes   = 2 << 10
	MaxValueBytes = 128 << 10
	// MaxBatch bounds the keys of one batch call.
	MaxBatch = 128
)

// Errors a caller can cause.
var (
	ErrKeyTooLarge   = fmt.Errorf("key is larger than %d bytes", MaxKeyBytes)
	ErrValueTooLarge = fmt.Errorf("value is larger than %d bytes", MaxValueBytes)
	ErrEmptyKey      = errors.New("key is empty")
	ErrBatchTooLarge = fmt.Errorf("a batch may hold at most %d keys", MaxBatch)
	// ErrListTooLarge is a List whose pairs would take more than
	// MaxResultBytes of the host's memory at once (and as much again in
	// the instance's).
	ErrListTooLarge  = fmt.Errorf("list result is larger than %d MiB; list fewer keys at a time (a limit, then start after the last key)", MaxResultBytes>>20)
	ErrReserved      = errors.New("names starting with _wharf_, and setting PRAGMA application_id, are reserved")
	ErrTxStatement   = errors.New("transaction statements are not allowed in SQL; use the transaction API")
	ErrNoTransaction = errors.New("no transaction is open")
	ErrTxLeftOpen    = errors.New("the event ended with a transaction still open; its writes were undone")
	// ErrFileReplaced is a commit refused because the file was deleted or
	// replaced on disk: its writes would have gone to a file nobody opens
	// again.
	ErrFileReplaced = errors.New("the database file was deleted or replaced on disk while open; the writes since the last commit were undone")
	// ErrEmptyFile is a database file of 0 bytes, which wharf never leaves
	// (create syncs a new database before it names it): it was truncated
	// outside wharf, and SQLite would open it as a new, empty database.
	ErrEmptyFile = errors.New("the database file is empty (0 bytes): it was truncated outside wharf, and is not opened, lest the object be served as new; restore it from a backup, or remove it to start the object afresh")
)

// DB is one object's database. It is used by one goroutine at a time.
type DB struct {
	db         *sql.DB
	path       string
	file       os.FileInfo // the file at path when it was opened
	unsynced   bool        // the file was created and is not yet durable (syncNew)
	tx         *sql.Tx
	dirty      bool
	savepoints int // open user transactions
	stmts      map[string]*sql.Stmt
	txStmts    map[string]*sql.Stmt // stmts bound to tx

	// replicator, when set, receives each commit's recorded writes.
	replicator Replicator
	recorded   []statement
	eventMark  int   // recorded writes before the open event
	txMarks    []int // recorded writes before each open user transaction

	// eventPending is an event whose savepoint opens with its first
	// statement, so an event that never touches storage costs no SQL;
	// eventOpen is that savepoint, open in tx.
	eventPending, eventOpen bool

	// log makes commits durable (see commitlog.go). incarnation names
	// the file (its application_id), seq is the number of its last commit
	// (in _wharf_commit), walFile is its WAL from the first commit that
	// wrote (the same file while the database is open), walReadsShort
	// whether its filesystem may read it short (readsShort) and walPos
	// where the next commit begins in it.
	log           *Log
	incarnation   uint32
	seq           uint64
	walFile       *os.File
	walReadsShort bool
	walPos        walPosition

	// commits counts the commits that wrote since the database was
	// opened, onDisk those known durable; syncs are SyncThen requests not
	// yet answered, and syncErr the first that failed.
	commits uint64
	onDisk  atomic.Uint64
	syncs   sync.WaitGroup
	syncErr atomic.Pointer[error]

	// onOpenError is told of failures to open the file (OnOpenError);
	// openError is the message of the last one, told already.
	onOpenError func(*OpenError)
	openError   string
}

const schema = `BEGIN;
CREATE TABLE IF NOT EXISTS _wharf_kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _wharf_alarm (id INTEGER PRIMARY KEY CHECK (id = 1), at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _wharf_replica (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _wharf_commit (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
COMMIT;
`

// Lazy returns the database at path, whose commits log makes durable (nil
// for a database that is only read), without touching it: its first
// statement opens the file, creating it if missing. A Durable Object that
// never uses its storage costs no file and no descriptor.
func Lazy(path string, log *Log) *DB {
	return &DB{path: path, log: log, txStmts: map[string]*sql.Stmt{}}
}

// OpenError is a failure to open the database at Path. Its message, which
// reaches the guest and from there a client, names the cause but not the
// host's path to the file.
type OpenError struct {
	Path string
	Err  error
}

func (e *OpenError) Error() string {
	msg := e.Err.Error()
	if pe, ok := errors.AsType[*fs.PathError](e.Err); ok {
		msg = pe.Op + ": " + pe.Err.Error()
	}
	return "opening the database: " + strings.ReplaceAll(msg, e.Path, "the database")
}

func (e *OpenError) Unwrap() error { return e.Err }

// OnOpenError has f told of each failure to open the database's file
// (damaged, emptied, unreadable, the disk full) unlike the one before, so
// that the host's log names the file, which the error a guest gets does
// not: the same failure again, at each later statement, is not told.
func (d *DB) OnOpenError(f func(*OpenError)) { d.onOpenError = f }

// connect opens the database's file if it is not open yet.
func (d *DB) connect() error {
	if d.db != nil {
		return nil
	}
	err := d.connectFile()
	var oe *OpenError
	switch {
	case err == nil:
		d.openError = ""
	case errors.As(err, &oe) && d.onOpenError != nil && err.Error() != d.openError:
		d.openError = err.Error()
		d.onOpenError(oe)
	}
	return err
}

// connectFile is connect, once the file is known not to be open.
func (d *DB) connectFile() error {
	if d.unreplayed() {
		return ErrUnreplayed
	}
	created, err := create(d.path)
	if err != nil {
		return &OpenError{Path: d.path, Err: err}
	}
	// A file this call made is synced before SQLite opens it: closing
	// any descriptor of the file later would drop the process's POSIX
	// locks on it, the exclusive lock SQLite holds from its first read
	// on. One not synced (that failed) is synced by a later call.
	d.unsynced = d.unsynced || created
	if d.unsynced {
		if err := syncNew(d.path); err != nil {
			return &OpenError{Path: d.path, Err: err}
		}
		d.unsynced = false
	}
	q := url.Values{}
	q.Set("_synchronous", "NORMAL") // the WAL is synced by Flush or SyncThen
	q.Set("_busy_timeout", "5000")
	q.Set("_txlock", "immediate")
	// The host is an open database's only user. Exclusive locking takes
	// the file's locks once, not six fcntl calls a commit, and, set before
	// the file is first read in WAL mode, keeps the WAL's index in SQLite's
	// heap instead of a -shm file: a descriptor and a mapping less per
	// database. So the WAL mode is set after it, not in the DSN (whose
	// journal mode SQLite's driver sets first).
	q.Set("_locking_mode", "EXCLUSIVE")
	db, err := sql.Open(driverName, "file:"+d.path+"?"+q.Encode())
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		db.Close()
		if err == nil {
			err = fmt.Errorf("its journal mode stays %q, not WAL", mode)
		}
		return &OpenError{Path: d.path, Err: err}
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return &OpenError{Path: d.path, Err: err}
	}
	stmts := make(map[string]*sql.Stmt, len(hotStatements))
	for _, q := range hotStatements { // prepared once, while no transaction holds the connection
		s, err := db.Prepare(q)
		if err != nil {
			db.Close()
			return &OpenError{Path: d.path, Err: err}
		}
		stmts[q] = s
	}
	var incarnation int64
	var seq sql.NullInt64
	err = db.QueryRow("SELECT (SELECT application_id FROM pragma_application_id), (SELECT seq FROM _wharf_commit WHERE id = 1)").Scan(&incarnation, &seq)
	if err != nil {
		db.Close()
		return &OpenError{Path: d.path, Err: err}
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		db.Close()
		return &OpenError{Path: d.path, Err: err}
	}
	d.db, d.stmts, d.file = db, stmts, fi
	d.incarnation, d.seq, d.walPos = uint32(incarnation), uint64(seq.Int64), walPosition{}
	return nil
}

// absent reports whether the database has no file yet and none open: its
// reads find it empty, and deleting from it changes nothing, so they make
// no file (an object that only reads its new storage costs no file and no
// sync). A file that is there or not knowable is left to connect.
func (d *DB) absent() (bool, error) {
	if d.db != nil {
		return false, nil
	}
	if d.unreplayed() {
		return false, ErrUnreplayed
	}
	_, err := os.Lstat(d.path)
	return errors.Is(err, fs.ErrNotExist), nil
}

// unreplayed reports whether the log holds commits of the database that
// its start could not replay into it (see ErrUnreplayed).
func (d *DB) unreplayed() bool {
	return d.log != nil && d.log.recovery.Unreplayed[d.path] != nil
}

// Replaced reports whether the open database's file is no longer at its
// path: deleted or replaced on disk since it was opened. Its writes would
// go to a file nobody opens again.
func (d *DB) Replaced() bool {
	if d.db == nil {
		return false
	}
	fi, err := os.Stat(d.path)
	return err != nil || !os.SameFile(fi, d.file)
}

// hotStatements run on nearly every event; they are parsed once per
// database instead of once per call.
var hotStatements = []string{
	"SAVEPOINT wharf_event",
	"RELEASE wharf_event",
	"ROLLBACK TO wharf_event",
	"SELECT value FROM _wharf_kv WHERE key = ?",
	"INSERT INTO _wharf_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	"DELETE FROM _wharf_kv WHERE key = ?",
	stampCommit,
}

// stampCommit records the number of the commit it is part of.
const stampCommit = "INSERT INTO _wharf_commit (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq"

// stmt returns a hot statement bound to the open transaction, or nil for
// any other query.
func (d *DB) stmt(query string) (*sql.Stmt, error) {
	tx, err := d.txn()
	if err != nil {
		return nil, err
	}
	if s, ok := d.txStmts[query]; ok {
		return s, nil
	}
	s, ok := d.stmts[query]
	if !ok {
		return nil, nil
	}
	bound := tx.Stmt(s)
	d.txStmts[query] = bound
	return bound, nil
}

// ShrinkMemory gives back the memory SQLite caches for the open database
// (up to 2 MiB of pages): for a database that will sit unused a while.
func (d *DB) ShrinkMemory() {
	if d.db != nil && d.tx == nil {
		d.db.Exec("PRAGMA shrink_memory")
	}
}

// Opened reports whether the database's file has been opened.
func (d *DB) Opened() bool { return d.db != nil }

// Close commits what is pending and closes the file, if it was opened.
func (d *DB) Close() error {
	if d.db == nil {
		return nil
	}
	err := d.Flush()
	d.syncs.Wait()
	for _, s := range d.stmts {
		s.Close()
	}
	if d.walFile != nil {
		d.walFile.Close()
		d.walFile = nil
	}
	return errors.Join(err, d.db.Close()) // closing checkpoints and removes the WAL
}

// txn returns the open transaction, beginning it, and the savepoint of an
// event that has not run a statement yet, if needed.
func (d *DB) txn() (*sql.Tx, error) {
	if d.tx == nil {
		if err := d.connect(); err != nil {
			return nil, err
		}
		tx, err := d.db.Begin()
		if err != nil {
			return nil, err
		}
		d.tx = tx
	}
	if d.eventPending {
		d.eventPending = false
		if _, err := d.exec("SAVEPOINT wharf_event"); err != nil {
			return nil, err
		}
		d.eventOpen = true
	}
	return d.tx, nil
}

// txDone forgets the transaction that just ended, the statements bound to
// it and the event savepoint it held.
func (d *DB) txDone() {
	d.tx, d.eventOpen = nil, false
	clear(d.txStmts)
}

func (d *DB) exec(query string, args ...any) (sql.Result, error) {
	s, err := d.stmt(query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return d.tx.Exec(query, args...)
	}
	return s.Exec(args...)
}

func (d *DB) write(query string, args ...any) (sql.Result, error) {
	r, err := d.exec(query, args...)
	if err != nil {
		return r, d.noteFull(err)
	}
	d.dirty = true
	return r, d.record(query, args)
}

// Dirty reports whether writes are waiting for Flush.
func (d *DB) Dirty() bool { return d.dirty }

// Settled reports whether nothing written waits for a commit or a sync: a
// reply that read the database need not wait.
func (d *DB) Settled() bool {
	return !d.dirty && d.syncErr.Load() == nil && d.onDisk.Load() >= d.commits
}

// Flush commits the open transaction: everything written so far is durable
// (and replicated, with a Replicator) when it returns. If replication
// fails, the writes are undone.
func (d *DB) Flush() error {
	if err := d.Commit(); err != nil {
		return err
	}
	return d.syncNow()
}

// Commit commits the open transaction without waiting for the disk (see
// SyncThen); a replicated commit is replicated when it returns. If
// replication fails, the writes are undone.
func (d *DB) Commit() error {
	if p := d.syncErr.Load(); p != nil {
		d.rollback()
		return *p
	}
	if d.tx == nil {
		return nil
	}
	if d.savepoints > 0 {
		return errors.New("a streamed response cannot start inside a transaction")
	}
	if d.dirty && d.Replaced() {
		d.rollback()
		return ErrFileReplaced
	}
	if err := d.replicate(); err != nil {
		d.rollback()
		return err
	}
	wrote := d.dirty
	d.dirty = false
	d.undo(0)
	return d.commitTx(wrote)
}

// commitTx commits the open transaction; one that wrote is numbered and
// handed to the log. One that wrote nothing is rolled back: a statement
// that failed may have spilled pages to the WAL before its savepoint put
// them back, and a COMMIT would write them again, WAL frames of a commit
// the log is not told of.
func (d *DB) commitTx(wrote bool) error {
	if !wrote {
		err := d.tx.Rollback()
		d.txDone()
		return err
	}
	if _, err := d.exec(stampCommit, int64(d.seq+1)); err != nil {
		d.rollback()
		return d.noteFull(err)
	}
	err := d.tx.Commit()
	d.txDone()
	if err != nil {
		return d.noteFull(err)
	}
	d.seq++
	d.commits++
	if err := d.logCommit(); err != nil {
		return d.synced(d.commits, err)
	}
	return nil
}

// HostFault reports whether err, of a storage call, is the host's fault,
// not the caller's: the database is damaged or could not be opened, or
// the disk failed or is full.
func HostFault(err error) bool {
	var e sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case sqlite3.ErrIoErr, sqlite3.ErrFull, sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen:
		return true
	}
	return false
}

// noteFull tells the log when err is SQLite's FULL (the disk is full), so
// that its spare segment's blocks go to the next try, and returns err.
func (d *DB) noteFull(err error) error {
	var e sqlite3.Error
	if errors.As(err, &e) && e.Code == sqlite3.ErrFull && d.log != nil {
		d.log.diskFull()
	}
	return err
}

// BeginEvent starts one event. Its savepoint opens with its first
// statement.
func (d *DB) BeginEvent() {
	d.eventMark = d.mark()
	d.eventPending = true
}

// EndEvent keeps the event's writes, or undoes them if it failed. User
// transactions the event left open are rolled back.
func (d *DB) EndEvent(failed bool) error {
	d.eventPending = false
	if !d.eventOpen {
		return nil // no statement ran since it began (or since a Flush)
	}
	d.eventOpen = false
	if d.savepoints > 0 {
		failed = true
	}
	leftOpen := d.savepoints > 0
	d.savepoints, d.txMarks = 0, d.txMarks[:0]
	if failed {
		if _, err := d.exec("ROLLBACK TO wharf_event"); err != nil {
			return err
		}
		d.undo(d.eventMark)
	}
	_, err := d.exec("RELEASE wharf_event")
	if err == nil && leftOpen {
		err = ErrTxLeftOpen
	}
	return err
}

// BeginTransaction opens a (nested) transaction inside the event.
func (d *DB) BeginTransaction() error {
	if _, err := d.exec(fmt.Sprintf("SAVEPOINT wharf_tx%d", d.savepoints+1)); err != nil {
		return err
	}
	d.savepoints++
	d.txMarks = append(d.txMarks, d.mark())
	return nil
}

// EndTransaction commits or rolls back the innermost open transaction.
func (d *DB) EndTransaction(commit bool) error {
	if d.savepoints == 0 {
		return ErrNoTransaction
	}
	name := fmt.Sprintf("wharf_tx%d", d.savepoints)
	m := d.txMarks[len(d.txMarks)-1]
	if !commit {
		if _, err := d.exec("ROLLBACK TO " + name); err != nil {
			return err
		}
		d.undo(m)
	}
	_, err := d.exec("RELEASE " + name)
	d.savepoints--
	d.txMarks = d.txMarks[:len(d.txMarks)-1]
	return err
}

func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("%w (%d bytes)", ErrKeyTooLarge, len(key))
	}
	return nil
}

// Get returns the value of key and whether it exists.
func (d *DB) Get(key []byte) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if absent, err := d.absent(); absent || err != nil {
		return nil, false, err
	}
	s, err := d.stmt("SELECT value FROM _wharf_kv WHERE key = ?")
	if err != nil {
		return nil, false, err
	}
	var v []byte
	err = s.QueryRow(key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// Pair is one key and its value.
type Pair struct{ Key, Value []byte }

// GetMany returns the pairs that exist among keys, in the order given.
func (d *DB) GetMany(keys [][]byte) ([]Pair, error) {
	if len(keys) > MaxBatch {
		return nil, ErrBatchTooLarge
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	if absent, err := d.absent(); absent || err != nil {
		return nil, err // one look for the file, not one a key
	}
	var out []Pair
	for _, k := range keys {
		v, ok, err := d.Get(k)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, Pair{k, v})
		}
	}
	return out, nil
}

// Put stores value under key.
func (d *DB) Put(key, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueBytes {
		return fmt.Errorf("%w (%d bytes)", ErrValueTooLarge, len(value))
	}
	if value == nil {
		value = []byte{}
	}
	_, err := d.write("INSERT INTO _wharf_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return err
}

// PutMany stores every pair, all or none.
func (d *DB) PutMany(pairs []Pair) error {
	if len(pairs) > MaxBatch {
		return ErrBatchTooLarge
	}
	for _, p := range pairs { // validate first so a bad pair writes nothing
		if err := checkKey(p.Key); err != nil {
			return err
		}
		if len(p.Value) > MaxValueBytes {
			return fmt.Errorf("%w (%d bytes)", ErrValueTooLarge, len(p.Value))
		}
	}
	for _, p := range pairs {
		if err := d.Put(p.Key, p.Value); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes key and reports whether it existed.
func (d *DB) Delete(key []byte) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	if absent, err := d.absent(); absent || err != nil {
		return false, err
	}
	r, err := d.write("DELETE FROM _wharf_kv WHERE key = ?", key)
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n > 0, err
}

// DeleteMany removes keys, all or none, and returns how many existed.
func (d *DB) DeleteMany(keys [][]byte) (int, error) {
	if len(keys) > MaxBatch {
		return 0, ErrBatchTooLarge
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return 0, err
		}
	}
	if absent, err := d.absent(); absent || err != nil {
		return 0, err // one look for the file, not one a key
	}
	n := 0
	for _, k := range keys {
		ok, err := d.Delete(k)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// ListOptions select a range of keys, as in the hosted system's list().
type ListOptions struct {
	Start      []byte // first key included
	StartAfter []byte // first key excluded (wins over Start)
	End        []byte // end key, excluded
	Prefix     []byte
	Reverse    bool
	Limit      int // 0 = no limit
}

// List returns pairs in key order (reversed if asked) within the options,
// at most MaxResultBytes of keys and values (else ErrListTooLarge).
func (d *DB) List(o ListOptions) ([]Pair, error) {
	var where []string
	var args []any
	if o.StartAfter != nil {
		where, args = append(where, "key > ?"), append(args, o.StartAfter)
	} else if o.Start != nil {
		where, args = append(where, "key >= ?"), append(args, o.Start)
	}
	if o.End != nil {
		where, args = append(where, "key < ?"), append(args, o.End)
	}
	if len(o.Prefix) > 0 {
		where, args = append(where, "key >= ?"), append(args, o.Prefix)
		if end := prefixEnd(o.Prefix); end != nil {
			where, args = append(where, "key < ?"), append(args, end)
		}
	}
	q := "SELECT key, value FROM _wharf_kv"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY key"
	if o.Reverse {
		q += " DESC"
	}
	if o.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", o.Limit)
	}
	if absent, err := d.absent(); absent || err != nil {
		return nil, err
	}
	tx, err := d.txn()
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Pair
	size := 0
	for rows.Next() {
		var p Pair
		if err := rows.Scan(&p.Key, &p.Value); err != nil {
			return nil, err
		}
		if size += len(p.Key) + len(p.Value); size > MaxResultBytes {
			return nil, ErrListTooLarge
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// prefixEnd is the smallest key greater than every key with prefix p, or
// nil if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// DeleteAll removes every key-value pair, the alarm and every SQL table.
func (d *DB) DeleteAll() error {
	if absent, err := d.absent(); absent || err != nil {
		return err
	}
	if _, err := d.write("DELETE FROM _wharf_kv"); err != nil {
		return err
	}
	if _, err := d.write("DELETE FROM _wharf_alarm"); err != nil {
		return err
	}
	tx, _ := d.txn()
	rows, err := tx.Query("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_wharf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	for _, t := range tables {
		if _, err := d.write(`DROP TABLE "` + strings.ReplaceAll(t, `"`, `""`) + `"`); err != nil {
			return err
		}
	}
	return nil
}

// Alarm returns the scheduled alarm time, if any.
func (d *DB) Alarm() (time.Time, bool, error) {
	if absent, err := d.absent(); absent || err != nil {
		return time.Time{}, false, err
	}
	tx, err := d.txn()
	if err != nil {
		return time.Time{}, false, err
	}
	var ms int64
	err = tx.QueryRow("SELECT at_ms FROM _wharf_alarm WHERE id = 1").Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.UnixMilli(ms), true, nil
}

// SetAlarm schedules the object's one alarm, replacing any other.
func (d *DB) SetAlarm(at time.Time) error {
	_, err := d.write("INSERT INTO _wharf_alarm (id, at_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms", at.UnixMilli())
	return err
}

// DeleteAlarm cancels the alarm.
func (d *DB) DeleteAlarm() error {
	if absent, err := d.absent(); absent || err != nil {
		return err
	}
	_, err := d.write("DELETE FROM _wharf_alarm")
	return err
}
