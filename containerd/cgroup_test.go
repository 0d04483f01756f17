package containerd

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRemoveCgroupTreeKeepsOnlyWhatHoldsAProcess: removeCgroupTree removes
// a tree of empty cgroups in every hierarchy, deepest first, and keeps a
// cgroup holding a process and those above it, without waiting (an EBUSY
// is waited out only for an empty cgroup). Needs root.
func TestRemoveCgroupTreeKeepsOnlyWhatHoldsAProcess(t *testing.T) {
	top := "/" + Namespace + "/" + cgroupTag(t.TempDir()) + "-build"
	busy := filepath.Join(top, "buildkit", "busy")
	for _, path := range []string{filepath.Join(top, "buildkit", "empty"), busy} {
		for _, dir := range cgroupDirs(path) {
			require.NoError(t, os.MkdirAll(dir, 0o755))
		}
	}
	t.Cleanup(func() {
		for _, dir := range cgroupDirs(top) {
			os.Remove(filepath.Join(dir, "buildkit", "busy"))
			os.Remove(filepath.Join(dir, "buildkit"))
			os.Remove(dir)
		}
	})
	sleep := sleeper(t)
	held := cgroupDirs(busy)[0]
	require.NoError(t, os.WriteFile(filepath.Join(held, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0o644))

	start := time.Now()
	require.NoError(t, removeCgroupTree(top))
	assert.Less(t, time.Since(start), busyWait, "no wait for a cgroup in use")
	for _, dir := range cgroupDirs(top) {
		_, err := os.Stat(filepath.Join(dir, "buildkit", "empty"))
		assert.ErrorIs(t, err, os.ErrNotExist, "an empty cgroup is removed: %s", dir)
		_, err = os.Stat(dir)
		if filepath.Dir(filepath.Dir(held)) == dir {
			assert.NoError(t, err, "above a process: kept")
		} else {
			assert.ErrorIs(t, err, os.ErrNotExist, "a tree without processes is removed: %s", dir)
		}
	}

	require.NoError(t, sleep.Process.Kill())
	sleep.Wait()
	require.NoError(t, removeCgroupTree(top))
	for _, dir := range cgroupDirs(top) {
		_, err := os.Stat(dir)
		assert.ErrorIs(t, err, os.ErrNotExist, "once the process exited: %s", dir)
	}
}

// TestProcessCgroupOfAProcessGoneIsNotExist: the cgroup of a process that
// exits and is reaped as it is read is fs.ErrNotExist, as that of one gone
// before. Read in the moment of its reaping, its file said ESRCH ("no such
// process"), which a signal to a container whose main process was ending
// returned to the object (TestSignalAsTheContainerExits failed so).
func TestProcessCgroupOfAProcessGoneIsNotExist(t *testing.T) {
	for range 50 {
		cmd := exec.Command("/bin/true")
		require.NoError(t, cmd.Start())
		reaped := make(chan error, 1)
		go func() { reaped <- cmd.Wait() }()
		var err error
		for err == nil {
			_, _, err = processCgroup(cmd.Process.Pid, "pids")
		}
		require.NoError(t, <-reaped)
		require.ErrorIs(t, err, fs.ErrNotExist)
	}
}
