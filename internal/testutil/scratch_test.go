package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScratchOfAnEndedProcessIsSweptAndOwnIsRemovedAtTheEnd(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	dead := filepath.Join(os.TempDir(), scratchName(ended.Process.Pid)+"bin-1")
	require.NoError(t, os.MkdirAll(filepath.Join(dead, "sub"), 0o755))
	t.Cleanup(func() { os.RemoveAll(dead) })

	own, err := ScratchDir("test")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(own, "f"), []byte("x"), 0o644))
	sweepScratch()
	assert.NoDirExists(t, dead, "the ended process's scratch is swept")
	assert.FileExists(t, filepath.Join(own, "f"), "a live process's scratch is kept")

	RemoveScratch()
	assert.NoDirExists(t, own)
}

func TestRemoveScratchOfAnEndedChild(t *testing.T) {
	child := exec.Command("true")
	require.NoError(t, child.Run())
	pid := child.Process.Pid
	mine := filepath.Join(os.TempDir(), scratchName(pid)+"bin-1")
	other := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d0-bin-1", scratchPrefix, pid))
	for _, dir := range []string{mine, other} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	RemoveScratchOf(pid)
	assert.NoDirExists(t, mine)
	assert.DirExists(t, other, "another pid that begins with the same digits is not the child's")
}
