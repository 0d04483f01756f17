package storage

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewDatabaseIsSyncedBeforeItsFirstCommit: a new object's file is a
// copy of the empty database, synced with its first commit (not before,
// not for events that never touched storage), and it holds what was
// committed after reopening.
func TestNewDatabaseIsSyncedBeforeItsFirstCommit(t *testing.T) {
	d, path := open(t)
	assert.True(t, d.unsynced, "a created database starts unsynced")
	d.BeginEvent()
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
	assert.True(t, d.unsynced, "an event without statements synced the file")

	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
	assert.False(t, d.unsynced)
	require.NoError(t, d.Close())

	d2, err := openNow(path)
	require.NoError(t, err)
	defer d2.Close()
	assert.False(t, d2.unsynced, "an existing database was taken for a new one")
	v, ok, err := d2.Get([]byte("k"))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "v", string(v))
}

// TestStaleWALOfAMissingDatabaseIsNotReplayed: a WAL left beside a
// database file that is gone (a crash while storage was being replaced)
// is not replayed into the new, empty database.
func TestStaleWALOfAMissingDatabaseIsNotReplayed(t *testing.T) {
	d, path := open(t)
	require.NoError(t, d.Put([]byte("old"), []byte("v")))
	require.NoError(t, d.Flush())
	wal, err := os.ReadFile(path + "-wal") // the commit, not yet checkpointed
	require.NoError(t, err)
	require.NotEmpty(t, wal)
	require.NoError(t, d.Close())
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.WriteFile(path+"-wal", wal, 0o644))

	d2, err := openNow(path)
	require.NoError(t, err)
	defer d2.Close()
	_, ok, err := d2.Get([]byte("old"))
	require.NoError(t, err)
	assert.False(t, ok, "the stale WAL was replayed into the new database")
}
