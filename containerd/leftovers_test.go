package containerd

import (
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sleeper starts a child process that sleeps until the test ends.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	sleep := exec.Command("sleep", "60")
	require.NoError(t, sleep.Start())
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	return sleep
}

// TestKillAndWaitTakesAZombieAsGone: killAndWait returns as soon as the
// process is dead, though its parent has not reaped it yet (a shim whose
// wharf died waits for init, which may reap only every few seconds).
func TestKillAndWaitTakesAZombieAsGone(t *testing.T) {
	sleep := sleeper(t)
	pid := sleep.Process.Pid
	assert.False(t, exited(pid), "a running process")

	start := time.Now()
	require.NoError(t, killAndWait(pid)) // this test, its parent, does not reap it
	assert.Less(t, time.Since(start), time.Second)
	assert.True(t, exited(pid), "a zombie")
	require.Error(t, sleep.Wait(), "killed")
	assert.True(t, exited(pid), "reaped")
}
