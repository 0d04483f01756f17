package containerd

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// TestListingAHugeDirectorySaysSo: a directory whose listing is larger
// than the agent may send (wire.MaxMessage: 100000 entries) is refused as
// ErrLimit saying why, and the container lives on. The agent made the
// whole listing first, past the container's 64 MiB: the kernel killed it,
// PID 1, and with it the container, and wharf read only the end of the
// connection ("read unix @->/.wharf/agent.sock: EOF"). The directory
// lists, sorted, once it is smaller again. A named pipe is refused as no
// directory, not waited on.
func TestListingAHugeDirectorySaysSo(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "hugedir", "sleep 3600", true)
	code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c",
		`mkdir /tmp/huge && cd /tmp/huge && awk 'BEGIN { for (i = 0; i < 100000; i++) print "f" i }' | xargs touch`}})
	require.Equal(t, uint32(0), code, errOut)
	_, err := ctr.ListDir(context.Background(), "/tmp/huge", "")
	require.ErrorIs(t, err, hostcontainers.ErrLimit)
	assert.ErrorContains(t, err, fmt.Sprintf("listing /tmp/huge: it has more entries than one answer holds (%d bytes of JSON)", wire.MaxMessage))
	code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"echo", "alive"}})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Equal(t, "alive\n", out, "the container lives on")

	code, _, errOut = execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", `cd /tmp/huge && ls | tail -n +11 | xargs rm`}})
	require.Equal(t, uint32(0), code, errOut)
	list, err := ctr.ListDir(context.Background(), "/tmp/huge", "")
	require.NoError(t, err)
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"f0", "f1", "f10", "f100", "f1000", "f10000", "f10001", "f10002", "f10003", "f10004"}, names)

	// A named pipe is no directory, at once: its open waited for a writer.
	code, _, errOut = execOut(t, ctr, ExecSpec{Args: []string{"mkfifo", "/tmp/fifo"}})
	require.Equal(t, uint32(0), code, errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = ctr.ListDir(ctx, "/tmp/fifo", "")
	assert.ErrorIs(t, err, syscall.ENOTDIR)
}
