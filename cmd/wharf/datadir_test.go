package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestSecondServeOnSameDataDirIsRefused starts a second wharf serve on the
// data directory of a running one: it is refused at once, before building,
// starting containerd or touching the firewall, and the first keeps
// serving with its container and nft table. So are `wharf images`
// commands that would start a second containerd there.
func TestSecondServeOnSameDataDirIsRefused(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "webapp")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	get := func() int {
		resp, err := http.Get(srv.URL + "/s/alice/index.html")
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, get())
	pidOf := regexp.MustCompile(`(?m)^APP\s+\S+\s+App\s+[0-9a-f]{16}\s+running\s+\S+\s+\S+\s+(\d+)`)
	out, code := wharfCmd(t, "", "ps", "--data-dir", data)
	require.Equal(t, 0, code, out)
	before := pidOf.FindStringSubmatch(out)
	require.NotNil(t, before, out)
	abs, err := filepath.Abs(data)
	require.NoError(t, err)
	require.NotEmpty(t, egress.FirewallLeftovers(containerd.Scope(abs)), "the first wharf's nft table")

	want := "wharf: the data directory " + data + " is in use by another wharf (pid " + strconv.Itoa(srv.Pid()) + "); stop it or choose another --data-dir\n"
	out, code = wharfCmd(t, "", "serve", app, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.Equal(t, 1, code)
	assert.Equal(t, want, out, "refused before anything else: no build, no containerd, no log line")
	out, code = wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "wharf.test/busybox:latest", "images reach the running wharf's containerd, which serves the data directory's store")
	// The lock is on the directory: neither another path to it nor deleting
	// the pid file lets a second wharf in.
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(abs, link))
	require.NoError(t, os.Remove(filepath.Join(data, "wharf.lock")))
	out, code = wharfCmd(t, "", "serve", app, "--listen", "127.0.0.1:0", "--data-dir", link)
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: the data directory "+link+" is in use by another wharf; stop it or choose another --data-dir\n", out)

	assert.Equal(t, 200, get(), "the first wharf still serves")
	out, code = wharfCmd(t, "", "ps", "--data-dir", data)
	require.Equal(t, 0, code, out)
	after := pidOf.FindStringSubmatch(out)
	require.NotNil(t, after, "the container still runs: %s", out)
	assert.Equal(t, before[1], after[1], "the same container process")
	assert.NotEmpty(t, egress.FirewallLeftovers(containerd.Scope(abs)), "the nft table is still there")
	assert.NotContains(t, srv.Logs(), "level=ERROR")

	require.NoError(t, srv.Stop(30*time.Second))
	out, code = wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, "the directory is free again once the first has stopped: %s", out)
	_, err = os.Stat(filepath.Join(data, "wharf.lock"))
	assert.NoError(t, err)
}

// TestImagesNameTheDataDirAbsolute: wharf images given a relative
// --data-dir (the README's `--data-dir .wharf`) that a wharf owns without
// a containerd of its own there (serve --containerd-address) is refused,
// naming the directory by its absolute path, which works from any
// directory: it said "the data directory .wharf is in use".
func TestImagesNameTheDataDirAbsolute(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, ".wharf")
	lock, err := host.LockDataDir(data) // as a running wharf serve holds it
	require.NoError(t, err)
	defer lock.Unlock()

	cmd := exec.Command(testutil.BuildWharf(t), "images", "ls", "--data-dir", ".wharf")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, "wharf: the data directory "+data+" is in use by another wharf (pid "+strconv.Itoa(os.Getpid())+
		"); stop it or choose another --data-dir\n", string(out))
}
