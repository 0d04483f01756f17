package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/wharfhq/wharf/abi"
)

// Exec runs one SQL statement on the object's database with positional
// arguments (?) and returns its rows. Arguments may be nil, integers,
// floats, bools, strings or []byte. Errors carry SQLite's own message.
// Tables named _wharf_* and setting PRAGMA application_id are reserved,
// and transactions go through Transaction, not BEGIN/COMMIT. A statement
// reaches only the object's own database: ATTACH, DETACH, VACUUM and the
// PRAGMAs that act on the whole host (hard_heap_limit, soft_heap_limit,
// temp_store_directory, data_store_directory, temp_store, max_page_count)
// are refused; those the host's rollback and durability rest on
// (journal_mode, synchronous, locking_mode, writable_schema, query_only)
// may be read, not set.
func (s *Storage) Exec(query string, args ...any) (*Cursor, error) {
	b := abi.NewFieldsBuilder(nil)
	var num [8]byte
	for i, a := range args {
		switch v := a.(type) {
		case nil:
			b.Add(abi.SQLNull, "")
		case string:
			b.Add(abi.SQLText, v)
		case []byte:
			b.Add(abi.SQLBlob, string(v))
		case bool:
			binary.LittleEndian.PutUint64(num[:], map[bool]uint64{true: 1}[v])
			b.Add(abi.SQLInt, string(num[:]))
		case float32, float64:
			binary.LittleEndian.PutUint64(num[:], math.Float64bits(toFloat(v)))
			b.Add(abi.SQLFloat, string(num[:]))
		default:
			n, ok := toInt(v)
			if !ok {
				return nil, fmt.Errorf("sql argument %d: unsupported type %T", i+1, a)
			}
			binary.LittleEndian.PutUint64(num[:], uint64(n))
			b.Add(abi.SQLInt, string(num[:]))
		}
	}
	ev, err := s.obj.current()
	if err != nil {
		return nil, err
	}
	raw, err := ev.SQLExec(query, b.Bytes())
	if err != nil {
		return nil, err
	}
	c := &Cursor{}
	var row []any
	err = abi.RangeFields(raw, func(n, v []byte) bool {
		switch string(n) {
		case abi.FieldColumn:
			c.Columns = append(c.Columns, string(v))
		case abi.FieldRow:
			if row != nil {
				c.rows = append(c.rows, row)
			}
			row = make([]any, 0, len(c.Columns))
		case abi.FieldRowsWritten:
			c.RowsWritten, _ = strconv.ParseInt(string(v), 10, 64)
		case abi.SQLNull:
			row = append(row, nil)
		case abi.SQLInt:
			row = append(row, int64(binary.LittleEndian.Uint64(v)))
		case abi.SQLFloat:
			row = append(row, math.Float64frombits(binary.LittleEndian.Uint64(v)))
		case abi.SQLText:
			row = append(row, string(v))
		case abi.SQLBlob:
			row = append(row, append([]byte{}, v...))
		}
		return true
	})
	if row != nil {
		c.rows = append(c.rows, row)
	}
	return c, err
}

func toFloat(v any) float64 {
	if f, ok := v.(float32); ok {
		return float64(f)
	}
	return v.(float64)
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case uint:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		return int64(n), true
	}
	return 0, false
}

// Cursor holds the rows a statement returned.
type Cursor struct {
	// Columns are the result's column names.
	Columns []string
	// RowsWritten counts rows the statement inserted, updated or deleted.
	RowsWritten int64
	rows        [][]any
	next        int
}

// Next advances to the next row; it returns false after the last.
func (c *Cursor) Next() bool {
	if c.next >= len(c.rows) {
		return false
	}
	c.next++
	return true
}

// Row returns the current row: int64, float64, string, []byte or nil.
func (c *Cursor) Row() []any { return c.rows[c.next-1] }

// All returns every row.
func (c *Cursor) All() [][]any { return c.rows }

// Scan copies the current row into pointers to int, int64, float64,
// string, []byte, bool or any.
func (c *Cursor) Scan(dest ...any) error {
	row := c.Row()
	if len(dest) != len(row) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(row))
	}
	for i, d := range dest {
		v := row[i]
		switch p := d.(type) {
		case *any:
			*p = v
		case *int64:
			n, ok := v.(int64)
			if !ok {
				return fmt.Errorf("scan column %s: %T is not an integer", c.Columns[i], v)
			}
			*p = n
		case *int:
			n, ok := v.(int64)
			if !ok {
				return fmt.Errorf("scan column %s: %T is not an integer", c.Columns[i], v)
			}
			*p = int(n)
		case *bool:
			n, ok := v.(int64)
			if !ok {
				return fmt.Errorf("scan column %s: %T is not a boolean", c.Columns[i], v)
			}
			*p = n != 0
		case *float64:
			switch x := v.(type) {
			case float64:
				*p = x
			case int64:
				*p = float64(x)
			default:
				return fmt.Errorf("scan column %s: %T is not a number", c.Columns[i], v)
			}
		case *string:
			switch x := v.(type) {
			case string:
				*p = x
			case []byte:
				*p = string(x)
			default:
				*p = fmt.Sprint(x)
			}
		case *[]byte:
			switch x := v.(type) {
			case []byte:
				*p = x
			case string:
				*p = []byte(x)
			case nil:
				*p = nil
			default:
				return fmt.Errorf("scan column %s: %T is not bytes", c.Columns[i], v)
			}
		default:
			return fmt.Errorf("scan: unsupported destination %T", d)
		}
	}
	return nil
}
