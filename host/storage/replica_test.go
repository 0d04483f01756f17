package storage

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memLog is a Replicator keeping commits in memory, refusing while fail is
// set.
type memLog struct {
	commits [][]byte
	fail    error
}

func (l *memLog) Replicate(seq uint64, commit []byte) error {
	if l.fail != nil {
		return l.fail
	}
	if seq != uint64(len(l.commits))+1 {
		return errors.New("out of order")
	}
	l.commits = append(l.commits, commit)
	return nil
}

// replay applies every commit of l to a new database.
func replay(t *testing.T, l *memLog) *DB {
	t.Helper()
	d, _ := open(t)
	for i, c := range l.commits {
		require.NoError(t, d.Apply(uint64(i+1), c))
	}
	return d
}

func dump(t *testing.T, d *DB) (kv []string, rows [][]any, alarm time.Time) {
	t.Helper()
	ps, err := d.List(ListOptions{})
	require.NoError(t, err)
	for _, p := range ps {
		kv = append(kv, string(p.Key)+"="+string(p.Value))
	}
	res, err := d.Exec("SELECT n, f, s, b, z FROM t ORDER BY n")
	require.NoError(t, err)
	at, _, err := d.Alarm()
	require.NoError(t, err)
	require.NoError(t, d.Flush())
	return kv, res.Rows, at
}

func TestReplayedCommitsRebuildTheDatabase(t *testing.T) {
	d, _ := open(t)
	log := &memLog{}
	d.SetReplicator(log)

	event := func(failed bool, f func()) {
		d.BeginEvent()
		f()
		require.NoError(t, d.EndEvent(failed))
	}
	event(false, func() {
		require.NoError(t, d.Put([]byte("a"), []byte("1")))
		require.NoError(t, d.Put([]byte("empty"), nil))
		_, err := d.Exec("CREATE TABLE t (n INTEGER, f REAL, s TEXT, b BLOB, z)")
		require.NoError(t, err)
		_, err = d.Exec("INSERT INTO t VALUES (?, ?, ?, ?, ?)", int64(1), 1.5, "x", []byte{0, 1}, nil)
		require.NoError(t, err)
	})
	event(true, func() { // failed: its writes are not replicated
		require.NoError(t, d.Put([]byte("lost"), []byte("x")))
	})
	event(false, func() {
		require.NoError(t, d.BeginTransaction())
		require.NoError(t, d.Put([]byte("rolled-back"), []byte("x")))
		require.NoError(t, d.EndTransaction(false))
		require.NoError(t, d.BeginTransaction())
		require.NoError(t, d.Put([]byte("b"), []byte("2")))
		require.NoError(t, d.EndTransaction(true))
		require.NoError(t, d.SetAlarm(time.UnixMilli(1234567)))
	})
	require.NoError(t, d.Flush())
	event(false, func() {
		_, err := d.Delete([]byte("a"))
		require.NoError(t, err)
		_, err = d.Exec("INSERT INTO t VALUES (?, ?, ?, ?, ?)", int64(2), 2.0, "2", []byte("2"), int64(7))
		require.NoError(t, err)
	})
	require.NoError(t, d.Flush())
	require.Len(t, log.commits, 2, "one commit per Flush")

	seq, err := d.AppliedSeq()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)

	r := replay(t, log)
	wantKV, wantRows, wantAlarm := dump(t, d)
	gotKV, gotRows, gotAlarm := dump(t, r)
	assert.Equal(t, []string{"b=2", "empty="}, wantKV)
	assert.Equal(t, wantKV, gotKV)
	assert.Equal(t, wantRows, gotRows, "types survive: 2.0 stays a float, \"2\" text, blobs blobs")
	assert.Equal(t, wantAlarm, gotAlarm)
	seq, err = r.AppliedSeq()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), seq)
	require.NoError(t, r.Flush())

	// Commits apply in order only.
	assert.ErrorContains(t, r.Apply(4, log.commits[1]), "commit 4 follows 3, but the database holds 2")
}

func TestRefusedReplicationUndoesTheCommit(t *testing.T) {
	d, _ := open(t)
	log := &memLog{}
	d.SetReplicator(log)
	require.NoError(t, d.Put([]byte("kept"), []byte("1")))
	require.NoError(t, d.Flush())

	log.fail = errors.New("fenced")
	require.NoError(t, d.Put([]byte("refused"), []byte("1")))
	assert.ErrorContains(t, d.Flush(), "replicating commit 2: fenced")
	_, ok, err := d.Get([]byte("refused"))
	require.NoError(t, err)
	assert.False(t, ok, "a write that was not replicated is not committed")
	seq, err := d.AppliedSeq()
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq)

	log.fail = nil
	require.NoError(t, d.Put([]byte("later"), []byte("1")))
	require.NoError(t, d.Flush())
	r := replay(t, log)
	ps, err := r.List(ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"kept", "later"}, keys(ps))
}
