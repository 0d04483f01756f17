package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/internal/testimages"
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
	assert.Empty(t, containerd.MountsUnder(data), "mounts left under the data directory")
	assert.Empty(t, testutil.Processes("buildkitd", data), "buildkitd still running")
}

// TestServeRecoversFromAKillDuringABuild kills wharf serve (SIGKILL)
// while its build runs a container: buildkitd dies with it, and the next
// wharf serve on the data directory starts, removes the build container
// left running, builds and serves; a clean stop then leaves nothing in
// either of wharf's containerd namespaces or on the host.
func TestServeRecoversFromAKillDuringABuild(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	plugin := builtPlugin(t, base, "ARG BASE\nFROM ${BASE}\nRUN sleep 600\n")
	data := t.TempDir()

	srv := testutil.LaunchServe(t, plugin, "--listen", "127.0.0.1:0", "--data-dir", data)
	address := containerd.EmbeddedAddress(data)
	require.Eventually(t, func() bool {
		c, err := containerd.Connect(context.Background(), address)
		if err != nil {
			return false
		}
		defer c.Close()
		left, _ := containerd.Leftovers(context.Background(), c, address, data)
		return slices.ContainsFunc(left, func(l string) bool { return strings.HasPrefix(l, "build task ") })
	}, 3*time.Minute, 200*time.Millisecond, "the slow build's container never ran:\n%s", srv.Logs())
	srv.Kill()
	assert.Eventually(t, func() bool { return len(testutil.Processes("buildkitd", data)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"buildkitd outlived the wharf that started it")

	require.NoError(t, os.WriteFile(filepath.Join(plugin, "container", "Dockerfile"),
		[]byte("ARG BASE\nFROM ${BASE}\nRUN echo built > /built.txt\n"), 0o644))
	srv, _ = servedBuild(t, plugin, data, true)
	stopped(t, srv, data)

	b, err := containerd.OpenBackend(context.Background(), data, "", slog.Default())
	require.NoError(t, err)
	left, err := containerd.Leftovers(context.Background(), b.Client, b.Address, data)
	require.NoError(t, err)
	assert.Empty(t, left)
	require.NoError(t, b.Close())
	assert.Empty(t, containerd.HostLeftovers(data))
}

// TestAKilledBuildWhoseDataDirIsRemovedIsSwept: wharf serve killed
// (SIGKILL) while a RUN step runs, its data directory then removed (rm -rf,
// which the step's mounts stop half-way): no next run of that directory
// comes, and the next wharf of the host sweeps what the build left (see
// sweptOnceRemoved). serve built before it claimed its network scope, so
// no lock file named the directory and all of it stayed for good.
func TestAKilledBuildWhoseDataDirIsRemovedIsSwept(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	// A sleep no other test runs: the step is told by its command line,
	// and the host package's tests run sleep 600-602 in their containers.
	plugin := builtPlugin(t, base, "ARG BASE\nFROM ${BASE}\nRUN sleep 7201\n")
	data := t.TempDir()

	srv := testutil.LaunchServe(t, plugin, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.Eventually(t, func() bool { return len(testutil.Processes("sleep 7201")) > 0 }, 3*time.Minute, 200*time.Millisecond,
		"the slow build's step never ran:\n%s", srv.Logs())
	killed := leftOnTheHost(t, data)
	srv.Kill()
	sweptOnceRemoved(t, killed, "sleep 7201")
}

// TestAKilledImagesBuildWhoseDataDirIsRemovedIsSwept: as
// TestAKilledBuildWhoseDataDirIsRemovedIsSwept, for a `wharf images
// build` killed while its RUN step runs: it claimed no network scope at
// all, so what it left stayed for good.
func TestAKilledImagesBuildWhoseDataDirIsRemovedIsSwept(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	dir, data := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\nRUN sleep 7202\n"), 0o644))
	cmd := exec.Command(testutil.BuildWharf(t), "images", "build", dir, "--tag", "wharf.test/killed:1", "--build-arg", "BASE="+base, "--data-dir", data)
	var out testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return len(testutil.Processes("sleep 7202")) > 0 }, 3*time.Minute, 200*time.Millisecond,
		"the slow build's step never ran:\n%s", &out)
	killed := leftOnTheHost(t, data)
	require.NoError(t, cmd.Process.Kill())
	require.Error(t, cmd.Wait())
	sweptOnceRemoved(t, killed, "sleep 7202")
}

// sweptOnceRemoved removes the data directory of the wharf killed while
// it built, whose RUN step runs the command step (rm -rf, which the
// step's mounts stop half-way), and checks that the next wharf of the host
// sweeps what the build left: the step's processes and shim, its mounts
// (so the directory's removal completes), cgroups and the build's nft
// table. step is told by its command line alone: no other test may run
// it (the host package's run sleep 600 to 602 in their containers).
func sweptOnceRemoved(t *testing.T, killed *killedWharf, step string) {
	t.Helper()
	require.Eventually(t, func() bool { return len(testutil.Processes("containerd", "--config", killed.data)) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the killed wharf's containerd goes with it")
	os.RemoveAll(killed.data) // EBUSY at the step's mounts
	require.NotEmpty(t, testutil.Processes(step), "the step outlives its wharf")

	// (Another test process's wharf may sweep it first.)
	b, err := containerd.OpenBackend(context.Background(), t.TempDir(), "", slog.Default())
	require.NoError(t, err)
	m, err := containerd.NewManager(b, containerd.ManagerOptions{})
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return len(testutil.Processes(step)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the step is stopped")
	assert.NoError(t, os.RemoveAll(killed.data), "nothing mounted stops its removal now")
	assert.Empty(t, containerd.HostLeftovers(killed.data), "nothing of the build is left")
	assert.Empty(t, killed.left(), "nothing of the build is left")
	require.NoError(t, m.Close(context.Background()))
	require.NoError(t, b.Close())
}

// builtPlugin writes a plugin running the webapp example's module whose
// class's image is a directory holding dockerfile (and note.txt), built
// with the build argument BASE=base, and returns its directory.
func builtPlugin(t *testing.T, base, dockerfile string) string {
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
		"container/Dockerfile": dockerfile,
		"container/note.txt":   "v1\n",
	}
	for name, body := range files {
		require.NoError(t, os.MkdirAll(filepath.Join(plugin, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(plugin, name), []byte(body), 0o644))
	}
	return plugin
}

// TestServeBuildsDockerfileImages runs the webapp example's module with its
// class's image given as a directory holding a Dockerfile (FROM a base on a
// loopback registry, named by a build argument): wharf serve builds it,
// reuses it while the context is unchanged, rebuilds it when it changes;
// images rm refuses it while served; prune removes the stale one;
// `wharf images build` builds by hand.
func TestServeBuildsDockerfileImages(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	plugin := builtPlugin(t, base, "ARG BASE\nFROM ${BASE}\nRUN echo built > /built.txt\nCOPY note.txt /note.txt\n")
	data := testutil.CompiledDataDir(t)
	// The CLI reaches the containerd of a running wharf serve on its own
	// (the data directory itself is locked by serve).
	shared := []string{"--data-dir", data}

	srv, first := servedBuild(t, plugin, data, true)
	assert.Regexp(t, `^built-app:[0-9a-f]{12}$`, first)
	// A relative --containerd-address works (gRPC refused it as an
	// authority).
	cwd, err := os.Getwd()
	require.NoError(t, err)
	relative, err := filepath.Rel(cwd, containerd.EmbeddedAddress(data))
	require.NoError(t, err)
	_, err = run(t, "images", "rm", first, "--data-dir", data, "--containerd-address", relative)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "image in use: "+first+" is used by the loaded plugin built; stop it first or pass --force")
	out, err := run(t, "images", "ls", "--data-dir", data)
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(first)+`\s+sha256:[0-9a-f]{64}\s+[0-9.]+ MB\s+built$`, out, "ls names the plugin that uses it")
	// The build engine's state belongs to the running wharf: a build
	// through its containerd is refused.
	_, err = run(t, append([]string{"images", "build", filepath.Join(plugin, "container"), "--tag", "wharf.test/meanwhile:1",
		"--build-arg", "BASE=" + base}, shared...)...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "images build cannot share the data directory's build engine with the wharf that owns it: "+
		"the data directory "+data+" is in use by another wharf (pid ")
	stillServes(t, srv)
	stopped(t, srv, data)

	srv, _ = servedBuild(t, plugin, data, false)
	stopped(t, srv, data)

	require.NoError(t, os.WriteFile(filepath.Join(plugin, "container", "note.txt"), []byte("v2\n"), 0o644))
	srv, second := servedBuild(t, plugin, data, true)
	assert.NotEqual(t, first, second, "a changed context gets a new tag")
	out, err = run(t, append([]string{"images", "prune"}, shared...)...)
	require.NoError(t, err)
	assert.Contains(t, out, "removed "+first)
	assert.NotContains(t, out, "removed "+second, "the served image stays")
	assert.Contains(t, out, "build cache: kept: the data directory "+data+" is in use by another wharf (pid ",
		"the running wharf's build engine state is left alone")
	assert.Contains(t, out, "which may be building; run `wharf images prune` again once it stopped to empty the build cache\n",
		"prune says how to empty the cache")
	assert.NotContains(t, out, "choose another --data-dir", "pruning another data directory would not empty this one's cache")
	assert.DirExists(t, filepath.Join(build.Dir(data), "root"))
	stillServes(t, srv)
	stopped(t, srv, data)
	out, err = run(t, "images", "prune", "--data-dir", data)
	require.NoError(t, err)
	assert.Regexp(t, `build cache: freed \d+\.\d MB`, out, "once it stopped, prune empties the build cache")

	out, err = run(t, "images", "build", filepath.Join(plugin, "container"), "--tag", "wharf.test/by-hand:1",
		"--build-arg", "BASE="+base, "--data-dir", data)
	require.NoError(t, err, out)
	assert.Contains(t, out, "built wharf.test/by-hand:1")
	out, err = run(t, "images", "build", filepath.Join(plugin, "container"), "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--tag is required")
	_, err = run(t, "images", "build", filepath.Join(plugin, "container"), "--tag", "Not An/Image", "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--tag "Not An/Image" is not an image name (like myapp:1 or registry.example/team/app:v2): `)

	// -f names a Dockerfile apart from the context, as docker build's.
	other := filepath.Join(t.TempDir(), "other.Dockerfile")
	require.NoError(t, os.WriteFile(other, []byte("ARG BASE\nFROM ${BASE}\nCOPY note.txt /other-note.txt\n"), 0o644))
	out, err = run(t, "images", "build", filepath.Join(plugin, "container"), "-f", other, "--tag", "wharf.test/other:1",
		"--build-arg", "BASE="+base, "--data-dir", data)
	require.NoError(t, err, out)
	assert.Contains(t, out, "built wharf.test/other:1")
	_, err = run(t, "images", "build", filepath.Join(plugin, "container"), "-f", other+".missing", "--tag", "wharf.test/other:1", "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stat "+other+".missing: no such file or directory")
	_, err = run(t, "images", "build", other, "-f", other, "--tag", "wharf.test/other:1", "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), other+" is not a directory: with a Dockerfile given, name the build context")
	assert.Empty(t, containerd.MountsUnder(data))
}

// stillServes checks the running wharf serve still answers.
func stillServes(t *testing.T, srv *testutil.Serve) {
	resp, err := http.Get(srv.URL + "/s/alice/index.html")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

// TestImagesBuildInterruptedCleansUp: SIGINT (Ctrl-C) or SIGTERM during a
// RUN step stops `wharf images build`, which stops the step and removes
// what it had before it exits. Killed outright by the signal, wharf left
// the step's shim, its process, mounts and cgroups until the next start on
// the data directory.
func TestImagesBuildInterruptedCleansUp(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\nRUN echo step-$((1+1)) && sleep 317\n"), 0o644))
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		data := t.TempDir()
		t.Cleanup(func() { run(t, "images", "prune", "--data-dir", data) }) // what a failure left
		cmd := exec.Command(testutil.BuildWharf(t), "images", "build", dir, "--tag", "wharf.test/interrupted:1",
			"--build-arg", "BASE="+base, "--data-dir", data)
		var out testutil.LogBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		// Its echo printed: the step runs, in a cgroup of the data directory.
		// (Signalled earlier, while containerd still creates the step's
		// task, wharf can stop containerd while it is still removing the
		// task's bundle, left as .<id> until the next start removes it.)
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "step-2") }, time.Minute, 50*time.Millisecond)
		require.True(t, slices.ContainsFunc(containerd.HostLeftovers(data), func(s string) bool { return strings.HasSuffix(s, "-build") }),
			"the step's cgroup")
		require.NoError(t, cmd.Process.Signal(sig))
		signaled := time.Now()
		require.Error(t, cmd.Wait(), "a build cut short fails")
		assert.Less(t, time.Since(signaled), 15*time.Second)
		assert.Contains(t, out.String(), "\nwharf: stopped: "+sig.String()+" signal received\n", "%v: wharf stopped the build, not the signal wharf", sig)
		assert.Empty(t, containerd.HostLeftovers(data), "%v", sig)
		assert.Empty(t, testutil.Processes("containerd-shim", data), "%v", sig)
		assert.Empty(t, testutil.Processes("sleep", "317"), "%v", sig)
	}
}

// TestImagesInterruptedWhileStartingSaysSo: a signal while wharf images
// starts its containerd makes the command say it was stopped, not that
// containerd failed to start ("containerd did not start (see
// .../containerd.log): context canceled"), and leaves nothing running.
// The containerd on PATH never answers, so the signal always comes while
// wharf waits for it; then the real one serves the same data directory.
func TestImagesInterruptedWhileStartingSaysSo(t *testing.T) {
	data, fake := t.TempDir(), t.TempDir()
	script := "#!/bin/sh\nsleep 60 & trap 'kill $!; exit 1' TERM\nwait\n"
	require.NoError(t, os.WriteFile(filepath.Join(fake, "containerd"), []byte(script), 0o755))
	cmd := exec.Command(testutil.BuildWharf(t), "images", "ls", "--data-dir", data)
	cmd.Env = append(os.Environ(), "PATH="+fake+":"+os.Getenv("PATH"))
	var out testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool { return len(testutil.Processes(filepath.Join(fake, "containerd"), data)) > 0 }, time.Minute, time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.Error(t, cmd.Wait(), out.String())
	assert.Contains(t, out.String(), "wharf: stopped: terminated signal received\n")
	assert.NotContains(t, out.String(), "did not start")
	assert.Empty(t, testutil.Processes("containerd", data))
	_, err := run(t, "images", "ls", "--data-dir", data) // the lock is free and the data directory works
	assert.NoError(t, err)
}

// TestDevSaysAnImagesContextChanged: under wharf dev, an edit to the
// build context of a class's image (its Dockerfile, a file it copies) is
// said to need a restart, once per change, as an edit to wharf.toml is:
// the image is built at start only, and the containers went on running
// the old image without a word. The loaded plugin keeps serving.
func TestDevSaysAnImagesContextChanged(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	plugin := builtPlugin(t, base, "ARG BASE\nFROM ${BASE}\nCOPY note.txt /note.txt\n")
	data := testutil.CompiledDataDir(t)
	srv := testutil.StartDev(t, plugin, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.True(t, srv.WaitLog("watching for changes", time.Minute), srv.Logs())
	stillServes(t, srv)
	const said = `msg="a container image's build context changed: restart wharf dev to rebuild it (its containers run the image built at start)" plugin=built class=App context=`
	require.NoError(t, os.WriteFile(filepath.Join(plugin, "container", "note.txt"), []byte("v2\n"), 0o644))
	require.True(t, srv.WaitLog(said+filepath.Join(plugin, "container"), 10*time.Second), srv.Logs())
	// The same content written again changes nothing the image holds.
	require.NoError(t, os.WriteFile(filepath.Join(plugin, "container", "note.txt"), []byte("v2\n"), 0o644))
	time.Sleep(time.Second)
	assert.Equal(t, 1, strings.Count(srv.Logs(), said), srv.Logs())
	stillServes(t, srv)
	stopped(t, srv, data)
}

// TestServeLogsJSONWhileBuilding: with --log-format json, every line
// wharf serve writes on stderr is a JSON record, while it builds a class's
// image too: the build's progress is logged line by line as "image build"
// records. It was written there as docker's plain text, between them.
func TestServeLogsJSONWhileBuilding(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	plugin := builtPlugin(t, base, "ARG BASE\nFROM ${BASE}\nRUN echo built-for-json > /built.txt\n")
	data := testutil.CompiledDataDir(t)
	srv := testutil.LaunchServe(t, plugin, "--listen", "127.0.0.1:0", "--data-dir", data, "--log-format", "json")
	require.True(t, srv.WaitLog(`"msg":"serving"`, 5*time.Minute), srv.Logs())
	stopped(t, srv, data)
	var steps int
	for line := range strings.Lines(srv.Logs()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "a line that is not JSON: %q", line)
		if rec["msg"] == "image build" && strings.Contains(fmt.Sprint(rec["line"]), "RUN echo built-for-json") {
			steps++
			assert.Equal(t, "built", rec["plugin"])
		}
	}
	assert.NotZero(t, steps, "the build's progress is in the log:\n%s", srv.Logs())
}

// TestImagesBuildArgFromTheEnvironment: --build-arg KEY, with no "=",
// takes the environment variable KEY's value, and leaves the argument
// unset (the Dockerfile's default) when there is no such variable, as
// docker build does. It was refused: "--build-arg \"KEY\": want KEY=VALUE".
func TestImagesBuildArgFromTheEnvironment(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("ARG BASE\nFROM ${BASE}\n"+
		"ARG FROM_ENV=its-default\nARG NOT_IN_ENV=its-default\n"+
		"RUN test \"$FROM_ENV\" = from-the-environment && test \"$NOT_IN_ENV\" = its-default\n"), 0o644))
	t.Setenv("FROM_ENV", "from-the-environment")
	t.Setenv("NOT_IN_ENV", "")
	os.Unsetenv("NOT_IN_ENV")
	data := t.TempDir()
	t.Cleanup(func() { run(t, "images", "prune", "--data-dir", data) })
	out, err := run(t, "images", "build", dir, "--tag", "wharf.test/env-args:1", "--build-arg", "BASE="+base,
		"--build-arg", "FROM_ENV", "--build-arg", "NOT_IN_ENV", "--data-dir", data)
	require.NoError(t, err, out)
	assert.Contains(t, out, "built wharf.test/env-args:1")
	_, err = run(t, "images", "build", dir, "--tag", "wharf.test/env-args:1", "--build-arg", "=x", "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `--build-arg "=x": want KEY=VALUE, or KEY for the value of the environment variable KEY`)
}
