package containerd

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// containerd needs root for its mounts and cgroups; say so clearly.
		println("containerd tests need root: run them as root (CI does)")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// startDaemon runs a private containerd for the test and checks at cleanup
// that it is gone.
func startDaemon(t *testing.T) *Daemon {
	t.Helper()
	d, err := StartDaemon(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, d.Stop())
		pid := d.cmd.Process.Pid
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "containerd (pid %d) is still running", pid)
	})
	return d
}

func TestDaemonStartsAnswersAndStops(t *testing.T) {
	d := startDaemon(t)
	c, err := Connect(context.Background(), d.Address)
	require.NoError(t, err)
	defer c.Close()
	v, err := c.Version(context.Background())
	require.NoError(t, err)
	assert.NotEmpty(t, v.Version)
	t.Logf("containerd %s at %s", v.Version, d.Address)
}

func TestMissingBinaryNamesPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartDaemon(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrMissingBinary)
	assert.Contains(t, err.Error(), `containerd is not on PATH; install the Debian package "containerd"`)
}

func TestImportListRemoveImage(t *testing.T) {
	d := startDaemon(t)
	c, err := Connect(context.Background(), d.Address)
	require.NoError(t, err)
	defer c.Close()
	archivePath, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imported, err := ImportArchive(ctx, c, archivePath, "")
	require.NoError(t, err)
	require.Len(t, imported, 1)
	assert.Contains(t, imported[0].Name, "wharf.test/busybox:latest")
	assert.Greater(t, imported[0].Size, int64(500_000), "busybox is in the layer")

	list, err := ListImages(ctx, c)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, imported[0].Digest, list[0].Digest)

	require.NoError(t, RemoveImage(ctx, c, list[0].Name))
	list, err = ListImages(ctx, c)
	require.NoError(t, err)
	assert.Empty(t, list)
	err = RemoveImage(ctx, c, "wharf.test/nope:1")
	assert.ErrorContains(t, err, "removing image wharf.test/nope:1")

	_, err = ImportArchive(ctx, c, "/nonexistent.tar", "")
	assert.ErrorContains(t, err, "/nonexistent.tar")
}

func TestSocketPathStaysShort(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", 120)
	p := socketPath(long)
	assert.Less(t, len(p), 100)
	assert.Equal(t, p, socketPath(long), "stable for the same data dir")
	assert.Equal(t, "/x/containerd.sock", socketPath("/x"))
}
