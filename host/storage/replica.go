package storage

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Replication. A DB given a Replicator records each write it makes (the
// statement and its arguments, as SQLite ran it) and, at Flush, hands the
// writes of the commit to the Replicator before committing them locally.
// If the Replicator refuses, nothing is committed. A DB elsewhere catches up
// by applying the same commits in order: statement-based replication, so a
// SQL statement that is not deterministic (random(), datetime('now'))
// replays to a different value.

// Replicator keeps an object's commits where they outlive this host.
type Replicator interface {
	// Replicate stores commit number seq; it is durable when Replicate
	// returns nil.
	Replicate(seq uint64, commit []byte) error
}

// ErrReplicaAhead is a local database that has commits its replicated log
// does not: it must be rebuilt from the log.
var ErrReplicaAhead = errors.New("the local database is ahead of its replicated log")

// statement is one recorded write.
type statement struct {
	Query string `json:"q"`
	Args  []arg  `json:"a,omitempty"`
}

// arg is one SQL argument with its type kept (JSON alone would turn every
// number into a float and every blob into text).
type arg struct {
	Int   *int64   `json:"i,omitempty"`
	Float *float64 `json:"f,omitempty"`
	Text  *string  `json:"s,omitempty"`
	Blob  *[]byte  `json:"b,omitempty"`
}

func encodeArg(v any) (arg, error) {
	switch x := v.(type) {
	case nil:
		return arg{}, nil
	case int64:
		return arg{Int: &x}, nil
	case float64:
		return arg{Float: &x}, nil
	case string:
		return arg{Text: &x}, nil
	case []byte:
		return arg{Blob: &x}, nil
	}
	return arg{}, fmt.Errorf("cannot replicate a SQL argument of type %T", v)
}

func (a arg) value() any {
	switch {
	case a.Int != nil:
		return *a.Int
	case a.Float != nil:
		return *a.Float
	case a.Text != nil:
		return *a.Text
	case a.Blob != nil:
		return *a.Blob
	}
	return nil
}

// SetReplicator makes every later commit go through r first, numbered on
// from AppliedSeq.
func (d *DB) SetReplicator(r Replicator) { d.replicator = r }

// Replicator is the database's Replicator; nil without one.
func (d *DB) Replicator() Replicator { return d.replicator }

// record keeps a write for the replicator.
func (d *DB) record(query string, args []any) error {
	if d.replicator == nil {
		return nil
	}
	st := statement{Query: query}
	for _, v := range args {
		a, err := encodeArg(v)
		if err != nil {
			return err
		}
		st.Args = append(st.Args, a)
	}
	d.recorded = append(d.recorded, st)
	return nil
}

// mark is where a savepoint began in the recorded writes.
func (d *DB) mark() int { return len(d.recorded) }

// undo forgets the writes recorded since m (a rolled-back savepoint).
func (d *DB) undo(m int) {
	if m < len(d.recorded) {
		clear(d.recorded[m:])
		d.recorded = d.recorded[:m]
	}
}

// replicate hands the recorded writes to the replicator as the next commit
// and records its number in the open transaction.
func (d *DB) replicate() error {
	if d.replicator == nil || len(d.recorded) == 0 {
		return nil
	}
	commit, err := json.Marshal(d.recorded)
	if err != nil {
		return err
	}
	seq, err := appliedSeq(d.tx)
	if err != nil {
		return err
	}
	if err := setAppliedSeq(d.tx, seq+1); err != nil {
		return err
	}
	if err := d.replicator.Replicate(seq+1, commit); err != nil {
		return fmt.Errorf("replicating commit %d: %w", seq+1, err)
	}
	return nil
}

// AppliedSeq is the number of the last replicated commit the database
// holds; 0 for none.
func (d *DB) AppliedSeq() (uint64, error) {
	tx, err := d.txn()
	if err != nil {
		return 0, err
	}
	return appliedSeq(tx)
}

// Apply replays commit seq, recorded by another host's DB, and commits it.
// Commits must be applied in order.
func (d *DB) Apply(seq uint64, commit []byte) error {
	var sts []statement
	if err := json.Unmarshal(commit, &sts); err != nil {
		return fmt.Errorf("commit %d: %w", seq, err)
	}
	if d.dirty {
		return errors.New("apply: the database has writes of its own pending")
	}
	tx, err := d.txn()
	if err != nil {
		return err
	}
	have, err := appliedSeq(tx)
	if err != nil {
		return err
	}
	if have+1 != seq {
		return fmt.Errorf("apply: commit %d follows %d, but the database holds %d", seq, seq-1, have)
	}
	for _, st := range sts {
		args := make([]any, len(st.Args))
		for i, a := range st.Args {
			args[i] = a.value()
		}
		if _, err := tx.Exec(st.Query, args...); err != nil {
			d.rollback()
			return fmt.Errorf("commit %d: %w", seq, err)
		}
	}
	if err := setAppliedSeq(tx, seq); err != nil {
		d.rollback()
		return err
	}
	return d.commitTx(true)
}

// rollback abandons the open transaction and what was recorded in it.
func (d *DB) rollback() {
	if d.tx != nil {
		d.tx.Rollback()
	}
	d.txDone()
	d.dirty = false
	d.undo(0)
}

func appliedSeq(tx *sql.Tx) (uint64, error) {
	var seq uint64
	err := tx.QueryRow("SELECT seq FROM _wharf_replica WHERE id = 1").Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

func setAppliedSeq(tx *sql.Tx, seq uint64) error {
	_, err := tx.Exec("INSERT INTO _wharf_replica (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq", seq)
	return err
}

// SnapshotTo writes a consistent copy of the database to path (which must
// not exist) and returns the replicated commit it holds. Writes must have
// been flushed.
func (d *DB) SnapshotTo(path string) (uint64, error) {
	if d.tx != nil {
		return 0, errors.New("snapshot: a transaction is open")
	}
	if err := d.connect(); err != nil {
		return 0, err
	}
	var seq uint64
	err := d.db.QueryRow("SELECT seq FROM _wharf_replica WHERE id = 1").Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	if _, err := d.db.Exec("VACUUM INTO ?", path); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	return seq, nil
}
