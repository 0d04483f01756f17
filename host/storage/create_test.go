package storage

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewDatabaseIsSyncedWhenOpened: a new object's file is a copy of the
// empty database, synced as it is opened, before SQLite holds its lock
// (see connect), and it holds what was committed after reopening.
func TestNewDatabaseIsSyncedWhenOpened(t *testing.T) {
	d, path := open(t)
	assert.False(t, d.unsynced, "the created database was synced as it opened")
	d.BeginEvent()
	require.NoError(t, d.Put([]byte("k"), []byte("v")))
	require.NoError(t, d.EndEvent(false))
	require.NoError(t, d.Flush())
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
