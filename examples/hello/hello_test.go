package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestHelloThroughWharfServe builds the example and the wharf binary and
// runs them for real on loopback.
func TestHelloThroughWharfServe(t *testing.T) {
	dir := filepath.Join(testutil.RepoRoot(), "examples", "hello")
	data := t.TempDir()
	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.Contains(t, srv.Logs(), "compiling hello.wasm (", "a cold cache says what it is doing")
	assert.Contains(t, srv.Logs(), "engine="+testutil.Engine)

	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "Hello from wharf!\n", string(body))

	payload := make([]byte, 8<<20)
	rand.Read(payload)
	resp, err = http.Post(srv.URL+"/echo", "application/octet-stream", bytes.NewReader(payload))
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.True(t, bytes.Equal(payload, body), "echo returned %d bytes, sent %d", len(body), len(payload))

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from upstream")
	}))
	defer upstream.Close()
	resp, err = http.Get(srv.URL + "/fetch?url=" + upstream.URL)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "from upstream", string(body))
	assert.Equal(t, "200", resp.Header.Get("X-Upstream-Status"))
	assert.True(t, srv.WaitLog(" url="+upstream.URL+" status=200\n", 5*time.Second), "the guest's log line reaches the host log")
	assert.Regexp(t, `level=INFO msg=fetched plugin=hello request_id=\S+ url=`+regexp.QuoteMeta(upstream.URL)+` status=200\n`, srv.Logs(),
		"with its attributes as attributes")

	resp, err = http.Get(srv.URL + "/nope")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 404, resp.StatusCode)

	require.NoError(t, srv.Stop(15*time.Second), "wharf serve exits cleanly on SIGTERM")
	assert.True(t, srv.WaitLog("shutting down", 5*time.Second))

	restarted := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data, "--no-build")
	assert.NotContains(t, restarted.Logs(), "compiling", "the compile cache survives a restart")
	resp, err = http.Get(restarted.URL + "/")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "Hello from wharf!\n", string(body))
}
