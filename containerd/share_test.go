package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestStopWaitsForShares: the embedded containerd of a data directory,
// shared by a command of another wharf (wharf images while wharf serve,
// or another wharf images, runs there), stops only once that command has
// released it: it went from under it, whose import then failed halfway
// ("error reading from server: EOF"). A command that asks for a share
// while the daemon stops waits, then learns that it stopped; once it has,
// and for a data directory without one, there is none to share.
func TestStopWaitsForShares(t *testing.T) {
	data := t.TempDir()
	d, err := StartDaemon(context.Background(), daemonDir(data), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	share, err := ShareEmbedded(data)
	require.NoError(t, err)
	assert.Equal(t, d.Address, share.Address)

	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("the daemon stopped under a share (%v)", err)
	case <-time.After(time.Second):
	}
	c, err := Connect(context.Background(), share.Address)
	require.NoError(t, err)
	_, err = c.Version(context.Background())
	assert.NoError(t, err, "the shared daemon still answers")
	c.Close()
	share.Release()
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon did not stop once its share was released")
	}
	_, err = ShareEmbedded(data)
	assert.ErrorIs(t, err, ErrNoEmbedded)
	_, err = ShareEmbedded(t.TempDir())
	assert.ErrorIs(t, err, ErrNoEmbedded, "a data directory whose owner runs no containerd of its own")

	// A share asked for while the owner stops its daemon (holding the
	// shares file, as Stop does) waits, and finds it stopped.
	d, err = StartDaemon(context.Background(), daemonDir(data), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	owner, err := os.Open(sharesFile(daemonDir(data)))
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(owner.Fd()), unix.LOCK_EX))
	asked := make(chan error, 1)
	go func() {
		s, err := ShareEmbedded(data)
		if err == nil {
			s.Release()
		}
		asked <- err
	}()
	// Only once the share waits for the lock does the owner stop: asked
	// after the socket is gone, it is rightly told there is no containerd.
	require.Eventually(t, func() bool { return flockWaited(t, sharesFile(daemonDir(data))) }, 10*time.Second, 5*time.Millisecond,
		"the share does not wait for the shares file's lock")
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool { return !isSocket(d.Address) }, 10*time.Second, 10*time.Millisecond)
	select {
	case err := <-asked:
		t.Fatalf("the share did not wait for the stopping owner: %v", err)
	default:
	}
	owner.Close()
	select {
	case err := <-asked:
		assert.ErrorIs(t, err, ErrEmbeddedStopped)
	case <-time.After(5 * time.Second):
		t.Fatal("the share still waits once the owner is done")
	}
	require.NoError(t, d.Stop())
}

// flockWaited reports whether a process waits for a flock of the file at
// path: /proc/locks lists a waiter as "N: -> FLOCK ..." with the file's
// device and inode.
func flockWaited(t *testing.T, path string) bool {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	inode := fmt.Sprintf(":%d ", st.Ino)
	locks, err := os.ReadFile("/proc/locks")
	require.NoError(t, err)
	for line := range strings.Lines(string(locks)) {
		if strings.Contains(line, "-> FLOCK") && strings.Contains(line, inode) {
			return true
		}
	}
	return false
}
