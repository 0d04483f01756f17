package testutil

import (
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

// TestScratchInUseIsKept: the data directory of a test killed with SIGKILL
// may be in its scratch, with its containers' shims working in it.
// Removing it would leave those for good: containerd.ReclaimEnded needs it
// to remove them, and holds its lock while it does.
func TestScratchInUseIsKept(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	dead := filepath.Join(os.TempDir(), scratchName(ended.Process.Pid)+"data-1")
	bundle := filepath.Join(dead, "bundle")
	require.NoError(t, os.MkdirAll(bundle, 0o755))
	t.Cleanup(func() { os.RemoveAll(dead) })
	shim := exec.Command("sleep", "60")
	shim.Dir = bundle
	require.NoError(t, shim.Start())
	t.Cleanup(func() {
		shim.Process.Kill()
		shim.Wait()
	})

	sweepScratch()
	assert.DirExists(t, bundle, "a process works in it")

	shim.Process.Kill()
	shim.Wait()
	release := LockDir(t, dead)
	sweepScratch()
	assert.DirExists(t, bundle, "it is locked: another process reclaims it")
	release()

	sweepScratch()
	assert.NoDirExists(t, dead, "swept once nothing uses it")
}
