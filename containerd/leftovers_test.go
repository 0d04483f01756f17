package containerd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"

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

// TestRemoveBundleWhileContainerdRemovesIt: recovery kills a shim left
// without its container (a destroy cut short in its task's deletion), and
// the containerd that had loaded that shim then cleans up after it (its
// Bundle.Delete: unmount and remove the rootfs, rename the bundle to a
// hidden name and remove that) while recovery removes the same bundle. A
// rootfs removed between mount.UnmountAll's look at it and its unmount
// failed with a bare ENOENT, and wharf refused to start with "recovering
// containers: no such file or directory". The race is narrow: it is run
// often enough to be met many times over.
func TestRemoveBundleWhileContainerdRemovesIt(t *testing.T) {
	dir := t.TempDir()
	for i := range 2000 {
		bundle := filepath.Join(dir, strconv.Itoa(i))
		rootfs := filepath.Join(bundle, "rootfs")
		require.NoError(t, os.MkdirAll(rootfs, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), nil, 0o600))
		containerd := make(chan struct{})
		go func() {
			defer close(containerd)
			mount.UnmountAll(rootfs, 0)
			os.Remove(rootfs)
			hidden := filepath.Join(dir, "."+filepath.Base(bundle))
			if os.Rename(bundle, hidden) == nil {
				os.RemoveAll(hidden)
			}
		}()
		err := removeBundle(bundle)
		<-containerd
		require.NoError(t, err, "removal %d", i)
		require.NoDirExists(t, bundle)
	}
}
