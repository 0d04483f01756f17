package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestLogsReadAcrossRotations: `wharf logs` shows all the output wharf
// keeps of a container's main process, its previous file (.log.1) first,
// and `wharf logs -f` follows the output on across a rotation. It read the
// newest file alone, so it lost the older half of what README says is
// kept, and a follower stayed on the file rotated away and showed nothing
// written after (a container that prints more than 5 MiB while followed).
func TestLogsReadAcrossRotations(t *testing.T) {
	data, _, _ := serveWebapp(t)
	dd := "--data-dir=" + data
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follower := exec.CommandContext(ctx, testutil.BuildWharf(t), "logs", "-f", dd, "APP", "alice")
	var followed testutil.LogBuffer
	follower.Stdout, follower.Stderr = &followed, &followed
	require.NoError(t, follower.Start())
	done := make(chan struct{})
	go func() { follower.Wait(); close(done) }()
	require.Eventually(t, func() bool { return strings.Contains(followed.String(), "serving session container") }, 10*time.Second, 20*time.Millisecond)

	// 7 MB of lines into the main process's output (httpd's stdout,
	// the entrypoint's): one rotation of the 5 MiB halves.
	out, code := wharfCmd(t, "", "exec", dd, "APP", "alice", "--", "sh", "-c",
		`seq 1 600000 | sed 's/^/line /' > /proc/$(pidof httpd)/fd/1`)
	require.Equal(t, 0, code, out)
	assert.Eventually(t, func() bool { return strings.Contains(followed.String(), "\nline 600000\n") }, 20*time.Second, 50*time.Millisecond,
		"the follower reads on across the rotation")
	cancel()
	<-done

	out, code = wharfCmd(t, "", "logs", dd, "APP", "alice")
	require.Equal(t, 0, code)
	assert.True(t, strings.HasPrefix(out, "serving session container"), "the oldest output kept comes first: %.80q", out)
	assert.Contains(t, out, "\nline 1\n")
	assert.True(t, strings.HasSuffix(out, "\nline 600000\n"))
	assert.Equal(t, 600001, strings.Count(out, "\n"), "every line, once")
	assert.Equal(t, followed.String(), out, "the follower saw the same")
}
