package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testutil"
)

// syncBuffer is a buffer a logger may write to from any goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAKilledWharfsTableGoesOnceItsDataDirIs: a wharf killed (SIGKILL)
// leaves its nft table for its data directory's next run to replace. Once
// that directory is removed, no next run comes, and the table stayed on
// the host for good: the next wharf of any data directory removes it (and
// the lock file that named the directory), and logs what it removed.
func TestAKilledWharfsTableGoesOnceItsDataDirIs(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_DEADSCOPE_CHILD_DATA"); data != "" {
		runAndWaitToBeKilled(t, data)
	}
	dead := t.TempDir()
	testutil.LockDir(t, dead) // no other test process reclaims it once its wharf is killed
	child := startWharfChild(t, "TestAKilledWharfsTableGoesOnceItsDataDirIs", "WHARF_TEST_DEADSCOPE_CHILD_DATA="+dead)
	tag := Scope(dead)
	table := egress.TableName(tag)
	t.Cleanup(func() { // if it stayed
		if len(egress.FirewallLeftovers(tag)) > 0 {
			assert.NoError(t, egress.RemoveFirewall(tag))
		}
	})
	require.Equal(t, []string{"nft table ip " + table}, egress.FirewallLeftovers(tag))
	// As its build steps' network, had it been killed while building.
	build := buildTag(runcRoot(daemonDir(dead)))
	require.NoError(t, egress.InstallBuildFirewall(build, BuildSubnet))
	t.Cleanup(func() {
		if len(egress.FirewallLeftovers(build)) > 0 {
			assert.NoError(t, egress.RemoveFirewall(build))
		}
	})
	lock := killHoldingItsLock(t, child, tag, dead)
	require.Equal(t, []string{"nft table ip " + table}, egress.FirewallLeftovers(tag), "the killed wharf's table stays")
	require.FileExists(t, scopeLockPath(tag))
	require.NoError(t, os.RemoveAll(dead))

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	b, err := OpenBackend(context.Background(), t.TempDir(), "", logger)
	require.NoError(t, err)
	defer b.Close()
	lock.Close()
	m, err := NewManager(b, ManagerOptions{Logger: logger})
	require.NoError(t, err)
	assert.NotEqual(t, tag, m.net.scope)
	assert.Empty(t, egress.FirewallLeftovers(tag), "the killed wharf's table is removed")
	assert.Empty(t, egress.FirewallLeftovers(build), "and its build steps' table")
	assert.NoFileExists(t, scopeLockPath(tag), "and its lock file")
	assert.Contains(t, logs.String(), `level=WARN msg="removed what a killed wharf whose data directory is gone left on this host" data_dir=`+dead+
		` pid=`+strconv.Itoa(child.Cmd.Process.Pid)+` scope=`+tag+` why="its data directory no longer exists" removed="nft table `+table+`, nft table `+egress.TableName(build)+`"`)
	require.NoError(t, m.Close(context.Background()))
	left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
	require.NoError(t, err)
	assert.Empty(t, left)
}

// TestAKilledCopysSweepLeavesTheOriginalsNetwork: a copy (cp -a) of the
// data directory of a wharf killed with its container running keeps the
// original's scope, and its wharf leaves the original's container, network
// and firewall to the original. Once the copy's wharf is killed too and
// the copy removed, the lock file it left names the copy, and the next
// claim of a scope on the host removed everything of the scope: the
// network namespace and link of the original's container, which still
// ran, and the nft table that keeps it from the host's services, although
// the original's data directory is there for its next run to adopt them.
// What a process that was not the copy's still runs in is left, with the
// table; the original's next run adopts its container, network and all.
func TestAKilledCopysSweepLeavesTheOriginalsNetwork(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_DEADCOPY_CHILD_DATA"); data != "" {
		runAndWaitToBeKilled(t, data)
	}
	data, logger, spec, started, tag, network := killedWithAContainer(t)

	copied := filepath.Join(t.TempDir(), "copy")
	out, err := exec.Command("cp", "-a", data, copied).CombinedOutput()
	require.NoError(t, err, "%s", out)
	testutil.LockDir(t, copied) // no other test process reclaims it once its wharf is killed
	child := startWharfChild(t, "TestAKilledCopysSweepLeavesTheOriginalsNetwork", "WHARF_TEST_DEADCOPY_CHILD_DATA="+copied)
	require.Equal(t, tag, Scope(copied), "the copy keeps the original's scope")
	lock := killHoldingItsLock(t, child, tag, copied)
	require.NoError(t, os.RemoveAll(copied))

	var logs syncBuffer
	b2, err := OpenBackend(context.Background(), t.TempDir(), "", slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer b2.Close()
	lock.Close()
	m2, err := NewManager(b2, ManagerOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.NoError(t, m2.Close(context.Background()))
	t.Logf("logged: %s", logs.String())
	assert.Equal(t, network, networkNamesOf(tag), "the original's container keeps its network")
	assert.NotEmpty(t, egress.FirewallLeftovers(tag), "and the firewall that keeps it from the host")
	assert.False(t, exited(int(started.Pid())), "its process runs")

	b3, m3 := nextRun(t, data, logger)
	adopted, removed, err := m3.Recover(context.Background(), offlinePolicy)
	require.NoError(t, err)
	assert.Equal(t, 1, adopted)
	assert.Equal(t, 0, removed)
	mc, ok := m3.Get("Sandbox", "obj1")
	require.True(t, ok)
	assert.Equal(t, "1\n", eth0Addresses(t, mc.Container), "with its network")
	require.NoError(t, m3.Close(context.Background()))
	require.NoError(t, RemoveImage(context.Background(), b3.Client, spec.Image, false))
}

// BenchmarkSweepOfStaleLockFiles measures a claim of a scope that sweeps
// 100 lock files killed wharfs left whose data directories are gone,
// against a claim that sweeps none, alternately in the same run. Each
// such file had its claim read every process's command line five times
// and every process's open files once, under scopes: 100 of them (a CI
// host whose test wharfs are killed) held a wharf's start 5.4 s here. A
// sweep now reads them once (about 0.2 s).
func BenchmarkSweepOfStaleLockFiles(b *testing.B) {
	require.NoError(b, os.MkdirAll(scopeLockDir, 0o755))
	claim := func() time.Duration {
		start := time.Now()
		_, release, err := claimScope(b.TempDir(), slog.New(slog.DiscardHandler))
		took := time.Since(start)
		require.NoError(b, err)
		release()
		return took
	}
	var swept, plain []float64
	for range b.N * testutil.BenchRounds {
		paths := staleLockFiles(b, 100)
		swept = append(swept, float64(claim().Milliseconds()))
		for _, p := range paths {
			assert.NoFileExists(b, p, "swept")
		}
		plain = append(plain, float64(claim().Milliseconds()))
	}
	b.ReportMetric(testutil.Median(swept), "ms-sweeping-100")
	b.ReportMetric(testutil.Median(plain), "ms-sweeping-none")
	b.ReportMetric(testutil.Median(swept)/max(testutil.Median(plain), 1), "ratio")
}

// staleLockFiles writes n lock files as killed wharfs whose data
// directories are gone leave them (scopes nothing on the host carries),
// removed at the end of tb if still there.
func staleLockFiles(tb testing.TB, n int) []string {
	var paths []string
	tb.Cleanup(func() {
		for _, p := range paths {
			os.Remove(p)
		}
	})
	gone := tb.TempDir()
	for i := 0; len(paths) < n; i++ {
		tag := hashedScope(gone, i)
		if namesOnHost(tag) {
			continue
		}
		f, err := os.OpenFile(scopeLockPath(tag), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			continue // a wharf's
		}
		raw, err := json.Marshal(scopeHolder{PID: 1 << 22, DataDir: filepath.Join(gone, "data-"+strconv.Itoa(i))})
		require.NoError(tb, err)
		_, err = f.Write(raw)
		require.NoError(tb, errors.Join(err, f.Close()))
		paths = append(paths, scopeLockPath(tag))
	}
	return paths
}

// TestASweepPassesOverAFIFO: a FIFO where a lock file would be held every
// wharf's start on the host for good (the sweep read it, under scopes);
// it is passed over, and stale lock files beside it are swept.
func TestASweepPassesOverAFIFO(t *testing.T) {
	require.NoError(t, os.MkdirAll(scopeLockDir, 0o755))
	var fifo string
	for i := 0; fifo == ""; i++ {
		if path := scopeLockPath(hashedScope(t.TempDir(), i)); unix.Mkfifo(path, 0o644) == nil {
			fifo = path
		}
	}
	t.Cleanup(func() { os.Remove(fifo) })
	stale := staleLockFiles(t, 1)
	claimed := make(chan error, 1)
	go func() {
		_, release, err := claimScope(t.TempDir(), slog.New(slog.DiscardHandler))
		if err == nil {
			release()
		}
		claimed <- err
	}()
	select {
	case err := <-claimed:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the claim hangs on the FIFO (and holds every later claim in this process)")
	}
	assert.FileExists(t, fifo, "not a lock file of wharf's: left")
	assert.NoFileExists(t, stale[0], "swept")
}
