package build_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestKilledTestsBuildIsReclaimed: a test binary killed with SIGKILL in the
// middle of a build leaves its build container running, and buildkitd's
// mounts for the step (its buildkitd goes with the test). The next test
// process removes them, as a wharf started after a crash does.
func TestKilledTestsBuildIsReclaimed(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_RECLAIM_BUILD_DATA"); data != "" {
		buildAndWaitToBeKilled(t, data)
	}
	data, release := testutil.KillChildTestWith(t, "TestKilledTestsBuildIsReclaimed", "WHARF_TEST_RECLAIM_BUILD_DATA", "building")
	require.NotEmpty(t, containerd.MountsUnder(build.Dir(data)), "the killed build's mounts outlive it")
	release()

	_, err := containerd.ReclaimEnded(context.Background(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	testutil.LockDir(t, data)() // another test process may be reclaiming it: ReclaimEnded leaves it to that one
	assert.Empty(t, containerd.HostLeftovers(data), "left after reclaiming")
}

// buildAndWaitToBeKilled is the child of TestKilledTestsBuildIsReclaimed: a
// build whose step runs until the test is killed.
func buildAndWaitToBeKilled(t *testing.T, data string) {
	f := startIn(t, data)
	go func() {
		require.Eventually(t, func() bool {
			return slices.ContainsFunc(f.leftovers(t), func(l string) bool { return strings.HasPrefix(l, "build task ") })
		}, 2*time.Minute, 100*time.Millisecond, "the build's step never ran")
		fmt.Println("building")
	}()
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 3600\n"})
	_, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/slow:1",
		BuildArgs: map[string]string{"BASE": f.base}})
	t.Fatalf("the build ended: %v", err)
}
