package ephemeral

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEndedOnlyForAMarkOfAProcessThatEnded(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	deadPid := strconv.Itoa(ended.Process.Pid)
	self := strconv.Itoa(os.Getpid())

	assert.True(t, Ended([]string{"PATH=/bin", Env + "=" + deadPid}))
	assert.False(t, Ended([]string{"PATH=/bin", Env + "=" + self}), "its process runs")
	assert.False(t, Ended([]string{"PATH=/bin"}), "not marked")
	assert.False(t, Ended([]string{Env + "=", Env + "x=" + deadPid}), "no pid")
	assert.False(t, Ended([]string{Env + "=-1"}))
}

func TestMarkIsInherited(t *testing.T) {
	t.Setenv(Env, "")
	Mark()
	assert.True(t, Marked())
	out, err := exec.Command("sh", "-c", "echo $"+Env).Output()
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(out))
}

func TestRegisteredDataDirsOfEndedProcesses(t *testing.T) {
	defer func(dir string) { registryDir = dir }(registryDir)
	registryDir = t.TempDir()
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	gone, kept, shared := t.TempDir()+"/gone", t.TempDir(), t.TempDir()

	t.Setenv(Env, strconv.Itoa(ended.Process.Pid))
	for _, dir := range []string{gone, kept, kept, shared} {
		require.NoError(t, Register(dir), "again is fine")
	}
	Mark()
	require.NoError(t, Register(shared))
	t.Setenv(Env, "")
	require.NoError(t, Register(t.TempDir()), "an unmarked process registers nothing")

	assert.Equal(t, []string{kept}, EndedDirs(), "not one that is gone, nor one a running process registered")
	assert.True(t, Registered(filepath.Dir(kept)))
	assert.False(t, Registered(gone), "forgotten: it is gone")
	Forget(kept)
	assert.Empty(t, EndedDirs())
	assert.False(t, Registered(kept))
	assert.True(t, Registered(shared))
	Unregister() // as this process ends: the ended one's registration alone is left
	assert.Equal(t, []string{shared}, EndedDirs())
}

func TestUnregisterDirForgetsOneDirOfThisProcess(t *testing.T) {
	defer func(dir string) { registryDir = dir }(registryDir)
	registryDir = t.TempDir()
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	own, other, shared := t.TempDir(), t.TempDir(), t.TempDir()

	t.Setenv(Env, strconv.Itoa(ended.Process.Pid))
	require.NoError(t, Register(shared))
	Mark()
	for _, dir := range []string{own, other, shared} {
		require.NoError(t, Register(dir))
	}
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, own)
	require.NoError(t, err)
	UnregisterDir(rel) // as wharftest names it: relative, maybe
	UnregisterDir(shared)
	assert.False(t, Registered(own))
	assert.True(t, Registered(other))
	assert.Equal(t, []string{shared}, EndedDirs(), "the ended process's registration stays")
}
