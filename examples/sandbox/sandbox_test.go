package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestSandboxStreamsScriptOutput runs the example through the real wharf
// binary with a real container: output arrives while the script still
// runs, the session keeps its files, and nothing is left after shutdown.
func TestSandboxStreamsScriptOutput(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)

	srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data)
	start := time.Now()
	resp, err := http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader("echo one; sleep 1; echo two; echo oops >&2; touch /work/made-by-run-1"))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	require.NoError(t, err)
	firstAt := time.Since(start)
	rest, _ := io.ReadAll(r)
	resp.Body.Close()
	doneAt := time.Since(start)
	assert.Equal(t, "one\n", first)
	// stderr is combined into the output (the two streams' relative order
	// is not kept).
	assert.ElementsMatch(t, []string{"two", "oops"}, strings.Fields(string(rest)))
	assert.Less(t, firstAt+700*time.Millisecond, doneAt, "the first line arrived while the script still ran (%s vs %s)", firstAt, doneAt)

	resp, err = http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader("ls /work"))
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "made-by-run-1\n", string(out), "a session keeps its container between runs")

	resp, err = http.Post(srv.URL+"/run/s2", "text/plain", strings.NewReader("ls /work"))
	require.NoError(t, err)
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "", string(out), "another session has its own container")

	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		assert.NotContains(t, string(b), data, "a process of the test's containerd survived: %q", b)
	}
}

// TestSandboxContainerSurvivesHostCrash kills wharf serve with SIGKILL; the
// next start adopts the session's running container (its files are still
// there), and a clean stop then removes everything.
func TestSandboxContainerSurvivesHostCrash(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	dir := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	run := func(srv *testutil.Serve, script string) string {
		resp, err := http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader(script))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}

	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.Equal(t, "", run(srv, "touch /work/before-crash"))
	srv.Kill()

	srv = testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.True(t, srv.WaitLog("adopted=1", 5*time.Second), "the running container was adopted")
	assert.Equal(t, "before-crash\n", run(srv, "ls /work"), "the same container, not a new one")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}
