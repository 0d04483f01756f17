package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// offlineTested holds the wharf init arguments (but the directory) whose
// plugin passed offlineGoTest in this test process.
var offlineTested sync.Map

// offlineGoTest runs `go test` in dir, a plugin wharf init wrote with the
// arguments initArgs (but the directory), with no module proxy: the go.mod
// and go.sum wharf init wrote must be complete. The plugin's tests run on
// wharftest's engine, not this run's (testutil.Engine), and the same
// wharf writes the same plugin: once they passed in this process, as on
// the first engine's run, they are not run again (linking their test
// binary and compiling the plugin take a minute on CI).
func offlineGoTest(t *testing.T, dir string, initArgs ...string) {
	t.Helper()
	key := strings.Join(initArgs, " ")
	if _, ok := offlineTested.Load(key); ok {
		t.Logf("the plugin of %s passed its tests offline earlier in this process", strings.TrimSpace("wharf init "+key))
		return
	}
	cmd := exec.Command("go", "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestNotes")
	assert.NotContains(t, string(out), "SKIP", "this machine runs containers, so nothing is skipped")
	if !t.Failed() {
		offlineTested.Store(key, true)
	}
}

// TestInitWritesAWorkingPlugin: `wharf init`, then `go test` offline and
// `wharf serve` in the new directory, through the real binary.
func TestInitWritesAWorkingPlugin(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir := filepath.Join(t.TempDir(), "My Notes")
	out, err := exec.Command(wharf, "init", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "wrote a plugin in "+dir)
	gitignore, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
	assert.Contains(t, string(gitignore), "\n.wharf/\n")
	mod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	assert.Contains(t, string(mod), "module example.com/my-notes\n")
	assert.Contains(t, string(mod), "replace github.com/wharfhq/wharf => "+testutil.RepoRoot()+"\n")

	offlineGoTest(t, dir)
	vet := exec.Command("go", "vet", "./...")
	vet.Dir = dir
	vet.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOOS=wasip1", "GOARCH=wasm")
	out, err = vet.CombinedOutput()
	require.NoError(t, err, "go vet for the plugin's own platform (an editor set to wasip1 does the same): %s", out)

	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0")
	resp, err := http.Get(srv.URL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "Hello from my-notes!\n", string(body))
	req, err := http.NewRequest("PUT", srv.URL+"/notes/alice", bytes.NewReader(make([]byte, 1<<20)))
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "a note too long is refused, not cut")
	assert.Equal(t, "a note is at most 65536 bytes\n", string(body))
	resp, err = http.Get(srv.URL + "/notes/nobody")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a note never stored")
	assert.Equal(t, "no note named \"nobody\"\n", string(body))
	resp, err = http.Get(srv.URL + "/")
	require.NoError(t, err, "the host keeps serving")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	out, err = exec.Command(wharf, "init", dir).CombinedOutput()
	require.Error(t, err, "init does not overwrite a plugin")
	assert.Equal(t, "wharf: "+dir+" already has go.mod: wharf init does not overwrite a plugin's files\n", string(out))
	spaced := filepath.Join(t.TempDir(), "p")
	out, err = exec.Command(wharf, "init", "--name", "my plugin", spaced).CombinedOutput()
	require.Error(t, err, "a name go.mod and wharf.toml cannot hold")
	assert.Equal(t, "wharf: --name \"my plugin\": a plugin name is lower case letters, digits and dashes (\"my-plugin\", say)\n", string(out))
	assert.NoDirExists(t, spaced, "nothing is written")
	out, err = exec.Command(wharf, "init", "--sdk", t.TempDir(), filepath.Join(t.TempDir(), "x")).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "is not a checkout of github.com/wharfhq/wharf")
}

// TestInitWithContainer: the Container class variant passes its own tests
// with a real container, and the commands its wharf.toml's comment gives
// import the image (in a directory they remove) that wharf serve then runs.
func TestInitWithContainer(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir := filepath.Join(t.TempDir(), "app")
	out, err := exec.Command(wharf, "init", "--container", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "wrote a plugin in "+dir+": `wharf serve "+dir+"` serves it once its image is imported (the comment in its wharf.toml shows how), `go test` there tests it\n", string(out))
	offlineGoTest(t, dir, "--container")

	manifest, err := os.ReadFile(filepath.Join(dir, "wharf.toml"))
	require.NoError(t, err)
	var script []string
	for line := range strings.Lines(string(manifest)) {
		if cmd, ok := strings.CutPrefix(line, "#   "); ok {
			script = append(script, cmd)
		}
	}
	require.Len(t, script, 2, "the import's commands in the comment of:\n%s", manifest)
	tmp := t.TempDir()
	sh := exec.Command("sh", "-ec", strings.Join(script, ""))
	sh.Dir = dir
	sh.Env = append(os.Environ(), "PATH="+filepath.Dir(wharf)+string(os.PathListSeparator)+os.Getenv("PATH"), "TMPDIR="+tmp, "GOPROXY=off", "GOFLAGS=")
	out, err = sh.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "imported wharf.test/busybox:latest")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "the image's directory is removed")

	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0")
	resp, err := http.Get(srv.URL + "/app/alice/passwd")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "root:x:0:0:", "the container's /etc/passwd")
}

func TestShellQuote(t *testing.T) {
	assert.Equal(t, "/tmp/my-notes_1.x", shellQuote("/tmp/my-notes_1.x"))
	assert.Equal(t, "'/tmp/my plugin'", shellQuote("/tmp/my plugin"))
	assert.Equal(t, `'it'\''s'`, shellQuote("it's"))
	assert.Equal(t, "''", shellQuote(""))
}

// TestInitRefusesABadModulePath: a --module go.mod cannot hold is refused
// before anything is written (go mod tidy refused it after, and the files
// left behind made the next wharf init refuse to overwrite them).
func TestInitRefusesABadModulePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	_, err := run(t, "init", "--module", "not a module", dir)
	require.Error(t, err)
	assert.Equal(t, `--module: malformed import path "not a module": invalid char ' '`, err.Error())
	assert.NoDirExists(t, dir, "nothing is written")
}
