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

// TestStackLimitOfAnotherUsersProcess: the stack limit of a process of
// another user (a main process not root) is read, though prlimit(2) on it
// needs CAP_SYS_RESOURCE, which wharf may not have.
func TestStackLimitOfAnotherUsersProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	require.NoError(t, cmd.Start())
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var own unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_STACK, &own))
	limit, err := stackLimit(uint32(cmd.Process.Pid))
	require.NoError(t, err)
	assert.Equal(t, own.Cur, limit, "inherited from this process")
}
