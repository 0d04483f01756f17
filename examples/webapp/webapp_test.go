package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

func fetch(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func state(t *testing.T, base, session string) string {
	t.Helper()
	code, body := fetch(t, base+"/s/"+session+"/_state")
	require.Equal(t, 200, code, body)
	var st struct{ Status string }
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	return st.Status
}

// TestWebapp runs the example through the real binary (with sleep_after
// = 2s): the first request starts the session's container, warm requests
// reach the same run, the container sleeps when idle, and the next request
// wakes a new run.
func TestWebapp(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "webapp", "testdata", "wharf.toml"),
		"--listen", "127.0.0.1:0", "--data-dir", data)

	assert.Equal(t, "stopped", state(t, srv.URL, "alice"))
	code, cold := fetch(t, srv.URL+"/s/alice/index.html")
	require.Equal(t, 200, code, cold)
	assert.Contains(t, cold, "session container ")
	assert.Equal(t, "healthy", state(t, srv.URL, "alice"))
	for range 3 {
		_, warm := fetch(t, srv.URL+"/s/alice/index.html")
		assert.Equal(t, cold, warm, "warm requests reach the same run")
	}
	_, bob := fetch(t, srv.URL+"/s/bob/index.html")
	assert.NotEqual(t, cold, bob, "another session has its own container")
	code, _ = fetch(t, srv.URL+"/s/alice/missing")
	assert.Equal(t, 404, code, "the app's own answers pass through")

	require.Eventually(t, func() bool { return state(t, srv.URL, "alice") == "stopped" }, 15*time.Second, 200*time.Millisecond,
		"the container sleeps after 2s without requests")
	code, woken := fetch(t, srv.URL+"/s/alice/index.html")
	require.Equal(t, 200, code)
	assert.True(t, strings.HasPrefix(woken, "session container "))
	assert.NotEqual(t, cold, woken, "the next request wakes a new run")

	assert.Regexp(t, `msg="session container ready" plugin=webapp request_id=App#[0-9a-f]{8}-\d+\n`, srv.Logs(),
		"the object logs with its state.Logger, so wharf tail --class App and --object find the line")
	assert.Regexp(t, `container:App#\S+ idle for sleep_after \(2s\): stopping`, srv.Logs())
	assert.Regexp(t, `container:App#\S+ stop" .*exit_code=\d+ reason="SIGTERM from the object"`, srv.Logs(),
		"the log says why the sleeping container exited")

	require.NoError(t, srv.Stop(30*time.Second))
	assert.Regexp(t, `container:App#\S+ stop" .*exit_code=0 reason="wharf is shutting down"`, srv.Logs(),
		"a clean shutdown lets the server exit on SIGTERM")
	assert.Empty(t, containerd.NetworkLeftovers(data))
	assert.Empty(t, egress.FirewallLeftovers(containerd.Scope(data)))
}
