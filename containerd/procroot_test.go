package containerd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestOpenRootOfRefusesAReapedProcess: the root of /proc/PID/root is not
// used once the process of pidfd was reaped, for PID may be another
// process's by then (here /proc/self/root, a root that opens, stands for
// that other process's). A live process's root opens.
func TestOpenRootOfRefusesAReapedProcess(t *testing.T) {
	live := sleeper(t)
	liveFd, err := unix.PidfdOpen(live.Process.Pid, 0)
	require.NoError(t, err)
	defer unix.Close(liveFd)
	root, err := openRootOf(liveFd, fmt.Sprintf("/proc/%d/root", live.Process.Pid))
	require.NoError(t, err, "a live process's root")
	unix.Close(root)

	gone := exec.Command("true")
	require.NoError(t, gone.Start())
	goneFd, err := unix.PidfdOpen(gone.Process.Pid, 0)
	require.NoError(t, err)
	defer unix.Close(goneFd)
	require.NoError(t, gone.Wait()) // reaped: its pid may be reused
	root, err = openRootOf(goneFd, "/proc/self/root")
	if err == nil {
		unix.Close(root)
	}
	assert.ErrorIs(t, err, syscall.ESRCH, "the root of a pid whose process was reaped")
}

// pidTask is a task whose main process is pid.
type pidTask struct {
	client.Task
	pid uint32
}

func (t pidTask) Pid() uint32 { return t.pid }

// TestRefusedInPathNotAfterTheExit: a command found only as a file that
// may not be run is refused (126) while the main process runs; once its
// exit was told, its pid may be another process's, whose files are not
// searched.
func TestRefusedInPathNotAfterTheExit(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o644))
	env := []string{"PATH=" + dir}
	// This test process stands for the main process: its root is the
	// host's, where dir is.
	c := &Container{task: pidTask{pid: uint32(os.Getpid())}, exited: make(chan struct{})}
	assert.ErrorIs(t, c.refusedInPath("prog", env, "/"), os.ErrPermission, "the main process runs")
	close(c.exited)
	assert.NoError(t, c.refusedInPath("prog", env, "/"), "the main process exited")
}
