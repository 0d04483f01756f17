package main

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestEgressExample runs the example through the real wharf binary: the
// container's HTTP and HTTPS calls are answered by the Worker with an
// injected header, a denied name does not resolve, and nothing is left.
func TestEgressExample(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	// No name in this example is resolved upstream; the flag keeps the
	// host's resolver out of the test all the same.
	srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "egress"),
		"--listen", "127.0.0.1:0", "--data-dir", data, "--dns-upstream", "127.0.0.1:9")

	resp, err := http.Get(srv.URL + "/call/a1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	out := string(body)
	assert.Contains(t, out, "status=200\nX-Injected-By: wharf-worker\n"+`{"url":"http://api.internal.test/v1/status","agent":"`)
	assert.Contains(t, out, "status=200\nX-Injected-By: wharf-worker\n"+`{"url":"https://secrets.internal.test/v1/token","token":"minted-by-the-worker"}`)
	assert.Contains(t, out, "wget: bad address 'www.evil.test'")

	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
	assert.Empty(t, egress.FirewallLeftovers(containerd.Scope(data)))
}
