package containerd

import (
	"context"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

// testManager opens a backend with its own containerd on a new data
// directory, with busybox imported, and checks at cleanup that the manager
// closed cleanly and nothing is left.
func testManager(t *testing.T) (*Manager, string) {
	t.Helper()
	return testManagerWith(t, ManagerOptions{})
}

// testManagerWith is testManager with options o (logs discarded unless
// o.Logger is set).
func testManagerWith(t *testing.T, o ManagerOptions) (*Manager, string) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	b, err := OpenBackend(context.Background(), t.TempDir(), "", logger)
	require.NoError(t, err)
	archivePath, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	imgs, err := ImportArchive(context.Background(), b.Client, archivePath, "")
	require.NoError(t, err)
	if o.Logger == nil {
		o.Logger = logger
	}
	m, err := NewManager(b, o)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, m.Close(context.Background()))
		left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
		assert.NoError(t, err)
		assert.Empty(t, left, "the test left things behind")
		b.Close()
	})
	return m, imgs[0].Name
}

func openPolicy() *egresspolicy.Policy { p, _ := egresspolicy.New(false, nil, nil); return p }

// allocatedMB is how much of the host's disk a file really uses.
func allocatedMB(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(path, &st))
	return st.Blocks * 512 >> 20
}

func TestDiskQuotaCapsWritableLayerAndPersistentDirs(t *testing.T) {
	m, image := testManager(t)
	persistImage := filepath.Join(m.b.DataDir, "objects", "Sandbox", "persist", "obj", "disk.img")
	spec := ContainerSpec{Image: image, DiskMB: 10,
		Persistent: PersistentDirs{Paths: []string{"/data"}, Image: persistImage, SizeMB: 8},
		Entrypoint: []string{"sleep", "3600"}}
	mc, err := m.Start(context.Background(), "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)

	code, _, errOut := execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/big", "bs=1M", "count=60"}})
	assert.NotZero(t, code, "a write beyond disk_mb fails")
	assert.Contains(t, errOut, "No space left on device")
	// The agent's socket directory, writable by the container's root, is
	// on the same disk: no way around disk_mb onto the host's disk.
	code, _, errOut = execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/.wharf/big", "bs=1M", "count=60"}})
	assert.NotZero(t, code, "a write beyond disk_mb in /.wharf fails")
	assert.Contains(t, errOut, "No space left on device")
	code, _, _ = execOut(t, mc.Container, ExecSpec{Args: []string{"rm", "/.wharf/big"}})
	require.Zero(t, code)
	code, _, errOut = execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/data/big", "bs=1M", "count=60"}})
	assert.NotZero(t, code, "a write beyond persistent_mb fails")
	assert.Contains(t, errOut, "No space left on device")
	assert.LessOrEqual(t, allocatedMB(t, m.writableDisk(mc.ID()).image), int64(11), "the host gives the container no more than disk_mb")
	assert.LessOrEqual(t, allocatedMB(t, persistImage), int64(9))

	// Persistent directories survive the container; its writable layer does not.
	code, _, _ = execOut(t, mc.Container, ExecSpec{Args: []string{"sh", "-c", "rm /data/big /big; echo kept > /data/f; echo gone > /f"}})
	require.Zero(t, code)
	require.NoError(t, m.Destroy(context.Background(), "Sandbox", "obj"))
	assert.Empty(t, MountsUnder(m.b.DataDir), "destroy unmounts the disks")
	assert.Empty(t, loopDevicesOf(m.b.DataDir), "and frees their loop devices")
	mc, err = m.Start(context.Background(), "Sandbox", "obj", spec, openPolicy(), 0)
	require.NoError(t, err)
	_, out, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"sh", "-c", "cat /data/f; cat /f 2>&1"}})
	assert.Equal(t, "kept\ncat: can't open '/f': No such file or directory\n", out)
	// The host keeps serving: another container starts and writes.
	other, err := m.Start(context.Background(), "Sandbox", "other", ContainerSpec{Image: image, DiskMB: 10,
		Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	code, _, _ = execOut(t, other.Container, ExecSpec{Args: []string{"sh", "-c", "echo fine > /f"}})
	assert.Zero(t, code)
}

// TestPersistentDiskGrowsAndNeverShrinks: a larger persistent_mb grows an
// object's existing disk at its next start, keeping what is on it; a
// smaller one keeps the disk as it is and says so.
func TestPersistentDiskGrowsAndNeverShrinks(t *testing.T) {
	var logs testutil.LogBuffer
	m, image := testManagerWith(t, ManagerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	persistImage := filepath.Join(m.b.DataDir, "objects", "Sandbox", "persist", "obj", "disk.img")
	start := func(sizeMB int) *Managed {
		t.Helper()
		mc, err := m.Start(context.Background(), "Sandbox", "obj", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"},
			Persistent: PersistentDirs{Paths: []string{"/data"}, Image: persistImage, SizeMB: sizeMB}}, openPolicy(), 0)
		require.NoError(t, err)
		return mc
	}
	mc := start(8)
	code, _, errOut := execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/urandom", "of=/data/a", "bs=1M", "count=5"}})
	require.Zero(t, code, errOut)
	_, sum, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"md5sum", "/data/a"}})
	code, _, _ = execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/data/b", "bs=1M", "count=12"}})
	assert.NotZero(t, code, "12 MB more do not fit in 8")
	require.NoError(t, m.Destroy(context.Background(), "Sandbox", "obj"))

	mc = start(24)
	assert.Contains(t, logs.String(), `msg="container:Sandbox#obj persistent disk grown" image=`+persistImage+" from_mb=8 to_mb=24")
	_, again, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"md5sum", "/data/a"}})
	assert.Equal(t, sum, again, "the data is kept")
	code, _, errOut = execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/data/b", "bs=1M", "count=12"}})
	assert.Zero(t, code, "the grown disk takes 12 MB more: %s", errOut)
	code, _, errOut = execOut(t, mc.Container, ExecSpec{Args: []string{"dd", "if=/dev/zero", "of=/data/c", "bs=1M", "count=20"}})
	assert.NotZero(t, code, "and is capped at its new size")
	assert.Contains(t, errOut, "No space left on device")
	require.NoError(t, m.Destroy(context.Background(), "Sandbox", "obj"))
	assert.Equal(t, int64(24<<20), fileSize(t, persistImage))

	mc = start(10)
	assert.Contains(t, logs.String(), `level=WARN msg="container:Sandbox#obj persistent disk kept" image=`+persistImage+
		` size_mb=24 persistent_mb=10 reason="persistent_mb is smaller than the object's disk, which is never shrunk: delete the object's storage to start a smaller one"`)
	_, again, _ = execOut(t, mc.Container, ExecSpec{Args: []string{"md5sum", "/data/a"}})
	assert.Equal(t, sum, again, "nothing is lost")
	assert.Equal(t, int64(24<<20), fileSize(t, persistImage))
}
