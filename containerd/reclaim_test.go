package containerd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestKilledTestsContainersAreReclaimed: a test binary killed with SIGKILL
// (a -timeout, an impatient developer) runs no cleanup. Its containerd
// goes with it, but its container keeps running, with its shim, network,
// disk and cgroup. The next test process removes all of it, and leaves the
// containers of running tests alone.
func TestKilledTestsContainersAreReclaimed(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_RECLAIM_CHILD_DATA"); data != "" {
		startAndWaitToBeKilled(t, data)
	}
	running, image := testManager(t) // this test process's: it must be left alone
	mc, err := running.Start(context.Background(), "Box", "running", ContainerSpec{Image: image,
		Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)

	data := t.TempDir()
	child := testutil.StartChildTest(t, "TestKilledTestsContainersAreReclaimed", "WHARF_TEST_RECLAIM_CHILD_DATA="+data)
	for child.Stdout.Scan() && child.Stdout.Text() != "started" {
	}
	require.Equal(t, "started", child.Stdout.Text(), "the child test started its container")
	child.Kill(t)
	require.Eventually(t, func() bool { return !daemonRuns(processes(), data) }, 30*time.Second, 50*time.Millisecond,
		"the killed test's containerd stops")
	left := HostLeftovers(data)
	require.NotEmpty(t, left, "the killed test's container outlives it")
	t.Logf("left by the killed test: %s", strings.Join(left, "; "))

	_, err = ReclaimEnded(context.Background(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	assert.Empty(t, HostLeftovers(data), "left after reclaiming")
	assert.False(t, mc.Exited(), "this process's container runs on")
}

// startAndWaitToBeKilled is the child of TestKilledTestsContainersAreReclaimed:
// a container with a network and a disk in data, then nothing until killed.
func startAndWaitToBeKilled(t *testing.T, data string) {
	logger := slog.New(slog.DiscardHandler)
	b, err := OpenBackend(context.Background(), data, "", logger)
	require.NoError(t, err)
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	imgs, err := ImportArchive(context.Background(), b.Client, archive, "")
	require.NoError(t, err)
	m, err := NewManager(b, ManagerOptions{Logger: logger})
	require.NoError(t, err)
	_, err = m.Start(context.Background(), "Box", "obj", ContainerSpec{Image: imgs[0].Name, DiskMB: 10,
		Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	fmt.Println("started")
	select {}
}
