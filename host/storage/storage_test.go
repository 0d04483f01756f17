package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// openNow opens the database at path at once, not at its first statement.
func openNow(path string) (*DB, error) {
	d := lazy(path)
	if err := d.connect(); err != nil {
		return nil, err
	}
	return d, nil
}

func open(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "obj.sqlite")
	d, err := openNow(path)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d, path
}

func keys(ps []Pair) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Key))
	}
	return out
}

func TestKeyValue(t *testing.T) {
	d, _ := open(t)
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	v, ok, err := d.Get([]byte("a"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "1", string(v))
	_, ok, err = d.Get([]byte("missing"))
	require.NoError(t, err)
	assert.False(t, ok)

	require.NoError(t, d.PutMany([]Pair{{[]byte("b"), []byte("2")}, {[]byte("c"), []byte("3")}}))
	got, err := d.GetMany([][]byte{[]byte("c"), []byte("zz"), []byte("a")})
	require.NoError(t, err)
	assert.Equal(t, []string{"c", "a"}, keys(got))

	existed, err := d.Delete([]byte("a"))
	require.NoError(t, err)
	assert.True(t, existed)
	existed, err = d.Delete([]byte("a"))
	require.NoError(t, err)
	assert.False(t, existed)
	n, err := d.DeleteMany([][]byte{[]byte("b"), []byte("c"), []byte("nope")})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

func TestList(t *testing.T) {
	d, _ := open(t)
	for _, k := range []string{"a", "b", "ba", "bb", "c", "d"} {
		require.NoError(t, d.Put([]byte(k), []byte(k)))
	}
	cases := []struct {
		o    ListOptions
		want []string
	}{
		{ListOptions{}, []string{"a", "b", "ba", "bb", "c", "d"}},
		{ListOptions{Prefix: []byte("b")}, []string{"b", "ba", "bb"}},
		{ListOptions{Start: []byte("b"), End: []byte("c")}, []string{"b", "ba", "bb"}},
		{ListOptions{StartAfter: []byte("b"), End: []byte("c")}, []string{"ba", "bb"}},
		{ListOptions{Reverse: true, Limit: 2}, []string{"d", "c"}},
		{ListOptions{Prefix: []byte("b"), Reverse: true, Limit: 2}, []string{"bb", "ba"}},
	}
	for _, c := range cases {
		got, err := d.List(c.o)
		require.NoError(t, err)
		assert.Equal(t, c.want, keys(got), "%+v", c.o)
	}
}

// TestListIsBounded: a list of every key of a large object is refused,
// saying how to list it, rather than held whole in the host's memory; a
// limit lists it in parts.
func TestListIsBounded(t *testing.T) {
	d, _ := open(t)
	value := make([]byte, MaxValueBytes)
	n := MaxResultBytes/MaxValueBytes + 1
	for i := range n {
		require.NoError(t, d.Put(fmt.Appendf(nil, "k%04d", i), value))
	}
	_, err := d.List(ListOptions{})
	assert.ErrorIs(t, err, ErrListTooLarge)
	assert.ErrorContains(t, err, "list result is larger than 32 MiB; list fewer keys at a time")
	_, err = d.List(ListOptions{Reverse: true, Prefix: []byte("k")})
	assert.ErrorIs(t, err, ErrListTooLarge)
	first, err := d.List(ListOptions{Limit: n / 2})
	require.NoError(t, err)
	assert.Len(t, first, n/2)
	rest, err := d.List(ListOptions{StartAfter: first[len(first)-1].Key})
	require.NoError(t, err)
	assert.Len(t, rest, n-n/2)
	assert.Equal(t, fmt.Sprintf("k%04d", n-1), string(rest[len(rest)-1].Key))
}

func TestLimits(t *testing.T) {
	d, _ := open(t)
	assert.ErrorIs(t, d.Put(bytes.Repeat([]byte("k"), MaxKeyBytes+1), nil), ErrKeyTooLarge)
	assert.ErrorIs(t, d.Put([]byte("k"), make([]byte, MaxValueBytes+1)), ErrValueTooLarge)
	assert.ErrorIs(t, d.Put(nil, []byte("v")), ErrEmptyKey)
	assert.NoError(t, d.Put(bytes.Repeat([]byte("k"), MaxKeyBytes), make([]byte, MaxValueBytes)))
	many := make([][]byte, MaxBatch+1)
	_, err := d.GetMany(many)
	assert.ErrorIs(t, err, ErrBatchTooLarge)
	// A batch with one bad value writes nothing.
	err = d.PutMany([]Pair{{[]byte("ok"), []byte("v")}, {[]byte("bad"), make([]byte, MaxValueBytes+1)}})
	assert.ErrorIs(t, err, ErrValueTooLarge)
	_, ok, _ := d.Get([]byte("ok"))
	assert.False(t, ok)
}

func TestFlushIsDurableAndFailedEventIsUndone(t *testing.T) {
	d, path := open(t)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("kept"), []byte("1")))
	require.NoError(t, d.EndEvent(false))
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("undone"), []byte("2")))
	require.NoError(t, d.EndEvent(true))
	assert.True(t, d.Dirty())
	require.NoError(t, d.Flush())
	assert.False(t, d.Dirty())
	require.NoError(t, d.db.Close())

	d2, err := openNow(path)
	require.NoError(t, err)
	defer d2.Close()
	_, ok, _ := d2.Get([]byte("kept"))
	assert.True(t, ok)
	_, ok, _ = d2.Get([]byte("undone"))
	assert.False(t, ok)
}

// TestEventWithoutStatementsCostsNoSQL: an event that never touches storage
// opens no transaction, and the next event's failure still undoes only its
// own writes.
func TestEventWithoutStatementsCostsNoSQL(t *testing.T) {
	d, _ := open(t)
	d.BeginEvent()
	require.NoError(t, d.EndEvent(true))
	assert.Nil(t, d.tx, "an event without statements began a transaction")

	d.BeginEvent()
	require.NoError(t, d.Put([]byte("kept"), []byte("1")))
	require.NoError(t, d.EndEvent(false))
	d.BeginEvent()
	require.NoError(t, d.EndEvent(true)) // failed, but wrote nothing
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("undone"), []byte("2")))
	require.NoError(t, d.EndEvent(true))
	require.NoError(t, d.Flush())
	_, ok, _ := d.Get([]byte("kept"))
	assert.True(t, ok)
	_, ok, _ = d.Get([]byte("undone"))
	assert.False(t, ok)
}

func TestUnflushedWritesAreLostOnCrash(t *testing.T) {
	d, path := open(t)
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	// Simulate a crash: the connection goes away without a commit, and
	// with it its exclusive lock, as when the process dies.
	d.tx.Rollback()
	d.tx = nil
	require.NoError(t, d.db.Close())
	d.db = nil
	d2, err := openNow(path)
	require.NoError(t, err)
	defer d2.Close()
	_, ok, _ := d2.Get([]byte("k"))
	assert.False(t, ok)
}

func TestTransactions(t *testing.T) {
	d, _ := open(t)
	d.BeginEvent()
	require.NoError(t, d.BeginTransaction())
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	require.NoError(t, d.EndTransaction(false))
	_, ok, _ := d.Get([]byte("a"))
	assert.False(t, ok, "rolled back")
	require.NoError(t, d.BeginTransaction())
	require.NoError(t, d.Put([]byte("b"), []byte("1")))
	require.NoError(t, d.EndTransaction(true))
	_, ok, _ = d.Get([]byte("b"))
	assert.True(t, ok, "committed")
	assert.ErrorIs(t, d.EndTransaction(true), ErrNoTransaction)
	// A transaction left open fails the event and undoes its writes.
	require.NoError(t, d.BeginTransaction())
	require.NoError(t, d.Put([]byte("c"), []byte("1")))
	require.ErrorIs(t, d.EndEvent(false), ErrTxLeftOpen)
	_, ok, _ = d.Get([]byte("b"))
	assert.False(t, ok, "the event was undone")
}

func TestSQLValuesAreBounded(t *testing.T) {
	d, _ := open(t)
	_, err := d.Exec("SELECT length(randomblob(?))", MaxSQLValueBytes+1)
	require.Error(t, err, "a value over the limit is refused before SQLite allocates it")
	assert.Contains(t, err.Error(), "string or blob too big")
	r, err := d.Exec("SELECT length(randomblob(?))", MaxSQLValueBytes)
	require.NoError(t, err)
	assert.Equal(t, [][]any{{int64(MaxSQLValueBytes)}}, r.Rows)
}

func TestSQLEndsWithItsContext(t *testing.T) {
	d, _ := open(t)
	_, err := d.Exec("CREATE TABLE t (x)")
	require.NoError(t, err)
	require.NoError(t, d.Flush())
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	d.BeginEvent()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.ExecContext(ctx, "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c)")
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, d.EndEvent(true))
	require.NoError(t, d.Flush(), "an interrupted read keeps the batch")
	_, ok, err := d.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)

	// SQLite rolls back the whole transaction when it interrupts a write:
	// the batch's commit must fail, so no reply says its writes are kept.
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k2"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	d.BeginEvent()
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = d.ExecContext(ctx, "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c")
	require.Error(t, err)
	assert.Error(t, d.EndEvent(true))
	assert.Error(t, d.Flush())
	_, ok, err = d.Get([]byte("k2"))
	require.NoError(t, err)
	assert.False(t, ok)
	r, err := d.Exec("SELECT count(*) FROM t")
	require.NoError(t, err)
	assert.Equal(t, [][]any{{int64(0)}}, r.Rows)
}

func TestSQL(t *testing.T) {
	d, _ := open(t)
	_, err := d.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
	require.NoError(t, err)
	r, err := d.Exec("INSERT INTO t (name, score, data) VALUES (?, ?, ?), (?, ?, ?)", "a", 1.5, []byte{1}, "b", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(2), r.RowsWritten)
	r, err = d.Exec("SELECT id, name, score, data FROM t ORDER BY id")
	require.NoError(t, err)
	assert.Equal(t, []string{"id", "name", "score", "data"}, r.Columns)
	assert.Equal(t, [][]any{{int64(1), "a", 1.5, []byte{1}}, {int64(2), "b", nil, nil}}, r.Rows)

	_, err = d.Exec("SELEC nonsense")
	assert.ErrorContains(t, err, `near "SELEC": syntax error`)
	_, err = d.Exec("INSERT INTO missing VALUES (1)")
	assert.ErrorContains(t, err, "no such table: missing")
	_, err = d.Exec("BEGIN")
	assert.ErrorIs(t, err, ErrTxStatement)
	_, err = d.Exec("SELECT * FROM _wharf_kv")
	assert.ErrorIs(t, err, ErrReserved)
	_, err = d.Exec("SELECT 1; COMMIT")
	assert.ErrorIs(t, err, ErrMultipleStatements)
	r, err = d.Exec("SELECT ';' AS semi, 'a;b' /* x;y */ -- z;\n;")
	require.NoError(t, err, "semicolons in literals and comments do not end a statement")
	assert.Equal(t, [][]any{{";", "a;b"}}, r.Rows)
	_, err = d.Exec("ATTACH DATABASE 'x' AS y")
	assert.ErrorContains(t, err, "ATTACH is not allowed")

	// A text SQLite makes no statement of answers no rows (a prepared one
	// would crash the process in the driver); with arguments, it expects
	// none. A statement's rows are not lost to the semicolons ending it.
	for _, q := range []string{"", "  \n", "-- a note", "/* a note */", ";", "\x00SELECT 1"} {
		r, err = d.Exec(q)
		require.NoError(t, err, "%q", q)
		assert.Empty(t, r.Rows, "%q", q)
		_, err = d.Exec(q, 1)
		assert.EqualError(t, err, "wrong number of SQL arguments: the statement has 0 parameters, got 1 argument", "%q", q)
	}
	r, err = d.Exec("SELECT 1;;")
	require.NoError(t, err)
	assert.Equal(t, [][]any{{int64(1)}}, r.Rows)
	r, err = d.Exec("SELECT ?1 + ?1, :x;\n;", 2, "x")
	require.NoError(t, err)
	assert.Equal(t, [][]any{{int64(4), "x"}}, r.Rows, "a numbered or named parameter used twice is one argument")
	_, err = d.Exec("SELECT ?", 1, 2)
	assert.EqualError(t, err, "wrong number of SQL arguments: the statement has 1 parameter, got 2 arguments")
	_, err = d.Exec("SELECT ?")
	assert.EqualError(t, err, "wrong number of SQL arguments: the statement has 1 parameter, got 0 arguments", "not the driver's words")
	_, err = d.Exec("SELECT ?1, :x, ?3", 1)
	assert.ErrorIs(t, err, ErrArgumentCount)
	assert.EqualError(t, err, "wrong number of SQL arguments: the statement has 3 parameters, got 1 argument")

	// A failing multi-row statement leaves nothing behind.
	_, err = d.Exec("INSERT INTO t (id, name) VALUES (10, 'x'), (1, 'dup')")
	assert.ErrorContains(t, err, "UNIQUE constraint failed")
	r, err = d.Exec("SELECT count(*) FROM t")
	require.NoError(t, err)
	assert.Equal(t, int64(2), r.Rows[0][0])
}

// TestSQLReachesNothingBeyondItsDatabase: an object's SQL cannot open
// another file (ATTACH: another object's database, or any path the host
// may write), act on the host's transaction, or change what SQLite does
// for the whole process or the commit log, however comments split or
// precede its words.
func TestSQLReachesNothingBeyondItsDatabase(t *testing.T) {
	d, _ := open(t)
	other, _ := open(t)
	t.Cleanup(func() { other.db.Exec("PRAGMA hard_heap_limit = 0") }) // should a refusal fail
	require.NoError(t, d.Put([]byte("k"), []byte("uncommitted")))

	dir := t.TempDir()
	for _, q := range []string{
		"/**/ ATTACH DATABASE '" + filepath.Join(dir, "a.db") + "' AS y",
		"-- a note\nATTACH '" + filepath.Join(dir, "b.db") + "' AS y",
		"/* a note */ DETACH main",
	} {
		_, err := d.Exec(q)
		assert.ErrorContains(t, err, "is not allowed", "%q", q)
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, ents, "no file is made outside the database")

	for _, q := range []string{"/**/ COMMIT", "-- a note\nEND", "/**/ROLLBACK", "/**/ RELEASE wharf_event", "/**/ SAVEPOINT s"} {
		_, err := d.Exec(q)
		assert.ErrorIs(t, err, ErrTxStatement, "%q", q)
	}
	_, err = d.Exec("PRAGMA/**/application_id = 7")
	assert.ErrorIs(t, err, ErrReserved)
	for _, q := range []string{"PRAGMA hard_heap_limit = 100000", "PRAGMA /**/ soft_heap_limit = 0", "PRAGMA main.max_page_count = 1",
		"PRAGMA temp_store_directory = '" + dir + "'", "PRAGMA temp_store = MEMORY"} {
		_, err := d.Exec(q)
		assert.ErrorContains(t, err, "not authorized: ATTACH, DETACH and PRAGMA", "%q", q)
	}
	for _, q := range []string{"PRAGMA query_only = 1", "PRAGMA writable_schema = ON", "PRAGMA main.synchronous = OFF",
		"PRAGMA journal_mode = MEMORY", "PRAGMA locking_mode = NORMAL", "PRAGMA /**/ query_only(true)"} {
		_, err := d.Exec(q)
		assert.ErrorContains(t, err, "and PRAGMA journal_mode, locking_mode, query_only, synchronous, writable_schema may be read, not set", "%q", q)
	}
	for _, q := range []string{"PRAGMA query_only", "PRAGMA journal_mode", "PRAGMA foreign_keys = ON", "PRAGMA table_info(t)"} {
		_, err := d.Exec(q)
		assert.NoError(t, err, "%q", q)
	}
	// The host's transaction is whole: the write waits for its commit.
	assert.True(t, d.Dirty())
	require.NoError(t, d.Flush())
	v, ok, err := d.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "uncommitted", string(v))
	// Another object's database works as before.
	_, err = other.Exec("CREATE TABLE t (x)")
	require.NoError(t, err)
	_, err = other.Exec("INSERT INTO t VALUES (randomblob(1000000))")
	require.NoError(t, err)
	require.NoError(t, other.Flush())
}

func TestAlarmAndDeleteAll(t *testing.T) {
	d, _ := open(t)
	_, ok, err := d.Alarm()
	require.NoError(t, err)
	assert.False(t, ok)
	at := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	require.NoError(t, d.SetAlarm(at))
	got, ok, err := d.Alarm()
	require.NoError(t, err)
	assert.True(t, ok)
	assert.True(t, at.Equal(got))

	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	_, err = d.Exec("CREATE TABLE \"odd\"\"name\" (x)")
	require.NoError(t, err)
	require.NoError(t, d.DeleteAll())
	all, _ := d.List(ListOptions{})
	assert.Empty(t, all)
	_, ok, _ = d.Alarm()
	assert.False(t, ok)
	r, err := d.Exec("SELECT name FROM sqlite_schema WHERE type='table'")
	require.NoError(t, err)
	for _, row := range r.Rows {
		assert.True(t, strings.HasPrefix(row[0].(string), "_wharf_"), row[0])
	}
}

func TestLazyDatabaseOpensWithItsFirstStatement(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "obj.sqlite")
	d := lazy(path)
	d.BeginEvent()
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
	require.NoError(t, d.Close())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "a database without statements leaves no file")

	d = lazy(path)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Close())
	assert.FileExists(t, path)
	d = lazy(path)
	defer d.Close()
	v, ok, err := d.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v", string(v), "the next lazy open reads what the first wrote")
}

// TestReadingANewDatabaseMakesNoFile: an object that only reads its new
// storage (or deletes from it) finds it empty and costs no file and no
// sync; a write in the same event makes the file, which the earlier reads
// agree with.
func TestReadingANewDatabaseMakesNoFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "obj.sqlite")
	d := lazy(path)
	d.BeginEvent()
	_, ok, err := d.Get([]byte("k"))
	require.NoError(t, err)
	assert.False(t, ok)
	pairs, err := d.GetMany([][]byte{[]byte("k"), []byte("l")})
	require.NoError(t, err)
	assert.Empty(t, pairs)
	pairs, err = d.List(ListOptions{Prefix: []byte("k")})
	require.NoError(t, err)
	assert.Empty(t, pairs)
	_, ok, err = d.Alarm()
	require.NoError(t, err)
	assert.False(t, ok)
	existed, err := d.Delete([]byte("k"))
	require.NoError(t, err)
	assert.False(t, existed)
	n, err := d.DeleteMany([][]byte{[]byte("k")})
	require.NoError(t, err)
	assert.Zero(t, n)
	require.NoError(t, d.DeleteAlarm())
	require.NoError(t, d.DeleteAll())
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
	assert.False(t, d.Opened())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "reads and deletes of a new database leave no file")

	d.BeginEvent()
	_, ok, err = d.Get([]byte("k"))
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	v, ok, err := d.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v", string(v))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Close())
	assert.FileExists(t, path, "the first write made the file")

	d = lazy(path)
	defer d.Close()
	v, _, err = d.Get([]byte("k"))
	require.NoError(t, err)
	assert.Equal(t, "v", string(v), "and it is read from there at the next open")
	assert.True(t, d.Opened())
}

// TestLazyDatabaseReportsAnUnopenableFileAtItsFirstStatement (a write: a
// read finds a missing file empty): the error says why, and names the file
// for the host (OpenError.Path), not in its message, which reaches guests.
func TestLazyDatabaseReportsAnUnopenableFileAtItsFirstStatement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "obj.sqlite")
	d := lazy(path)
	err := d.Put([]byte("k"), []byte("v"))
	require.Error(t, err)
	assert.Equal(t, "opening the database: open: no such file or directory", err.Error())
	oe, ok := errors.AsType[*OpenError](err)
	require.True(t, ok)
	assert.Equal(t, path, oe.Path)
	assert.NoError(t, d.Close(), "nothing was opened")
}

// TestAnEmptyDatabaseFileIsNotServedAsANewDatabase: an object's file
// truncated to 0 bytes outside wharf (a botched restore, say) is refused,
// saying so, and left as it is, rather than opened by SQLite as a new empty
// database: the object's values were read as absent (a counter of 7 served
// 0), and its next write put a new database over what was left. wharf
// never leaves such a file: create syncs a new database before it names it.
func TestAnEmptyDatabaseFileIsNotServedAsANewDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obj.sqlite")
	d := lazy(path)
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("count"), []byte("7")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Close())
	require.NoError(t, os.Truncate(path, 0))

	d = lazy(path)
	defer d.Close()
	d.BeginEvent()
	_, ok, err := d.Get([]byte("count"))
	assert.False(t, ok)
	require.ErrorIs(t, err, ErrEmptyFile)
	assert.Equal(t, "opening the database: "+ErrEmptyFile.Error(), err.Error())
	require.ErrorIs(t, d.Put([]byte("count"), []byte("1")), ErrEmptyFile)
	require.NoError(t, d.EndEvent(true))
	require.NoError(t, d.Flush())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the file was written to")

	// Emptied after a crash that left its WAL, and commits of it in the
	// log: not replayed into (SQLite would checkpoint the WAL's pages into
	// it), and refused.
	h, d, path := oneObject(t)
	then := t.TempDir()
	copyFiles(t, then, dbFiles(path)...)
	require.FileExists(t, filepath.Join(then, filepath.Base(path)+"-wal"))
	require.NoError(t, os.Truncate(filepath.Join(then, filepath.Base(path)), 0))
	l, after := crashAndOpen(t, h, d, then)
	path = filepath.Join(after, filepath.Base(path))
	assert.ErrorIs(t, l.Recovery().Unreplayed[path], ErrEmptyFile)
	d = Lazy(path, l)
	defer d.Close()
	_, _, err = d.Get([]byte("a"))
	assert.ErrorIs(t, err, ErrUnreplayed)
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the file was written to")
}

func TestSQLiteIsConfiguredBeforeItsFirstConnection(t *testing.T) {
	assert.NoError(t, configError, "connections would each allocate a bulk page cache or a lookaside")
}

// TestAnOpenDatabaseHoldsLittleMemory: a host keeps thousands of object
// databases open, each with a committed write. SQLite holds about 76 KiB
// for each (schema, prepared statements, a few pages, and the WAL's index,
// 32 KiB in its heap with exclusive locking); with its default lookaside
// it held 37 KiB more, with a bulk page cache more still.
func TestAnOpenDatabaseHoldsLittleMemory(t *testing.T) {
	dir := t.TempDir()
	const n = 200
	before := MemoryUsed()
	for i := range n {
		d := lazy(filepath.Join(dir, fmt.Sprintf("%d.sqlite", i)))
		defer d.Close()
		d.BeginEvent()
		require.NoError(t, d.Put([]byte("value"), []byte("1")))
		require.NoError(t, d.EndEvent(false))
		require.NoError(t, d.Flush())
	}
	perDB := (MemoryUsed() - before) / n
	t.Logf("SQLite holds %d KiB per open database", perDB>>10)
	assert.Less(t, perDB, int64(88<<10))
}

// TestAnOpenDatabaseIsLockedWithThreeDescriptors: wharf holds a lock on
// the file of each database it has open, one made by its first statement
// too (its new file is synced before SQLite opens it: closing any
// descriptor of a file drops the process's POSIX locks on it, SQLite's
// exclusive lock with them; SQLite's own connections in this process
// would not tell, as it keeps its locks' state per file for the whole
// process). With exclusive locking SQLite keeps the WAL's index in its
// heap: no -shm file beside the database, and three descriptors for it
// (its file, its WAL, and the WAL again for the commit log).
func TestAnOpenDatabaseIsLockedWithThreeDescriptors(t *testing.T) {
	root := t.TempDir()
	l, err := OpenLog(filepath.Join(root, "log"), root, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	path := filepath.Join(root, "obj.sqlite")
	for _, round := range []string{"a new database", "one there before"} {
		d := Lazy(path, l)
		d.BeginEvent()
		require.NoError(t, d.Put([]byte("value"), []byte("1")), round)
		require.NoError(t, d.EndEvent(false), round)
		require.NoError(t, d.Flush(), round)
		assert.True(t, lockedByThisProcess(t, path), round)
		assert.NoFileExists(t, path+"-shm", round)
		assert.ElementsMatch(t, []string{path, path + "-wal", path + "-wal"}, descriptorsOn(t, path), round)
		require.NoError(t, d.Close(), round)
		assert.False(t, lockedByThisProcess(t, path), "%s, closed", round)
	}
}

// descriptorsOn lists the files this process holds open whose path begins
// with path.
func descriptorsOn(t *testing.T, path string) []string {
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var held []string
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, path) {
			held = append(held, target)
		}
	}
	return held
}

// lockedByThisProcess reports whether /proc/locks lists a lock of this
// process on the file at path.
func lockedByThisProcess(t *testing.T, path string) bool {
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	locks, err := os.ReadFile("/proc/locks")
	require.NoError(t, err)
	for line := range strings.Lines(string(locks)) {
		// 1: POSIX  ADVISORY  WRITE PID MAJOR:MINOR:INODE START END
		f := strings.Fields(line)
		if len(f) >= 6 && f[4] == strconv.Itoa(os.Getpid()) && strings.HasSuffix(f[5], ":"+strconv.FormatUint(st.Ino, 10)) {
			return true
		}
	}
	return false
}

// TestPageCachesStayWithinTheMemoryLimit reads 512 KiB from each of 80
// open databases: without a limit SQLite keeps every page it read, with
// one the caches stop growing near it.
func TestPageCachesStayWithinTheMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	value := bytes.Repeat([]byte("x"), 4<<10)
	var dbs []*DB
	for i := range 80 {
		d, err := openNow(filepath.Join(dir, fmt.Sprintf("%d.sqlite", i)))
		require.NoError(t, err)
		defer d.Close()
		for k := range 128 {
			require.NoError(t, d.Put([]byte(fmt.Sprint(k)), value))
		}
		require.NoError(t, d.Flush())
		d.ShrinkMemory()
		dbs = append(dbs, d)
	}
	readAll := func() int64 {
		before := MemoryUsed()
		for _, d := range dbs {
			pairs, err := d.List(ListOptions{})
			require.NoError(t, err)
			require.Len(t, pairs, 128)
		}
		grown := MemoryUsed() - before
		for _, d := range dbs {
			require.NoError(t, d.Flush()) // ends the read transaction
			d.ShrinkMemory()
		}
		return grown
	}
	defer SetMemoryLimit(DefaultMemoryLimit)
	SetMemoryLimit(0)
	unlimited := readAll()
	SetMemoryLimit(MemoryUsed() + 8<<20)
	limited := readAll()
	t.Logf("SQLite memory grew by %d KiB without a limit, %d KiB with 8 MiB of room", unlimited>>10, limited>>10)
	assert.Greater(t, unlimited, int64(30<<20), "80 × 512 KiB of pages stay cached without a limit")
	assert.Less(t, limited, int64(12<<20), "the caches stop growing near the limit")
}

// TestCommitRefusedWhenTheFileWasDeleted: writes to a database whose file
// was removed on disk would be acknowledged and then lost; Flush refuses
// them instead.
func TestCommitRefusedWhenTheFileWasDeleted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obj.sqlite")
	d, err := openNow(path)
	require.NoError(t, err)
	defer d.Close()
	require.NoError(t, d.Put([]byte("a"), []byte("1")))
	require.NoError(t, d.Flush())
	for _, p := range []string{path, path + "-wal"} {
		require.NoError(t, os.Remove(p))
	}
	require.NoError(t, d.Put([]byte("b"), []byte("2")))
	assert.ErrorIs(t, d.Flush(), ErrFileReplaced)
	_, ok, err := d.Get([]byte("b"))
	require.NoError(t, err)
	assert.False(t, ok, "the refused write is undone")
	require.NoError(t, d.Flush(), "a read-only transaction commits: nothing would be lost")
}

// TestTemporaryFilesGoToTheTempDir: a statement whose DISTINCT outgrows
// SQLite's cache spills it to a temporary file in SetTempDir's directory,
// which SetTempDir empties of what a crash left and makes the owner's
// only; without it the file went to $TMPDIR, /var/tmp or /tmp, on the
// host's root filesystem, whatever the data directory's disk.
func TestTemporaryFilesGoToTheTempDir(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), TempDirName)
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "etilqs_left"), 0o755))
	require.NoError(t, SetTempDir(tmp))
	t.Cleanup(func() { require.NoError(t, SetTempDir("")) })
	testutil.CheckFreshTempDir(t, tmp)

	d, _ := open(t)
	var res *Result
	var err error
	held := testutil.FilesHeldDuring(os.Getpid(), func() {
		res, err = d.Exec(testutil.SpillingSQL)
	})
	require.NoError(t, err)
	assert.Equal(t, [][]any{{int64(100000)}}, res.Rows)
	testutil.CheckTempFilesIn(t, held, tmp)
	ents, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, ents, "SQLite leaves no temporary file")
}
