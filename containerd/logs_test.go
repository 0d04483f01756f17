package containerd

import (
	"bufio"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/keptlog"
)

// TestContainerOutputIsCapped: a container printing forever keeps at most
// LogMaxBytes of output on the host, the newest, and is never slowed by a
// full log; a reader following the log goes on across rotations.
func TestContainerOutputIsCapped(t *testing.T) {
	const maxBytes = 1 << 20
	m, image := testManagerWith(t, ManagerOptions{LogMaxBytes: maxBytes})
	spam := `i=0; while :; do i=$((i+1)); echo "line $i of output that never ends"; done`
	_, err := m.Start(context.Background(), "Spam", "obj", ContainerSpec{Image: image, Entrypoint: []string{"sh", "-c", spam}}, openPolicy(), 0)
	require.NoError(t, err)
	path := m.LogPath("Spam", "obj")

	follow, err := keptlog.Open(path)
	require.NoError(t, err)
	defer follow.Close()
	var followed, last int
	var partial string // a line whose end is not written yet
	lines := bufio.NewReader(follow)
	for deadline := time.Now().Add(2 * time.Minute); followed < 3*maxBytes && time.Now().Before(deadline); {
		s, err := lines.ReadString('\n')
		if err == io.EOF { // at the end for now: read on
			partial += s
			time.Sleep(10 * time.Millisecond)
			continue
		}
		require.NoError(t, err)
		line := partial + s
		partial, followed = "", followed+len(line)
		n := lineNumber(t, line)
		require.Greater(t, n, last, "the follower reads the output in order")
		last = n
	}
	require.GreaterOrEqual(t, followed, 3*maxBytes, "the follower read on across rotations (and the container kept printing)")

	// The rest looks at the files at rest: the container is stopped (a
	// reader slower than the writer skips what is rotated away twice
	// between its reads, and mid-rotation the newest file is missing).
	assert.Len(t, logKeepers(m.b.DataDir), 1, "the leftover check sees the running keeper")
	mc, ok := m.Get("Spam", "obj")
	require.True(t, ok)
	require.NoError(t, mc.Signal(context.Background(), syscall.SIGKILL))
	select {
	case <-mc.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the container did not exit after SIGKILL")
	}
	require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 10*time.Second, 10*time.Millisecond,
		"the logger finished its last rotation")

	kept := fileSize(t, path) + fileSize(t, keptlog.Previous(path))
	assert.LessOrEqual(t, kept, int64(maxBytes), "the host keeps no more than the cap")
	assert.Greater(t, kept, int64(maxBytes/2), "and the older half too")

	// A reader from the start gets the newest output, in order, without
	// gaps.
	r, err := keptlog.Open(path)
	require.NoError(t, err)
	all := bufio.NewScanner(r)
	require.True(t, all.Scan())
	prev := 0 // the first line may be cut by a rotation
	for all.Scan() {
		n := lineNumber(t, all.Text())
		if prev > 0 {
			require.Equal(t, prev+1, n, "no line is lost within what is kept")
		}
		prev = n
	}
	r.Close()
	assert.Greater(t, prev, last/2, "the kept output is the newest")

	require.NoError(t, m.Destroy(context.Background(), "Spam", "obj"))
	assert.NoFileExists(t, path, "destroy removes the log")
	assert.NoFileExists(t, keptlog.Previous(path))
	assert.Empty(t, logKeepers(m.b.DataDir), "the keeper is gone with the container")
}

func lineNumber(t *testing.T, line string) int {
	t.Helper()
	f := strings.Fields(line)
	require.Len(t, f, 7, "a whole line: %q", line)
	n, err := strconv.Atoi(f[1])
	require.NoError(t, err)
	return n
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}
