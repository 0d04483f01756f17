package execpath

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFindAsAShellDoes: the first executable file wins, even after one
// that may not be run; a command found only as files that may not be run
// is refused with permission denied, naming the first; a directory or a
// missing command is not found.
func TestFindAsAShellDoes(t *testing.T) {
	first, second, third := t.TempDir(), t.TempDir(), t.TempDir()
	write := func(dir, name string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode))
	}
	write(first, "both", 0o644)
	write(second, "both", 0o755)
	write(first, "refused", 0o644)
	write(second, "refused", 0o600)
	require.NoError(t, os.Mkdir(filepath.Join(first, "dir"), 0o755))
	path := first + ":" + second + ":" + third

	found, err := Find("both", path, "", os.Stat)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(second, "both"), found)

	_, err = Find("refused", path, "", os.Stat)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.EqualError(t, err, "exec "+filepath.Join(first, "refused")+": permission denied")

	for _, name := range []string{"dir", "missing"} {
		_, err = Find(name, path, "", os.Stat)
		assert.ErrorIs(t, err, ErrNotFound, name)
		assert.EqualError(t, err, "executable file not found: "+name+" in $PATH")
	}

	found, err = Find("./refused", path, "", os.Stat)
	require.NoError(t, err)
	assert.Equal(t, "./refused", found, "a name with a slash is not searched")
}

// TestFromEnv: the environment's last PATH, or the default without one.
func TestFromEnv(t *testing.T) {
	assert.Equal(t, DefaultPath, FromEnv([]string{"HOME=/root"}))
	assert.Equal(t, "/b", FromEnv([]string{"PATH=/a", "HOME=/root", "PATH=/b"}))
}

// TestFindTakesRelativeDirectoriesFromTheWorkingDirectory: ".", an empty
// entry and "sub" are directories of the working directory of the process
// to run, not of the process that searches, whose own directory holds
// what would answer otherwise.
func TestFindTakesRelativeDirectoriesFromTheWorkingDirectory(t *testing.T) {
	work, own := t.TempDir(), t.TempDir()
	t.Chdir(own)
	write := func(dir, name string, mode os.FileMode) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode))
	}
	write(work, "refused", 0o644)
	write(own, "refused", 0o755)
	write(own, "elsewhere", 0o644)
	require.NoError(t, os.Mkdir(filepath.Join(work, "sub"), 0o755))
	write(filepath.Join(work, "sub"), "run", 0o755)

	for _, path := range []string{".", "/nonexistent::/nonexistent"} {
		_, err := Find("refused", path, work, os.Stat)
		assert.EqualError(t, err, "exec "+filepath.Join(work, "refused")+": permission denied", path)
		_, err = Find("elsewhere", path, work, os.Stat)
		assert.ErrorIs(t, err, ErrNotFound, path)
	}
	found, err := Find("run", "sub", work, os.Stat)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(work, "sub", "run"), found)
}
