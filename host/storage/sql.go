package storage

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/mattn/go-sqlite3"
)

// MaxResultBytes bounds the rows one SQL statement may return at once.
const MaxResultBytes = 32 << 20

var (
	txStatement  = regexp.MustCompile(`(?i)^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b`)
	reservedName = regexp.MustCompile(`(?i)\b_wharf_`)
	attachOrVac  = regexp.MustCompile(`(?i)^\s*(ATTACH|DETACH|VACUUM)\b`)
	// setAppID sets the header's application_id, where the commit log
	// keeps the file's incarnation (see create.go).
	setAppID = regexp.MustCompile("(?is)\\bPRAGMA\\s+(?:[\\w\"`\\[\\]]+\\s*\\.\\s*)?[\"`\\[]?application_id[\"`\\]]?\\s*[=(]")
)

// deniedPragmas are the PRAGMAs an object's SQL may not run, as they act
// beyond its own database: on the whole process's SQLite (its memory
// limits: hard_heap_limit makes every object's database fail with "out of
// memory"; where it writes temporary files); on the host's memory beyond
// those limits (temp_store = MEMORY holds a statement's temporary tables
// and sorts in it: a DISTINCT over 300 MB of rows took 1.5 GB); or, with
// max_page_count, on the host's commit log, which takes the "database or
// disk is full" it causes for a full disk and gives up its spare segment.
var deniedPragmas = map[string]bool{
	"hard_heap_limit":      true,
	"soft_heap_limit":      true,
	"temp_store_directory": true,
	"data_store_directory": true,
	"temp_store":           true,
	"max_page_count":       true,
}

// fixedPragmas are the settings wharf opens every object database with and
// relies on: the WAL and when it is synced (journal_mode, synchronous: a
// failed event's rollback, durability), the exclusive lock
// (locking_mode), a schema only SQLite writes (writable_schema: an object
// could rewrite wharf's own tables' definitions and leave its database
// malformed) and a connection that writes (query_only: wharf's own commit
// record would fail). An object's SQL may read them, not set them.
var fixedPragmas = map[string]bool{
	"journal_mode":    true,
	"synchronous":     true,
	"locking_mode":    true,
	"writable_schema": true,
	"query_only":      true,
}

// authorize is the SQLite authorizer of every connection to an object's
// database, conn, which tells whether it is in a transaction, where every
// statement of an object runs: there it refuses, however the statement is
// written, ATTACH and DETACH (a database at any path the host may open:
// another object's, a file anywhere). Outside one, only wharf's own
// statements run, a snapshot's VACUUM INTO, which attaches its copy. It
// refuses the deniedPragmas everywhere: no statement of wharf's own uses
// them; and the setting of fixedPragmas (value, the PRAGMA's argument, not
// empty) inside a transaction. SQLite then fails the statement with "not
// authorized" (restated by notAuthorized). SQLite asks it of every action
// of every statement it prepares (each event's savepoints too): the others
// pass at once.
func authorize(conn interface{ AutoCommit() bool }, op int, arg1, value string) int {
	switch op {
	case sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH:
		if !conn.AutoCommit() {
			return sqlite3.SQLITE_DENY
		}
	case sqlite3.SQLITE_PRAGMA:
		pragma := strings.ToLower(arg1)
		if deniedPragmas[pragma] || value != "" && fixedPragmas[pragma] && !conn.AutoCommit() {
			return sqlite3.SQLITE_DENY
		}
	}
	return sqlite3.SQLITE_OK
}

// notAuthorized restates SQLite's "not authorized", an error of a statement
// authorize refused, saying what is refused; it returns other errors as
// they are.
func notAuthorized(err error) error {
	var e sqlite3.Error
	if !errors.As(err, &e) || e.Code != sqlite3.ErrAuth {
		return err
	}
	return fmt.Errorf("%w: ATTACH, DETACH and PRAGMA %s are not allowed, and PRAGMA %s may be read, not set", err,
		strings.Join(slices.Sorted(maps.Keys(deniedPragmas)), ", "), strings.Join(slices.Sorted(maps.Keys(fixedPragmas)), ", "))
}

// Errors of Exec a caller can cause.
var (
	ErrMultipleStatements = errors.New("Exec runs one SQL statement; split the text")
	ErrResultTooLarge     = fmt.Errorf("result is larger than %d MiB; select fewer rows (LIMIT)", MaxResultBytes>>20)
	ErrArgumentCount      = errors.New("wrong number of SQL arguments")
)

// argCountMessage is the driver's (without arguments) or database/sql's
// (with arguments) error for a statement given a number of arguments other
// than its number of parameters.
var argCountMessage = regexp.MustCompile(`^(?:not enough args to execute query: want (\d+) got|sql: expected (\d+) arguments, got) (\d+)$`)

// argCountError restates an argCountMessage error as ErrArgumentCount,
// naming the statement's parameters and the arguments given; it returns
// other errors as they are.
func argCountError(err error) error {
	m := argCountMessage.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	return fmt.Errorf("%w: the statement has %s, got %s", ErrArgumentCount, counted(cmp.Or(m[1], m[2]), "parameter"), counted(m[3], "argument"))
}

// counted is "1 thing" or "n things".
func counted(n, thing string) string {
	if n == "1" {
		return n + " " + thing
	}
	return n + " " + thing + "s"
}

// withoutComments returns q with each comment replaced by a space, as
// SQLite's tokenizer reads it, so that the checks of ExecContext see the
// statement's words however comments split or precede them ("/**/COMMIT",
// "PRAGMA/**/application_id = 1"), and reports whether q holds more than
// one statement: a ';' outside literals, identifiers and comments followed
// by more than whitespace and ';'. A comment without its end runs to the end
// of q; a literal or identifier without its end is left to SQLite to report.
func withoutComments(q string) (text string, multiple bool) {
	var b strings.Builder
	end := len(strings.TrimRight(q, " \t\r\n;"))
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"' || c == '`' || c == '[':
			closing := c
			if c == '[' {
				closing = ']'
			}
			j := strings.IndexByte(q[i+1:], closing)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String(), multiple
			}
			b.WriteString(q[i : i+j+2])
			i += j + 1
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			b.WriteByte(' ')
			if j < 0 {
				return b.String(), multiple
			}
			i += j - 1 // the newline is kept
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := strings.Index(q[i+2:], "*/")
			b.WriteByte(' ')
			if j < 0 {
				return b.String(), multiple
			}
			i += j + 3
		default:
			if c == ';' && i < end {
				multiple = true
			}
			b.WriteByte(c)
		}
	}
	return b.String(), multiple
}

// Result is what a SQL statement returned: column names and rows of
// values (int64, float64, string, []byte or nil).
type Result struct {
	Columns     []string
	Rows        [][]any
	RowsRead    int
	RowsWritten int64
}

// Exec runs one SQL statement with positional arguments and returns its
// rows. SQLite's error text is returned as is.
func (d *DB) Exec(query string, args ...any) (*Result, error) {
	return d.ExecContext(context.Background(), query, args...)
}

// ExecContext is Exec that interrupts the statement when ctx ends (a
// statement can run for ever: a recursive query without a bound); it then
// fails with SQLite's "interrupted" and leaves no partial write.
func (d *DB) ExecContext(ctx context.Context, query string, args ...any) (*Result, error) {
	text, multiple := withoutComments(query)
	switch {
	case multiple:
		return nil, ErrMultipleStatements
	case txStatement.MatchString(text):
		return nil, ErrTxStatement
	case reservedName.MatchString(text):
		return nil, ErrReserved
	case setAppID.MatchString(text):
		return nil, ErrReserved
	case attachOrVac.MatchString(text):
		return nil, fmt.Errorf("%s is not allowed", strings.ToUpper(strings.Fields(text)[0]))
	}
	tx, err := d.txn()
	if err != nil {
		return nil, err
	}
	// Savepoint the statement so a failing one leaves no partial write.
	if _, err := tx.Exec("SAVEPOINT wharf_stmt"); err != nil {
		return nil, err
	}
	res, err := d.query(ctx, tx, query, args)
	if err != nil {
		tx.Exec("ROLLBACK TO wharf_stmt")
		tx.Exec("RELEASE wharf_stmt")
		return nil, notAuthorized(d.noteFull(err))
	}
	if _, err := tx.Exec("RELEASE wharf_stmt"); err != nil {
		return nil, err
	}
	if res.RowsWritten > 0 || !isReadOnly(text) {
		d.dirty = true
		if err := d.record(query, args); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func isReadOnly(q string) bool {
	f := strings.Fields(strings.ToUpper(q))
	return len(f) > 0 && (f[0] == "SELECT" || f[0] == "EXPLAIN")
}

func (d *DB) query(ctx context.Context, tx *sql.Tx, query string, args []any) (*Result, error) {
	before := totalChanges(tx)
	rows, done, err := queryRows(ctx, tx, query, args)
	if err != nil {
		return nil, err
	}
	defer done()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: cols}
	size := 0
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for _, v := range vals {
			switch x := v.(type) {
			case string:
				size += len(x)
			case []byte:
				size += len(x)
			default:
				size += 8
			}
		}
		if size > MaxResultBytes {
			return nil, ErrResultTooLarge
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	res.RowsRead = len(res.Rows)
	res.RowsWritten = totalChanges(tx) - before
	return res, nil
}

// queryRows runs query; done closes what it used, after the rows. With
// arguments, query is prepared first, so that database/sql checks their
// number (the driver alone ignores extra ones); without, the driver runs
// it: it answers a text SQLite makes no statement of (blank, only comments
// or ';'), which a prepared statement would pass to SQLite as a null
// statement, crashing the process. (With arguments, such a text fails the
// count, 0 expected, before it runs.) Semicolons ending the statement are
// left out: the driver would run what follows the first as a statement of
// its own, whose rows (none) would replace this one's.
func queryRows(ctx context.Context, tx *sql.Tx, query string, args []any) (rows *sql.Rows, done func(), err error) {
	query = strings.TrimRight(query, " \t\r\n;")
	if len(args) == 0 {
		rows, err = tx.QueryContext(ctx, query)
		if err != nil {
			return nil, nil, argCountError(err)
		}
		return rows, func() { rows.Close() }, nil
	}
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	rows, err = stmt.QueryContext(ctx, args...)
	if err != nil {
		stmt.Close()
		return nil, nil, argCountError(err)
	}
	return rows, func() { rows.Close(); stmt.Close() }, nil
}

func totalChanges(tx *sql.Tx) int64 {
	var n int64
	tx.QueryRow("SELECT total_changes()").Scan(&n)
	return n
}
