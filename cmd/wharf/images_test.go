package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testregistry"
	"github.com/wharfhq/wharf/internal/testutil"
)

var builtTag = regexp.MustCompile(`msg="building image" image=(\S+)`)

// servedBuild starts wharf serve on plugin, checks that it built (or, with
// wantBuild false, reused) the class's image and that a session's container
// of that image serves, and returns the running serve and the tag.
func servedBuild(t *testing.T, plugin, data string, wantBuild bool) (*testutil.Serve, string) {
	srv := testutil.StartServe(t, plugin, "--listen", "127.0.0.1:0", "--data-dir", data)
	m := builtTag.FindStringSubmatch(srv.Logs())
	if wantBuild {
		require.NotNil(t, m, "no build in the log:\n%s", srv.Logs())
		assert.Contains(t, srv.Logs(), "msg=\"image built\"")
	} else {
		require.Nil(t, m, "an unchanged context was rebuilt")
		assert.Contains(t, srv.Logs(), "msg=\"image up to date\"")
	}
	resp, err := http.Get(srv.URL + "/s/alice/index.html")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	if m == nil {
		return srv, ""
	}
	return srv, m[1]
}

// stopped checks wharf serve stopped cleanly and left no buildkitd process
// or mount behind.
func stopped(t *testing.T, srv *testutil.Serve, data string) {
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, build.Mounts(data), "mounts left under the data directory")
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		b, _ := os.ReadFile(f)
		assert.False(t, strings.Contains(string(b), "buildkitd") && strings.Contains(string(b), data), "buildkitd still running: %s", b)
	}
}

// TestServeBuildsDockerfileImages runs the webapp example's module with its
// class's image given as a directory holding a Dockerfile (FROM a base on a
// loopback registry, named by a build argument): wharf serve builds it,
// reuses it while the context is unchanged, rebuilds it when it changes;
// images rm refuses it while served; prune removes the stale one;
// `wharf images build` builds by hand.
func TestServeBuildsDockerfileImages(t *testing.T) {
	testutil.BuildBuildkitd(t)
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	reg := testregistry.Start(t, "", "")
	base := reg.PushArchive(t, archive, "base/busybox:1")
	plugin := t.TempDir()
	module, err := filepath.Rel(plugin, filepath.Join(testutil.RepoRoot(), "examples", "webapp"))
	require.NoError(t, err)
	files := map[string]string{
		"wharf.toml": `name = "built"
main = "` + module + `"

[[durable_objects.bindings]]
name = "APP"
class_name = "App"

[[containers]]
class_name = "App"
image = "./container"
build_args = { BASE = "` + base + `" }
ready_on = [{ path = "/index.html" }]
`,
		"container/Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo built > /built.txt\nCOPY note.txt /note.txt\n",
		"container/note.txt":   "v1\n",
	}
	for name, body := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(plugin, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(plugin, name), []byte(body), 0o644))
	}
	data := t.TempDir()
	// The CLI reaches the containerd of a running wharf serve by its
	// address (the data directory itself is locked by serve).
	shared := []string{"--data-dir", data, "--containerd-address", containerd.EmbeddedAddress(data)}

	srv, first := servedBuild(t, plugin, data, true)
	assert.Regexp(t, `^built-app:[0-9a-f]{12}$`, first)
	_, err = run(t, append([]string{"images", "rm", first}, shared...)...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "image in use: "+first+" is used by the loaded plugin built; stop it first or pass --force")
	stopped(t, srv, data)

	srv, _ = servedBuild(t, plugin, data, false)
	stopped(t, srv, data)

	require.NoError(t, os.WriteFile(filepath.Join(plugin, "container", "note.txt"), []byte("v2\n"), 0o644))
	srv, second := servedBuild(t, plugin, data, true)
	assert.NotEqual(t, first, second, "a changed context gets a new tag")
	out, err := run(t, append([]string{"images", "prune"}, shared...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "removed "+first)
	assert.NotContains(t, out, "removed "+second, "the served image stays")
	stopped(t, srv, data)

	out, err = run(t, "images", "build", filepath.Join(plugin, "container"), "--tag", "wharf.test/by-hand:1",
		"--build-arg", "BASE="+base, "--data-dir", data)
	require.NoError(t, err, out)
	assert.Contains(t, out, "built wharf.test/by-hand:1")
	out, err = run(t, "images", "build", filepath.Join(plugin, "container"), "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--tag is required")
	assert.Empty(t, build.Mounts(data))
}
