package host

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLockDataDirDoesNotFollowASymlinkedPidFile: a symlink planted at the
// data directory's wharf.lock, pointing at a file of someone else's, is
// replaced by wharf's own pid file; the file it pointed at is left as it
// was. wharf images prune on such a directory overwrote that file with
// its pid.
func TestLockDataDirDoesNotFollowASymlinkedPidFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(data, 0o755))
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious\n"), 0o600))
	require.NoError(t, os.Symlink(victim, filepath.Join(data, dataDirPidFile)))

	lock, err := LockDataDirWithoutContainerd(data)
	require.NoError(t, err)
	defer lock.Unlock()

	got, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "precious\n", string(got), "the symlink's target is not written")
	fi, err := os.Lstat(filepath.Join(data, dataDirPidFile))
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular(), "wharf.lock is wharf's own file now, not the symlink: %v", fi.Mode())
	owner := DataDirOwner(lock.Path)
	assert.Equal(t, os.Getpid(), owner.Pid)
	assert.True(t, owner.NoContainerd)
	raw, err := os.ReadFile(filepath.Join(data, dataDirPidFile))
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+" no-containerd\n", string(raw))
	left, err := filepath.Glob(filepath.Join(data, ".writing-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file is left")
}

// TestDataDirOwnerDoesNotFollowASymlink: DataDirOwner reads only a
// regular file an owner wrote, not what a symlink at wharf.lock points at.
func TestDataDirOwnerDoesNotFollowASymlink(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(other, []byte("1 no-containerd\n"), 0o600))
	require.NoError(t, os.Symlink(other, filepath.Join(dir, dataDirPidFile)))
	assert.Equal(t, DataDirOwnerInfo{}, DataDirOwner(dir))
}

// TestLockDataDirSaysWhenItsPidFileIsADirectory: a directory at
// wharf.lock (a mistaken mkdir) stops the start with an error that names
// it and says what it is; since the pid file is renamed into place, the
// error spoke of a temporary file, "rename <dir>/.writing-4287106573
// <dir>/wharf.lock: file exists".
func TestLockDataDirSaysWhenItsPidFileIsADirectory(t *testing.T) {
	data := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(data, dataDirPidFile), 0o755))
	_, err := LockDataDirWithoutContainerd(data)
	require.EqualError(t, err, "data directory: "+filepath.Join(data, dataDirPidFile)+" is a directory, not wharf's pid file: remove it")
	left, err := filepath.Glob(filepath.Join(data, ".writing-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file is left")
	lock, err := LockDataDirWithoutContainerd(data)
	require.Error(t, err)
	assert.Nil(t, lock)
}
