package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/manifest"
)

// helloLine is the line of the scaffold's main.go that TestDevReloadsOnSave
// edits.
const helloLine = `fmt.Fprintln(w, "Hello from app!")`

// getBody is GET url's status and body; a transport error is status 0.
func getBody(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// containers is `wharf ps --format json` of the wharf using dataDir.
func containers(t *testing.T, dataDir string) []admin.Container {
	t.Helper()
	out, err := exec.Command(testutil.BuildWharf(t), "ps", "--format", "json", "--data-dir", dataDir).Output()
	require.NoError(t, err)
	var list []admin.Container
	require.NoError(t, json.Unmarshal(out, &list), "%s", out)
	return list
}

// TestDevReloadsOnSave edits a plugin ten times (one edit a build error)
// while clients keep requesting its Worker, its Durable Object and its
// container: no request fails, every edit is served, the broken one is
// reported while the old code serves on, and the container is the same
// process throughout.
func TestDevReloadsOnSave(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir := filepath.Join(t.TempDir(), "app")
	out, err := exec.Command(wharf, "init", "--container", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	image, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	data := filepath.Join(dir, ".wharf")
	out, err = exec.Command(wharf, "images", "import", image, "--data-dir", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mainGo := filepath.Join(dir, "main.go")
	source, err := os.ReadFile(mainGo)
	require.NoError(t, err)
	require.Contains(t, string(source), helloLine)

	srv := testutil.StartDev(t, dir, "--listen", "127.0.0.1:0")
	require.True(t, srv.WaitLog(`msg="watching for changes: a save to a .go file, go.mod or go.sum rebuilds and reloads"`, time.Minute), srv.Logs())
	code, body := getBody(srv.URL + "/app/a/passwd")
	require.Equal(t, 200, code, body)
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/notes/a", strings.NewReader("kept"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	before := containers(t, data)
	require.Len(t, before, 1)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	var failures sync.Map
	for _, path := range []string{"/", "/notes/a", "/app/a/passwd", "/"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, body := getBody(srv.URL + path); code != 200 {
					failures.Store(fmt.Sprintf("%s: %d %s", path, code, body), true)
				}
				served.Add(1)
			}
		}()
	}

	var took []time.Duration
	for i := 1; i <= 10; i++ {
		line := fmt.Sprintf(`fmt.Fprintln(w, "Hello, edit %d")`, i)
		if i == 5 { // a build error: reported, and the old code serves on
			line += " +"
		}
		saved := time.Now()
		require.NoError(t, os.WriteFile(mainGo, []byte(strings.Replace(string(source), helloLine, line, 1)), 0o644))
		if i == 5 {
			require.True(t, srv.WaitLog("reload failed; the previous build keeps serving", time.Minute), "the build error is reported")
			// The output follows its line; a read of the pipe may end between.
			buildErrors := regexp.MustCompile(`(?m)^\t\./main\.go:\d+:\d+: `)
			assert.Eventually(t, func() bool { return buildErrors.MatchString(srv.Logs()) }, 10*time.Second, 10*time.Millisecond,
				"go build's errors on lines of their own, not quoted with \\n (the log follows the test's end)")
			_, body := getBody(srv.URL + "/")
			assert.Equal(t, "Hello, edit 4\n", body)
			continue
		}
		want := fmt.Sprintf("Hello, edit %d\n", i)
		require.Eventually(t, func() bool { _, body := getBody(srv.URL + "/"); return body == want },
			time.Minute, 10*time.Millisecond, "edit %d is served", i)
		took = append(took, time.Since(saved))
	}
	close(stop)
	wg.Wait()

	var failed []string
	failures.Range(func(k, _ any) bool { failed = append(failed, k.(string)); return true })
	assert.Empty(t, failed, "requests failed while the plugin reloaded")
	after := containers(t, data)
	require.Len(t, after, 1)
	assert.Equal(t, before[0].Pid, after[0].Pid, "the container kept running")
	assert.Equal(t, before[0].Started, after[0].Started)
	_, body = getBody(srv.URL + "/notes/a")
	assert.Equal(t, "kept", body)
	slices.Sort(took)
	t.Logf("%d requests; save to new code answering: median %s, max %s", served.Load(), took[len(took)/2], took[len(took)-1])
}

// TestDevRefusesBuiltModule: wharf dev rebuilds from sources, so a
// manifest naming a .wasm is refused with the reason.
func TestDevRefusesBuiltModule(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"x\"\nmain = \"x.wasm\"\n"), 0o644))
	_, err := run(t, "dev", dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `names a built module (main = "x.wasm"): use wharf serve`)
}

// TestDevSaysItsDirectoryMoved: moving (or removing) the plugin's
// directory under wharf dev ends its watch; wharf dev says so, and the
// build loaded serves on. Saves in the moved directory, or in the
// directory moved back, were ignored without a word.
func TestDevSaysItsDirectoryMoved(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "app")
	out, err := exec.Command(wharf, "init", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	srv := testutil.StartDev(t, dir, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	require.True(t, srv.WaitLog(`msg="watching for changes: a save to a .go file, go.mod or go.sum rebuilds and reloads"`, time.Minute), srv.Logs())
	moved := filepath.Join(parent, "moved")
	require.NoError(t, os.Rename(dir, moved))
	require.True(t, srv.WaitLog(`msg="the plugin's directory was moved or removed: saves no longer rebuild; the build loaded keeps serving until wharf dev is restarted where the plugin now is" plugin=app dir=`+dir+` serving=1`, 10*time.Second), srv.Logs())
	code, body := getBody(srv.URL + "/")
	assert.Equal(t, 200, code)
	assert.Equal(t, "Hello from app!\n", body)
}

// BenchmarkDevSaveToServed measures, for a new plugin (wharf init), the
// time from saving an edit to the new code answering under wharf dev,
// against the same edit served by restarting wharf serve (build, compile,
// start), alternating in the same run.
func BenchmarkDevSaveToServed(b *testing.B) {
	wharf := testutil.BuildWharf(b)
	plugin := func(name string) string { // one each, so neither sees the other's edits
		dir := filepath.Join(b.TempDir(), name)
		out, err := exec.Command(wharf, "init", "--name", "app", dir).CombinedOutput()
		require.NoError(b, err, "%s", out)
		return dir
	}
	devDir, serveDir := plugin("dev"), plugin("serve")
	source, err := os.ReadFile(filepath.Join(devDir, "main.go"))
	require.NoError(b, err)
	edit := 0
	save := func(dir string) string {
		edit++
		line := fmt.Sprintf(`fmt.Fprintln(w, "Hello, edit %d")`, edit)
		require.NoError(b, os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(string(source), helloLine, line, 1)), 0o644))
		return fmt.Sprintf("Hello, edit %d\n", edit)
	}
	served := func(url, want string) {
		require.Eventually(b, func() bool { _, body := getBody(url + "/"); return body == want }, time.Minute, 5*time.Millisecond)
	}
	dev := testutil.StartDev(b, devDir, "--listen", "127.0.0.1:0")
	var devMs, restartMs []float64
	for round := range 3 * b.N {
		start := time.Now()
		served(dev.URL, save(devDir))
		devMs = append(devMs, float64(time.Since(start).Milliseconds()))
		require.Eventually(b, func() bool { return strings.Count(dev.Logs(), "reloaded, compiled") > round },
			time.Minute, 10*time.Millisecond, "the compiled build lands before the next round")

		start = time.Now()
		want := save(serveDir)
		srv := testutil.StartServe(b, serveDir, "--listen", "127.0.0.1:0", "--data-dir", b.TempDir())
		served(srv.URL, want)
		restartMs = append(restartMs, float64(time.Since(start).Milliseconds()))
		require.NoError(b, srv.Stop(30*time.Second))
	}
	d, r := testutil.Median(devMs), testutil.Median(restartMs)
	b.ReportMetric(d, "dev-save-to-served-p50-ms")
	b.ReportMetric(r, "serve-restart-p50-ms")
	b.ReportMetric(d/r, "ratio")
}

// BenchmarkDevReloadRSS runs wharf dev on a copy of examples/hello, saves
// devReloads edits, each served and compiled before the next, and reports
// the process's resident memory after the first serve, half-way and after
// the last reload, and the ratio last/first: replaced builds that were not
// freed show as a ratio growing with the number of reloads. The Go heap in
// use (from /metrics) after the first serve and the last reload tells Go
// memory from the engines' (wasmtime's is C).
func BenchmarkDevReloadRSS(b *testing.B) {
	const devReloads = 10
	wharf := testutil.BuildWharf(b)
	dir := filepath.Join(b.TempDir(), "hello")
	out, err := exec.Command(wharf, "init", "--name", "hello", dir).CombinedOutput()
	require.NoError(b, err, "%s", out)
	require.NoError(b, os.Remove(filepath.Join(dir, "main_test.go")))
	for _, name := range []string{"main.go", "wharf.toml"} {
		data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "examples", "hello", name))
		require.NoError(b, err)
		require.NoError(b, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	source, err := os.ReadFile(filepath.Join(dir, "main.go"))
	require.NoError(b, err)
	const greeting = `fmt.Fprintln(w, "Hello from wharf!")`
	require.Contains(b, string(source), greeting)

	var first, middle, last, heapFirst, heapLast []float64
	for range b.N {
		data := b.TempDir()
		dev := testutil.StartDev(b, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
		code, body := getBody(dev.URL + "/")
		require.Equal(b, 200, code, body)
		first = append(first, settledRSSMiB(b, dev.Pid()))
		heapFirst = append(heapFirst, goHeapMiB(b, data))
		for i := 1; i <= devReloads; i++ {
			line := fmt.Sprintf(`fmt.Fprintln(w, "Hello, edit %d")`, i)
			require.NoError(b, os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.Replace(string(source), greeting, line, 1)), 0o644))
			want := fmt.Sprintf("Hello, edit %d\n", i)
			require.Eventually(b, func() bool { _, body := getBody(dev.URL + "/"); return body == want },
				time.Minute, 5*time.Millisecond, "edit %d is served", i)
			require.Eventually(b, func() bool { return strings.Count(dev.Logs(), "reloaded, compiled") >= i },
				2*time.Minute, 10*time.Millisecond, "edit %d is compiled", i)
			if i == devReloads/2 {
				middle = append(middle, settledRSSMiB(b, dev.Pid()))
			}
		}
		last = append(last, settledRSSMiB(b, dev.Pid()))
		heapLast = append(heapLast, goHeapMiB(b, data))
		require.NoError(b, dev.Stop(30*time.Second))
	}
	f, m, l := testutil.Median(first), testutil.Median(middle), testutil.Median(last)
	b.ReportMetric(f, "rss-first-serve-MiB")
	b.ReportMetric(m, fmt.Sprintf("rss-after-%d-reloads-MiB", devReloads/2))
	b.ReportMetric(l, fmt.Sprintf("rss-after-%d-reloads-MiB", devReloads))
	b.ReportMetric(testutil.Median(heapFirst), "go-heap-first-serve-MiB")
	b.ReportMetric(testutil.Median(heapLast), fmt.Sprintf("go-heap-after-%d-reloads-MiB", devReloads))
	b.ReportMetric(l/f, "ratio")
}

// goHeapMiB is the Go heap in use of the wharf serving dataDir, from its
// metrics.
func goHeapMiB(b *testing.B, dataDir string) float64 {
	b.Helper()
	metrics, err := admin.NewClient(dataDir).Metrics(context.Background())
	require.NoError(b, err)
	var bytes float64
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			_, err := fmt.Sscanf(rest, "%g", &bytes)
			require.NoError(b, err)
		}
	}
	require.NotZero(b, bytes, "go_memstats_heap_inuse_bytes in /metrics")
	return bytes / (1 << 20)
}

// settledRSSMiB is the resident memory of process pid once the replaced
// builds had time to drain and the runtime to return freed memory (wharf
// dev frees it after each compile): the lowest of a few readings over two
// seconds.
func settledRSSMiB(b *testing.B, pid int) float64 {
	b.Helper()
	lowest := math.Inf(1)
	for range 5 {
		time.Sleep(400 * time.Millisecond)
		lowest = min(lowest, rssMiB(b, pid))
	}
	return lowest
}

// rssMiB is the resident memory of process pid now.
func rssMiB(b *testing.B, pid int) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(b, err)
	var kib float64
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kib)
			require.NoError(b, err)
		}
	}
	return kib / 1024
}

// newApp makes a plugin with wharf init and returns its directory, and
// its main.go's path and text.
func newApp(t *testing.T, wharf string) (dir, mainGo string, source []byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "app")
	out, err := exec.Command(wharf, "init", dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mainGo = filepath.Join(dir, "main.go")
	source, err = os.ReadFile(mainGo)
	require.NoError(t, err)
	return dir, mainGo, source
}

// TestDevKillsAReplacedCompile: wharf dev compiles a new build in a
// process of its own, which the next save kills (an engine cannot stop a
// compile half-way, and two would share the CPU), as does a kill -9 of
// wharf dev itself. A save whose build is refused leaves the build it
// replaced serving, and that build's killed compile starts again: it ends
// up compiled, not interpreted for good.
func TestDevKillsAReplacedCompile(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir, mainGo, source := newApp(t, wharf)
	srv := testutil.StartDev(t, dir, "--listen", "127.0.0.1:0")
	compiles := func() []string { return testutil.Processes(dir, compileCommand) }
	save := func(i int) {
		t.Helper()
		edited := strings.Replace(string(source), `"Hello from app!"`, fmt.Sprintf(`"Hello, edit %d"`, i), 1)
		require.NotEqual(t, string(source), edited)
		require.NoError(t, os.WriteFile(mainGo, []byte(edited), 0o644))
	}
	interpreted := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Count(srv.Logs(), "reloaded, interpreted until compiled") >= n },
			2*time.Minute, 10*time.Millisecond, "edit %d is served interpreted", n)
	}

	save(1)
	interpreted(1)
	require.Eventually(t, func() bool { return len(compiles()) == 1 }, 5*time.Second, 10*time.Millisecond, "edit 1 compiles apart")
	save(2)
	require.Eventually(t, func() bool { return len(compiles()) == 0 }, 5*time.Second, 10*time.Millisecond,
		"edit 2's rebuild killed edit 1's compile")
	interpreted(2)
	require.Eventually(t, func() bool { return len(compiles()) == 1 }, 5*time.Second, 10*time.Millisecond, "edit 2 compiles apart")
	// Edit 3 builds, but uses a binding wharf.toml lacks: refused at load.
	refused := strings.Replace(string(source), `notes := sdk.GetNamespace("NOTES")`,
		`notes := sdk.GetNamespace("NOTES")
	sdk.GetNamespace("MISSING")`, 1)
	require.NotEqual(t, string(source), refused)
	require.NoError(t, os.WriteFile(mainGo, []byte(refused), 0o644))
	require.True(t, srv.WaitLog("reload failed; the previous build keeps serving", 2*time.Minute), "edit 3 is refused")
	assert.Contains(t, srv.Logs(), `the module uses Durable Object binding \"MISSING\"`)
	assert.NotContains(t, srv.Logs(), `output=`, "the build said nothing: no empty output")
	assert.Regexp(t, `msg="reload failed; the previous build keeps serving" plugin=app build=4 serving=3 `, srv.Logs(),
		"builds are numbered from the one wharf dev started with")
	require.True(t, srv.WaitLog("reloaded, compiled", 2*time.Minute), "edit 2, still served, is compiled after all")
	assert.Regexp(t, `msg="reloaded, compiled" plugin=app build=3 `, srv.Logs(), "the log says which build was compiled")
	_, body := getBody(srv.URL + "/")
	assert.Equal(t, "Hello, edit 2\n", body)
	assert.NotContains(t, srv.Logs(), "compiling the new build failed")
	require.Eventually(t, func() bool { return len(compiles()) == 0 }, 5*time.Second, 10*time.Millisecond, "the compile ended")

	save(4)
	interpreted(3)
	require.Eventually(t, func() bool { return len(compiles()) == 1 }, 5*time.Second, 10*time.Millisecond, "edit 4 compiles apart")
	srv.Kill()
	require.Eventually(t, func() bool { return len(compiles()) == 0 }, 5*time.Second, 10*time.Millisecond,
		"a compile dies with the wharf dev that started it")
	assert.NotContains(t, srv.Logs(), "compiling the new build failed")
}

// TestDevStoppedDuringARebuildLeavesNothing: wharf dev stopped (SIGTERM,
// as Ctrl-C) while go build compiles a save's rebuild stops it, waits for
// the build to end and remove its directory (go build's work directory
// in it) next to the module, and does not take the build it stopped for
// a failed one.
func TestDevStoppedDuringARebuildLeavesNothing(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir, mainGo, source := newApp(t, wharf)
	// Once hold exists, go build's compile of package main waits (up to a
	// minute) for the test to stop wharf dev.
	gate := t.TempDir()
	toolexec := filepath.Join(gate, "toolexec")
	require.NoError(t, os.WriteFile(toolexec, []byte(`#!/bin/sh
case " $* " in *" -p main "*)
	if [ -e `+gate+`/hold ]; then
		: > `+gate+`/started
		i=0
		while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
	fi
esac
exec "$@"
`), 0o755))
	t.Setenv("GOFLAGS", os.Getenv("GOFLAGS")+" -toolexec="+toolexec)
	srv := testutil.StartDev(t, dir, "--listen", "127.0.0.1:0")
	require.True(t, srv.WaitLog("watching for changes", time.Minute), srv.Logs())

	require.NoError(t, os.WriteFile(filepath.Join(gate, "hold"), nil, 0o644))
	edited := strings.Replace(string(source), `"Hello from app!"`, `"Hello, edit 1"`, 1)
	require.NotEqual(t, string(source), edited)
	require.NoError(t, os.WriteFile(mainGo, []byte(edited), 0o644))
	require.Eventually(t, func() bool { _, err := os.Stat(filepath.Join(gate, "started")); return err == nil },
		2*time.Minute, 10*time.Millisecond, "the rebuild never compiled package main")
	require.NoError(t, srv.Stop(30*time.Second), srv.Logs())

	build := filepath.Join(dir, manifest.DefaultStateDir, "build")
	var left []string
	require.NoError(t, filepath.WalkDir(build, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".tmp") {
			left = append(left, path)
		}
		return err
	}))
	assert.Empty(t, left, "what the stopped rebuild wrote")
	assert.NoDirExists(t, filepath.Join(build, "next"), "the unserved build's directory")
	assert.Empty(t, testutil.Processes(toolexec), "the stopped rebuild's compile")
	assert.NotContains(t, srv.Logs(), "reload failed", "the rebuild stopped at shutdown was taken for a failed one")
}

// TestDevRemovesTheBuildAKilledDevLeft: the directory of a build not
// served yet, which a wharf dev killed with SIGKILL leaves next to the
// module, is removed by the next wharf dev.
func TestDevRemovesTheBuildAKilledDevLeft(t *testing.T) {
	wharf := testutil.BuildWharf(t)
	dir, _, _ := newApp(t, wharf)
	next := filepath.Join(dir, manifest.DefaultStateDir, "build", "next")
	require.NoError(t, os.MkdirAll(next, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(next, "app.wasm"), []byte("half a build"), 0o644))
	srv := testutil.StartDev(t, dir, "--listen", "127.0.0.1:0")
	require.True(t, srv.WaitLog("watching for changes", time.Minute), srv.Logs())
	assert.NoDirExists(t, next)
}
