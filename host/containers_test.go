package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

const containersManifest = objectsManifest + `[[durable_objects.bindings]]
name = "BOX"
class_name = "Box"
[[containers]]
class_name = "Box"
image = "wharf.test/busybox:latest"
instance_type = "basic"
`

// withRuncBox adds class RuncBox (binding RUNCBOX): Box's methods with
// init = false.
const withRuncBox = containersManifest + `[[durable_objects.bindings]]
name = "RUNCBOX"
class_name = "RuncBox"
[[containers]]
class_name = "RuncBox"
image = "wharf.test/busybox:latest"
instance_type = "basic"
init = false
`

// TestContainersBackendLifecycle loads a manifest with [[containers]]: a
// missing image is refused with what to do (for wharf's test image, how to
// make it); with the image present the host
// starts its own containerd and stops it on Close, leaving no process.
func TestContainersBackendLifecycle(t *testing.T) {
	data := t.TempDir()
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	m, err := parseTestManifest([]byte(containersManifest))
	require.NoError(t, err)
	m.Path = "wharf.toml"
	cfg := Config{Manifest: m, WasmPath: wasm, DataDir: data, CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()}

	_, err = newWorker(context.Background(), cfg, hostbackend.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `wharf.toml: containers[0] (class Box): image "wharf.test/busybox:latest" is not in wharf's containerd: import it with `+"`wharf images import` or `wharf images pull`, with --data-dir "+data)
	// No registry serves wharf's test image: the error says how to make it.
	assert.Contains(t, err.Error(), "; it is wharf's test image, which no registry serves: `go run github.com/wharfhq/wharf/internal/testimages/mkimage DIR` (in wharf's checkout, or a plugin that wharf init made) writes DIR/busybox.tar to import")
	assert.Empty(t, testutil.Processes("containerd --config", data), "the refused load stopped its containerd")

	fixture.ImportBusybox(t, data)

	w, err := newWorker(context.Background(), cfg, hostbackend.Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, testutil.Processes("containerd --config", data), "the host runs its own containerd")
	require.NoError(t, w.Close(context.Background()))
	assert.Empty(t, testutil.Processes("containerd --config", data), "Close stopped containerd")
}

// TestContainersNeedTheirService: a manifest with [[containers]] loaded
// without the container service (a caller that forgot
// hostbackend.Open) is refused, saying what is missing.
func TestContainersNeedTheirService(t *testing.T) {
	m, err := parseTestManifest([]byte(containersManifest))
	require.NoError(t, err)
	m.Path = "wharf.toml"
	_, err = NewWorker(context.Background(), Config{Manifest: m, WasmPath: testutil.BuildGuest(t, "testdata/guests/objects"),
		DataDir: t.TempDir(), CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()})
	assert.EqualError(t, err, "wharf.toml: the manifest declares [[containers]] and Config.Containers is nil (open it with package containerd/hostbackend)")
}

func TestObjectDrivesItsContainer(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", withRuncBox, data)

	assert.Equal(t, "false", w.mustCall(t, "BOX", "b", "Running", nil))
	assert.Equal(t, "true", w.mustCall(t, "BOX", "b", "NotRunningError", nil))
	code, body := w.call(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"true"}})
	assert.Equal(t, 500, code)
	assert.Equal(t, "call Exec: the container is not running", strings.TrimSpace(body), "said once")

	w.mustCall(t, "BOX", "b", "Start", []string{"sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"})
	assert.Equal(t, "true", w.mustCall(t, "BOX", "b", "Running", nil))
	code, body = w.call(t, "BOX", "b", "Start", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the container is already running")
	assert.Equal(t, `["empty command: invalid argument","combined without pipe: invalid argument","bad mode: invalid argument","missing binary: the process could not be started","NUL in an argument: invalid argument","relative cwd: invalid argument","signal 0: signal out of range"]`,
		w.mustCall(t, "BOX", "b", "Errors", nil))
	code, body = w.call(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"/bin/nope"}})
	assert.Equal(t, 500, code)
	assert.Equal(t, "call Exec: the process could not be started: exec [/bin/nope]: executable file not found: /bin/nope",
		strings.TrimSpace(body), "said once")

	exec := func(args map[string]any) map[string]any {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "b", "Exec", args)), &r))
		return r
	}
	r := exec(map[string]any{"Cmd": []string{"sh", "-c", "echo check failed >&2; exit 7"}})
	assert.Equal(t, map[string]any{"Stdout": "", "Stderr": "check failed\n", "Code": 7.0}, r)
	r = exec(map[string]any{"Cmd": []string{"sh", "-c", "echo out; echo err >&2"}, "Stdout": "ignore"})
	assert.Equal(t, "", r["Stdout"], "ignored stdout is zero bytes")
	assert.Equal(t, "err\n", r["Stderr"])
	r = exec(map[string]any{"Cmd": []string{"sh", "-c", "echo out; echo err >&2"}, "Stdout": "ignore", "Stderr": "ignore"})
	assert.Equal(t, "", r["Stdout"].(string)+r["Stderr"].(string))
	r = exec(map[string]any{"Cmd": []string{"sh", "-c", "echo 1; echo 2 >&2; echo 3; echo 4 >&2; echo 5"}, "Stderr": "combined"})
	assert.Equal(t, "1\n2\n3\n4\n5\n", r["Stdout"], "both streams in Stdout, in order (one pipe)")
	assert.Equal(t, "", r["Stderr"])
	r = exec(map[string]any{"Cmd": []string{"cat", "/proc/1/cmdline"}})
	assert.Equal(t, "/.wharf/init", strings.Split(r["Stdout"].(string), "\x00")[0], "wharf-init is PID 1")
	r = exec(map[string]any{"Cmd": []string{"cat"}, "Stdin": "piped in"})
	assert.Equal(t, "piped in", r["Stdout"])
	r = exec(map[string]any{"Cmd": []string{"cat"}})
	assert.Equal(t, "", r["Stdout"], "omitted stdin is an immediate EOF")
	r = exec(map[string]any{"Cmd": []string{"sh", "-c", "pwd; id -u; echo $FROM_START $EXTRA $IMAGE_VAR"}, "Cwd": "/tmp", "User": "app", "Env": map[string]string{"EXTRA": "x"}})
	assert.Equal(t, "/tmp\n1000\nyes x from-image\n", r["Stdout"])
	r = exec(map[string]any{"Cmd": []string{"sh", "-c", "seq 1 100000 & seq 1 100000 >&2; wait"}})
	assert.Equal(t, 100000, strings.Count(r["Stdout"].(string), "\n"))
	assert.Equal(t, 100000, strings.Count(r["Stderr"].(string), "\n"))

	assert.Equal(t, `"\"through the pipe\\n\" cat=0 output-after-read=wharf: Output can be called once, and not after reading Stdout or Stderr killed=143 bad-kill=wharf: signal out of range: signal must be from 1 to 64, got 65"`,
		w.mustCall(t, "BOX", "b", "PipeAndKill", nil))
	assert.Equal(t, "5", w.mustCall(t, "BOX", "b", "ExecWait", []string{"sh", "-c", "echo unread output; exit 5"}),
		"Wait returns even when the output is never read")

	code, body = w.call(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"id"}, "User": "ghost"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `user "ghost" does not exist`)
	code, body = w.call(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"true"}, "Stderr": "sideways"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `stderr must be "pipe", "ignore" or "combined", got "sideways"`)
	code, body = w.call(t, "BOX", "b", "Signal", 65)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "signal must be from 1 to 64, got 65")

	w.mustCall(t, "BOX", "b", "Signal", 15)
	time.Sleep(300 * time.Millisecond) // a monitor after the exit still gets the code
	assert.Equal(t, `"the container exited with code 3"`, w.mustCall(t, "BOX", "b", "Monitor", nil))
	assert.Equal(t, "false", w.mustCall(t, "BOX", "b", "Running", nil))
	assert.Regexp(t, `container:Box#\S+ error" .*exit_code=3 reason="exited unexpectedly, [0-9]+m?s after SIGTERM from the object"`, w.logs.String(),
		"an exit code of its own after the object's SIGTERM is a failure, not the object's doing")

	// Any signal the object sends is its doing when the process dies of it.
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	// The signal goes to sleep, not to an init still starting it.
	w.mustCall(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"sh", "-c", "until pidof sleep; do sleep 0.05; done"}})
	w.mustCall(t, "BOX", "b", "Signal", 1)
	require.Eventually(t, func() bool { return w.mustCall(t, "BOX", "b", "Running", nil) == "false" }, 10*time.Second, 20*time.Millisecond)
	// The stop is logged by a goroutine that wakes when the container
	// exits, as Running turns false: it may come just after.
	stopped := regexp.MustCompile(`container:Box#\S+ stop" .*exit_code=129 reason="SIGHUP from the object"`)
	assert.Eventually(t, func() bool { return stopped.MatchString(w.logs.String()) }, 5*time.Second, 10*time.Millisecond, "the stop is logged")

	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	w.mustCall(t, "BOX", "b", "Destroy", "shutting down on purpose")
	assert.Equal(t, "false", w.mustCall(t, "BOX", "b", "Running", nil))
	assert.Contains(t, w.mustCall(t, "BOX", "b", "Monitor", nil), "the container is not running", "a destroyed container is gone")

	// Ports: HTTP fetch, a raw connection, and a port nobody listens on.
	assert.Equal(t, `"not running: the container is not running: waiting for port 8080"`,
		w.mustCall(t, "BOX", "web", "WaitPort", map[string]any{"Port": 8080, "Timeout": "1s"}))
	w.mustCall(t, "BOX", "web", "Start", []string{"sh", "-c", "sleep 0.5; exec httpd -f -p 8080 -h /etc"})
	assert.Equal(t, `"ready"`, w.mustCall(t, "BOX", "web", "WaitPort", map[string]any{"Port": 8080, "Timeout": "10s"}),
		"WaitReady waits for the server that starts late")
	assert.Contains(t, w.mustCall(t, "BOX", "web", "Fetch", map[string]any{"Port": 8080, "Path": "/passwd"}), "200 root:x:0:0",
		"a fetch right after WaitReady is answered")
	assert.Equal(t, `"timeout: waiting for port 9999: context deadline exceeded"`,
		w.mustCall(t, "BOX", "web", "WaitPort", map[string]any{"Port": 9999, "Timeout": "300ms"}))
	raw := w.mustCall(t, "BOX", "web", "Raw", 8080)
	assert.Contains(t, raw, " 200 OK")
	assert.Contains(t, raw, "app:x:1000")
	assert.Contains(t, w.mustCall(t, "BOX", "web", "Raw", 9999), "refused: nothing listens on the container port: port 9999")
	code, body = w.call(t, "BOX", "web", "Fetch", map[string]any{"Port": 9999, "Path": "/x"})
	assert.Equal(t, 500, code)
	assert.Regexp(t, `Get .http://container/x.: nothing listens on the container port: [^"]*connection refused`, body,
		"a port fetch names its request once, as http.Client does")
	code, body = w.call(t, "BOX", "web", "Raw", 70000)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "port must be from 1 to 65535, got 70000")

	// init = false: the entrypoint is PID 1 and exec goes through runc.
	w.mustCall(t, "RUNCBOX", "r", "Start", []string{"sleep", "3600"})
	code, body = w.call(t, "RUNCBOX", "r", "Exec", map[string]any{"Cmd": []string{"cat", "/proc/1/cmdline"}})
	assert.Equal(t, 200, code, body)
	assert.Contains(t, body, `"Stdout":"sleep\u00003600\u0000"`)

	w.mustCall(t, "BOX", "left-running", "Start", []string{"sleep", "3600"})
	w.stop() // a clean shutdown removes what is still running
	assertNoLeftovers(t, data)
}

// assertNoLeftovers checks that the wharf with data at dir left no
// network namespace, link, nft table or containerd process behind.
func assertNoLeftovers(t testing.TB, dir string) {
	t.Helper()
	assert.Empty(t, containerd.NetworkLeftovers(dir))
	assert.Empty(t, egress.FirewallLeftovers(containerd.Scope(dir)))
	assert.Empty(t, testutil.Processes("containerd --config", dir))
}

// serveGuestB serves the objects guest with containers (Box and RuncBox)
// for a benchmark.
func serveGuestB(b *testing.B, data string) *testWorker {
	return serveGuest(b, "testdata/guests/objects", withRuncBox, data)
}

// TestSignalAndPortBeyond32Bits: a signal or port the object gives that is
// out of range, even one the ABI's 32 bits would cut to a valid number
// (1<<32 + 9 to SIGKILL, 1<<32 + 8080 to 8080), is refused with the number
// it gave, and the container keeps running. Killing an exec that exited
// says so (ErrNotFound), not that the container is not running.
func TestSignalAndPortBeyond32Bits(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})

	for _, sig := range []int{1<<32 + 9, -1} {
		want := fmt.Sprintf("signal out of range: signal must be from 1 to 64, got %d", sig)
		code, body := w.call(t, "BOX", "b", "Signal", sig)
		assert.Equal(t, 500, code)
		assert.Equal(t, "call Signal: "+want, strings.TrimSpace(body))
		code, body = w.call(t, "BOX", "b", "BgKill", map[string]any{"ID": "x", "Signal": sig})
		assert.Equal(t, 500, code)
		assert.Equal(t, "call BgKill: "+want, strings.TrimSpace(body))
		assert.Equal(t, fmt.Sprintf("%q", "kill=wharf: "+want+" code=137 again=wharf: the process has exited (not-found=true not-running=false)"),
			w.mustCall(t, "BOX", "b", "KillSleep", sig), "an exited process is not a stopped container")
	}
	for _, port := range []int{1<<32 + 8080, -1} {
		want := fmt.Sprintf("port must be from 1 to 65535, got %d", port)
		code, body := w.call(t, "BOX", "b", "Raw", port)
		assert.Equal(t, 500, code)
		assert.Equal(t, "call Raw: invalid argument: "+want, strings.TrimSpace(body))
		code, body = w.call(t, "BOX", "b", "Fetch", map[string]any{"Port": port, "Path": "/"})
		assert.Equal(t, 500, code)
		assert.Equal(t, `call Fetch: Get "http://container/": invalid argument: `+want, strings.TrimSpace(body))
	}
	assert.Equal(t, "true", w.mustCall(t, "BOX", "b", "Running", nil), "the container was not signalled")
}

// TestExecStdinClosedEarly: writing more input than a process reads before
// it exits fails with what happened, not with the name of a host pipe, and
// so does a write after the object closed stdin itself; the object keeps
// serving.
func TestExecStdinClosedEarly(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	code, body := w.call(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"true"}, "Stdin": strings.Repeat("z", 4<<20)})
	assert.Equal(t, 500, code)
	assert.Equal(t, "call Exec: writing stdin: the process closed its stdin", strings.TrimSpace(body))
	// A write after the object's own Close says so (ErrClosed), not that
	// a handle it never heard of is not open.
	assert.Equal(t, `"write=wharf: write to a stream after its Close or Abort (closed=true) out=\"\" err=\u003cnil\u003e"`,
		w.mustCall(t, "BOX", "b", "ExecStdinEarly", []string{"cat"}))
	var r map[string]any
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"echo", "still serving"}})), &r))
	assert.Equal(t, "still serving\n", r["Stdout"])
}

// TestStartRefusesWhatTheKernelCannotTake: an entrypoint or environment
// the kernel could not exec, or an entrypoint the image does not have, is
// refused by Start with what is wrong (INVALID), not started as a
// container whose init fails at once with 127; the object can start a
// good one after, and one that exits at once is started.
func TestStartRefusesWhatTheKernelCannotTake(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	many := append([]string{"echo"}, slices.Repeat([]string{strings.Repeat("a", 1000)}, 5000)...)
	for _, bad := range []struct {
		entrypoint []string
		msg        string
	}{
		{[]string{"echo", "a\x00b"}, `call Start: starting the container: bad exec: argument "a\x00b" contains a NUL byte`},
		{[]string{""}, `call Start: starting the container: bad exec: the program name is empty`},
		{many, `call Start: starting the container: bad exec: the arguments and environment are [0-9]+ bytes, over the kernel's limit of [0-9]+`},
		// Not in the image: the agent could not start it.
		{[]string{"/bin/nope", "x"}, `call Start: starting the container: bad exec: entrypoint [/bin/nope x]: executable file not found: /bin/nope`},
		{[]string{"nope"}, `call Start: starting the container: bad exec: entrypoint [nope]: executable file not found: nope in $PATH`},
	} {
		code, body := w.call(t, "BOX", "b", "Start", bad.entrypoint)
		assert.Equal(t, 500, code)
		assert.Regexp(t, "^"+strings.ReplaceAll(regexp.QuoteMeta(bad.msg), regexp.QuoteMeta("[0-9]+"), "[0-9]+")+"$", strings.TrimSpace(body))
		assert.Equal(t, "false", w.mustCall(t, "BOX", "b", "Running", nil))
	}
	w.mustCall(t, "BOX", "quick", "Start", []string{"true"})
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	assert.Equal(t, "true", w.mustCall(t, "BOX", "b", "Running", nil))
}

// idFor returns the id the objects guest's BOX namespace gives name.
func idFor(t testing.TB, w *testWorker, name string) string {
	t.Helper()
	code, id := get(t, w.url+"/id/BOX?name="+name)
	require.Equal(t, 200, code, id)
	return id
}

// TestObjectFiles drives the files API from a guest: a round trip with a
// checksum, every operation and its errors, a watch; and the errors of a
// container without the agent or not running.
func TestObjectFiles(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", withRuncBox, data)

	code, body := w.call(t, "BOX", "f", "FilesOps", nil)
	assert.Equal(t, 500, code)
	assert.Equal(t, "call FilesOps: watch /tmp: the container is not running", strings.TrimSpace(body), "an *fs.PathError, as the doc says")

	w.mustCall(t, "BOX", "f", "Start", []string{"sleep", "3600"})
	var rt map[string]any
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "f", "FilesRoundTrip", map[string]any{"MB": 64, "Check": true})), &rt))
	assert.Equal(t, true, rt["Same"], "64 MiB written and read back with the same checksum")
	assert.Equal(t, float64(64<<20), rt["Read"])

	var ops []string
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "f", "FilesOps", nil)), &ops))
	assert.Equal(t, []string{
		"mkdir: ok",
		"write: ok",
		"read hello files: ok",
		"stat hello.txt 11 false 644: ok",
		"rename: ok",
		"list hello.txt(dir=false) y(dir=true): ok",
		"remove non-empty: remove /work/x: directory not empty",
		"remove all: ok",
		"stat removed: [file does not exist] stat /work/x: no such file or directory",
		"rename removed (link error=true): [file does not exist] rename /work/x /work/z: no such file or directory",
		"list a file: list /etc/passwd: not a directory",
		"write as app into /etc: [permission denied] write /etc/app.txt: permission denied",
		"unknown user: stat /: unknown user: user \"ghost\" does not exist in the image's /etc/passwd",
		"watch create /tmp/watched: ok",
		"select, then watch create /tmp/watched2: ok",
	}, ops)
	assert.Equal(t, "true", w.mustCall(t, "BOX", "f", "Running", nil), "the object and its container keep serving")

	w.mustCall(t, "RUNCBOX", "f", "Start", []string{"sleep", "3600"})
	code, body = w.call(t, "RUNCBOX", "f", "FilesOps", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the container does not run wharf-init (init = false): files need it")
}

// TestObjectFilesHostile: a guest's hostile file operations (a named pipe,
// a NUL byte, a huge name, a device, watches past the cap, a removed
// watch) each get a clear
// error or a clean end at once; an endless read of /dev/zero is ended by
// the event's deadline, and the object and its container serve on.
func TestObjectFilesHostile(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest+"[limits]\ntimeout = \"3s\"\n", data)
	w.mustCall(t, "BOX", "h", "Start", []string{"sleep", "3600"})

	var got []string
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "h", "FilesHostile", nil)), &got))
	assert.Equal(t, []string{
		"read fifo: read /tmp/fifo: not a file (a named pipe or a socket): the files API reads and writes files",
		"write fifo: write /tmp/fifo: not a file (a named pipe or a socket): the files API reads and writes files",
		"nul byte: stat /tmp/a\x00b: invalid argument",
		"long name: stat /tmp/" + strings.Repeat("x", 300) + ": file name too long",
		"a name with the words of an error (not-exist=true not-running=false): stat /tmp/the container is not running: no such file or directory",
		"read /dev/zero 4194304: ok",
		"watch 17: watch /tmp: too many watches: 16 are open on this container, the limit is 16: close one first",
		"remove watched: ok",
		"watch delete_self /tmp/gone: ok",
		"watch ends: EOF",
	}, got)

	before := openFDs(t)
	start := time.Now()
	code, body := w.call(t, "BOX", "h", "ReadEndless", "/dev/zero")
	assert.Less(t, time.Since(start), 10*time.Second, "the deadline ended the read")
	assert.NotEqual(t, 200, code, body)
	assert.Equal(t, "true", w.mustCall(t, "BOX", "h", "Running", nil), "the object and its container keep serving")
	assert.Eventually(t, func() bool { return openFDs(t) <= before }, 5*time.Second, 50*time.Millisecond,
		"the device and the agent's connection are closed")
}

// TestAlarmWaitsForTheBuildAtLoad restarts a worker whose Box class's image
// must be rebuilt (a slow RUN) while an alarm set before the restart falls
// due: the alarm, whose handler starts the container, is delivered once the
// worker has started, on its first try, and never fails for want of the
// container.
func TestAlarmWaitsForTheBuildAtLoad(t *testing.T) {
	testutil.BuildBuildkitd(t)
	base := testimages.BusyboxBase(t)
	image := t.TempDir()
	dockerfile := func(step string) {
		require.NoError(t, os.WriteFile(filepath.Join(image, "Dockerfile"), []byte("FROM "+base+"\n"+step+"\n"), 0o644))
	}
	manifest := objectsManifest + `[[durable_objects.bindings]]
name = "BOX"
class_name = "Box"
[[containers]]
class_name = "Box"
image = "` + image + `"
`
	data := t.TempDir()
	dockerfile("RUN true")
	w := serveGuest(t, "testdata/guests/objects", manifest, data)
	w.mustCall(t, "BOX", "a", "ArmAlarm", 2000)
	w.stop()

	dockerfile("RUN sleep 8")
	began := time.Now()
	w = serveGuest(t, "testdata/guests/objects", manifest, data)
	require.Greater(t, time.Since(began), 4*time.Second, "the alarm fell due during the build")
	require.Eventually(t, func() bool { return w.callString(t, "BOX", "a", "AlarmRuns", nil) != "" },
		30*time.Second, 50*time.Millisecond, "the alarm was delivered")
	assert.Equal(t, "0,", w.callString(t, "BOX", "a", "AlarmRuns", nil), "once, on its first try")
	assert.Equal(t, "true", w.mustCall(t, "BOX", "a", "Running", nil), "the alarm started the container")
	assert.NotContains(t, w.logs.String(), "alarm failed")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestStartWithoutItsImage removes a class's image while the plugin is
// loaded (as `wharf images rm --force` does): a start fails saying, once,
// which image is missing and how to put it back; the host keeps serving,
// and once the image is imported again the start works.
func TestStartWithoutItsImage(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	ctx := context.Background()
	const image = "wharf.test/busybox:latest"
	_, backend := hostbackend.Parts(w.services.containers)
	require.NoError(t, containerd.RemoveImage(ctx, backend.Client, image, true))

	code, body := w.call(t, "BOX", "a", "Start", []string{"sleep", "3600"})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `starting the container: image "`+image+"\" is not in wharf's containerd: import it with `wharf images import` or `wharf images pull`, with --data-dir "+data)
	assert.Equal(t, 1, strings.Count(body, image), "the image is named once: %s", body)

	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	_, err = containerd.ImportArchive(ctx, backend.Client, archive, "")
	require.NoError(t, err)
	w.mustCall(t, "BOX", "a", "Start", []string{"sleep", "3600"})
	assert.Equal(t, "true", w.mustCall(t, "BOX", "a", "Running", nil))
}

// TestDestroyDuringStart: an object that destroys its container while a
// start of it (from another goroutine) is under way gets no container:
// the destroy waits for the start and removes what it started. The destroy
// found nothing yet, returned at once, and the container the start then
// made ran on (Running true) although Destroy had returned without error.
// So it did when the destroy came right after the start, before the
// manager had reserved the container (at once, or while the start removed
// the object's exited container first).
func TestDestroyDuringStart(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	for _, delay := range []string{"0s", "20ms", "100ms", "300ms", "exited"} { // a start takes some 450 ms
		name := "d" + delay
		if delay == "exited" { // the start removes the exited container first
			w.mustCall(t, "BOX", name, "Start", []string{"true"})
			require.Eventually(t, func() bool { return w.mustCall(t, "BOX", name, "Running", nil) == "false" }, 10*time.Second, 20*time.Millisecond)
			delay = "0s"
		}
		assert.Equal(t, `"start=\u003cnil\u003e destroy=\u003cnil\u003e running=false"`,
			w.mustCall(t, "BOX", name, "DestroyDuringStart", map[string]any{"Entrypoint": []string{"sleep", "3600"}, "Delay": delay}),
			"destroyed after %s", delay)
		assert.Empty(t, w.services.containers.Backend().List(), "no container is left after %s", delay)
		// The object starts and uses its container again.
		w.mustCall(t, "BOX", name, "Start", []string{"sleep", "3600"})
		assert.Equal(t, `{"Code":0,"Stderr":"","Stdout":"ok\n"}`, w.mustCall(t, "BOX", name, "Exec", map[string]any{"Cmd": []string{"echo", "ok"}}))
		w.mustCall(t, "BOX", name, "Destroy", "done")
	}
	assert.Regexp(t, `container:Box#\S+ stop" .*reason="during start"`, w.logs.String(), "the destroy's reason is the stop's")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestEndDuringStart ends the object's event while a start of its
// container (from another goroutine) is under way: the instance traps, the
// event panics, or it fails. The start is canceled with the event; once it
// has ended nothing of it is left (containerd's containers, tasks and
// snapshots, shims, network, disks, journal: containerd.Leftovers, but the
// running wharf's own firewall table), and the object's next Start works.
// Canceled as containerd created the container, the start left that
// container (TestStartContainerCanceledAsTheContainerIsCreated), and every
// later start of the object failed ("already exists").
func TestEndDuringStart(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	_, b := hostbackend.Parts(w.services.containers)
	left := func() []string {
		l, err := containerd.Leftovers(context.Background(), b.Client, b.Address, data)
		require.NoError(t, err)
		own := egress.FirewallLeftovers(containerd.Scope(data))
		return slices.DeleteFunc(l, func(s string) bool { return slices.Contains(own, s) })
	}
	sleeper := []string{"sleep", "3600"}
	for _, end := range []string{"trap", "panic", "error"} {
		for _, delay := range []string{"0s", "20ms", "40ms", "60ms"} { // a start takes 150 ms or more
			name := "end-" + end + delay
			code, body := w.call(t, "BOX", name, "EndDuringStart", map[string]any{"Entrypoint": sleeper, "End": end, "Delay": delay})
			require.Equal(t, 500, code, "%s: %s", name, body)
			assert.Eventually(t, func() bool {
				return w.mustCall(t, "BOX", name, "Running", nil) == "false" && len(w.services.containers.Backend().List()) == 0 && len(left()) == 0
			}, 10*time.Second, 20*time.Millisecond, "%s: the start ended, and left nothing", name)
			assert.Empty(t, left(), name)
			w.mustCall(t, "BOX", name, "Start", sleeper)
			assert.Equal(t, `{"Code":0,"Stderr":"","Stdout":"ok\n"}`, w.mustCall(t, "BOX", name, "Exec", map[string]any{"Cmd": []string{"echo", "ok"}}), name)
			w.mustCall(t, "BOX", name, "Destroy", "")
		}
	}
	assert.Contains(t, w.logs.String(), "trapped during a start on purpose", "the instance trapped")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestMonitorDuringDestroy calls Monitor while a Destroy of the object's
// container (from another goroutine) is under way: it reports the exit the
// destroy causes, the destroy's reason as its error (the hosted system's
// destroy(error) sends it to monitor()'s error callback), or the exit code
// without one; so it does when an unawaited Start came before the
// destroy. It said "the container is not running" once the destroy had
// removed the container it waited for. A destroy that finds no container
// leaves the monitor nothing to report.
func TestMonitorDuringDestroy(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	sleeper := []string{"sleep", "3600"}
	for _, tc := range []struct {
		name, reason string
		again        string   // a second destroy's reason, asked for after the first
		started      bool     // Start was awaited before
		entrypoint   []string // an unawaited Start comes before the destroy
		want         string
	}{
		{"running", "bye", "", true, nil, "monitor=bye exit=true destroy=<nil>"},
		{"no-reason", "", "", true, nil, "monitor=the container exited with code 137 exit=true destroy=<nil>"},
		{"starting", "bye", "", false, sleeper, "monitor=bye exit=true destroy=<nil>"},
		{"none", "bye", "", false, nil, "monitor=wharf: the container is not running exit=false destroy=<nil>"},
		// The first destroy removes the container, the second finds none.
		{"twice", "bye", "again", true, nil, "monitor=bye exit=true destroy=<nil> again=<nil>"},
		{"starting-twice", "bye", "again", false, sleeper, "monitor=bye exit=true destroy=<nil> again=<nil>"},
	} {
		if tc.started {
			w.mustCall(t, "BOX", tc.name, "Start", sleeper)
		}
		var got string
		require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", tc.name, "MonitorDuringDestroy",
			map[string]any{"Reason": tc.reason, "Again": tc.again, "Entrypoint": tc.entrypoint})), &got))
		assert.Equal(t, tc.want, got, tc.name)
		assert.Equal(t, "false", w.mustCall(t, "BOX", tc.name, "Running", nil), tc.name)
	}
	assert.Empty(t, w.services.containers.Backend().List(), "no container is left")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestFilesWriteToAFullDisk: a file written through Files() into a
// container whose disk (disk_mb) is full fails with an *fs.PathError
// naming the file and the disk's error; the write said "write agent-fd:
// no space left on device" (the name of the descriptor the agent passed)
// and was no *fs.PathError. Execs and background processes still start
// on the full disk, and the write succeeds once room is made.
func TestFilesWriteToAFullDisk(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", strings.Replace(containersManifest, `instance_type = "basic"`,
		`instance_type = { vcpu = 0.5, memory_mib = 256, disk_mb = 64 }`, 1), data)
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	out, _, _ := w.run(t, "b", "sh", "-c", "dd if=/dev/zero of=/fill bs=1M 2>&1")
	require.Contains(t, out, "No space left on device", "the disk is full")
	want := "write /tmp/big: no space left on device"
	assert.Equal(t, fmt.Sprintf(`"write=%s close=%s (path errors: true true)"`, want, want),
		w.mustCall(t, "BOX", "b", "WriteBig", map[string]any{"Path": "/tmp/big", "MB": 4}))

	out, _, code := w.run(t, "b", "echo", "exec on a full disk")
	assert.Equal(t, 0, code)
	assert.Equal(t, "exec on a full disk\n", out)
	assert.Contains(t, w.mustCall(t, "BOX", "b", "BgStart", map[string]any{"Cmd": []string{"sleep", "60"}, "ID": "bg"}), `"status":"running"`)
	_, _, code = w.run(t, "b", "rm", "/fill")
	require.Equal(t, 0, code)
	assert.Equal(t, `"write=\u003cnil\u003e close=\u003cnil\u003e (path errors: true true)"`,
		w.mustCall(t, "BOX", "b", "WriteBig", map[string]any{"Path": "/tmp/big", "MB": 4}))
	w.stop()
	assertNoLeftovers(t, data)
}

// TestCallsDuringStart: a signal, an exec, a monitor, a fetch, a raw
// connection or a readiness wait that an object makes while a start of its
// container (from another goroutine) is under way waits for the start and
// acts on the container it started, as the hosted system's calls right
// after an unawaited start() do; one whose start fails says the container
// is not running and why. They all said "the container is not running"
// at once. Running says true from the start's call (the hosted system's
// running does; it said false until the start ended), a second start
// meanwhile is BUSY, already running, as once the first has ended (it was
// an IO error from the manager), and an exec made after an unawaited
// destroy that follows the start finds no container (it raced the
// destroy, and ran in the container the start made).
func TestCallsDuringStart(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	during := func(name string, args map[string]any) string {
		t.Helper()
		var out string
		require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", name, "DuringStart", args)), &out))
		return out
	}
	sleep := []string{"sleep", "3600"}
	web := []string{"httpd", "-f", "-p", "8080", "-h", "/etc"}

	assert.Equal(t, `running-before=true call="" err=<nil> (not-running=false) start=<nil>`,
		during("signal", map[string]any{"Entrypoint": sleep, "Call": "signal"}))
	assert.Eventually(t, func() bool { return w.mustCall(t, "BOX", "signal", "Running", nil) == "false" }, 10*time.Second, 20*time.Millisecond,
		"the SIGTERM reached the container the start started")

	assert.Equal(t, `running-before=true call="ok\n" err=<nil> (not-running=false) start=<nil>`,
		during("exec", map[string]any{"Entrypoint": sleep, "Call": "exec", "Cmd": []string{"echo", "ok"}}))

	assert.Equal(t, `running-before=true call="" err=the container exited with code 3 (not-running=false) start=<nil>`,
		during("monitor", map[string]any{"Entrypoint": []string{"sh", "-c", "sleep 0.2; exit 3"}, "Call": "monitor"}))

	assert.Equal(t, `running-before=true call="ready" err=<nil> (not-running=false) start=<nil>`,
		during("waitport", map[string]any{"Entrypoint": web, "Call": "waitport", "Port": 8080}))
	// The server may not listen yet as the start ends: the fetch and the
	// connection reach the container, answered or refused.
	assert.Regexp(t, `^running-before=true call=("200 root:x:0:0.*" err=<nil>|"" err=.*nothing listens on the container port.*) \(not-running=false\) start=<nil>$`,
		during("fetch", map[string]any{"Entrypoint": web, "Call": "fetch", "Port": 8080}))
	assert.Regexp(t, `^running-before=true call="(HTTP/1.[01] 200 OK.*|refused: nothing listens on the container port: port 8080)" err=<nil> \(not-running=false\) start=<nil>$`,
		during("connect", map[string]any{"Entrypoint": web, "Call": "connect", "Port": 8080}))

	// A start that fails: the call says the container is not running, and
	// why, also when the start failed (at once) before the call was made
	// (then Running said false already); so do calls in later events, until
	// the object starts or destroys its container again.
	missing := []string{"/no/such/program"}
	badExec := `bad exec: entrypoint [/no/such/program]: executable file not found: /no/such/program`
	for _, call := range []string{"signal", "exec", "monitor", "connect"} {
		assert.Regexp(t, `^running-before=(true|false) call="" err=`+regexp.QuoteMeta(`wharf: the container is not running: its start failed: `+badExec+
			` (not-running=true) start=wharf: starting the container: `+badExec)+`$`,
			during("bad-"+call, map[string]any{"Entrypoint": missing, "Call": call, "Cmd": []string{"true"}, "Port": 8080}), call)
	}
	assert.Equal(t, "false", w.mustCall(t, "BOX", "bad-signal", "Running", nil), "a failed start leaves no container")
	code, body := w.call(t, "BOX", "bad-exec", "Exec", map[string]any{"Cmd": []string{"true"}})
	assert.Equal(t, 500, code)
	assert.Equal(t, "call Exec: the container is not running: its start failed: "+badExec, strings.TrimSpace(body))
	assert.Equal(t, fmt.Sprintf("%q", "wharf: the container is not running: its start failed: "+badExec), w.mustCall(t, "BOX", "bad-exec", "Monitor", nil))
	w.mustCall(t, "BOX", "bad-exec", "Destroy", "")
	code, body = w.call(t, "BOX", "bad-exec", "Exec", map[string]any{"Cmd": []string{"true"}})
	assert.Equal(t, 500, code)
	assert.Equal(t, "call Exec: the container is not running", strings.TrimSpace(body), "the destroy ends what the failed start left")

	// A second start while the first is under way is BUSY, as once it
	// has ended; the first goes on.
	assert.Equal(t, `running-before=true call="busy=true" err=wharf: the container is already running (not-running=false) start=<nil>`,
		during("twice", map[string]any{"Entrypoint": sleep, "Call": "start"}))
	assert.Equal(t, `{"Code":0,"Stderr":"","Stdout":"ok\n"}`, w.mustCall(t, "BOX", "twice", "Exec", map[string]any{"Cmd": []string{"echo", "ok"}}))
	// Start, destroy, exec: the exec comes after the destroy.
	for i := range 3 {
		name := fmt.Sprintf("destroy-exec-%d", i)
		assert.Equal(t, `running-before=true call=" destroy=<nil>" err=wharf: the container is not running (not-running=true) start=<nil>`,
			during(name, map[string]any{"Entrypoint": sleep, "Call": "destroy-exec", "Cmd": []string{"echo", "ok"}}))
		assert.Equal(t, "false", w.mustCall(t, "BOX", name, "Running", nil))
	}
	// Start, destroy, start again, exec: the exec runs in the second
	// container.
	assert.Equal(t, `running-before=true call="ok\n start-again=<nil> destroy=<nil>" err=<nil> (not-running=false) start=<nil>`,
		during("again", map[string]any{"Entrypoint": sleep, "Call": "destroy-start-exec", "Cmd": []string{"echo", "ok"}}))
	assert.Equal(t, "true", w.mustCall(t, "BOX", "again", "Running", nil))
	ns, err := w.Objects().Namespace("BOX")
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(w.logs.String(), `msg="container:Box#`+ns.IDFromName("again")[:8]+` start"`), "two containers started")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestCallsDuringStartWhenTheClientLeaves: a client that goes away while
// its event's calls wait for a start of the object's container (an exec,
// a signal, a monitor, a destroy) leaves nothing waiting: the goroutines
// that waited end with the event, and the object starts, uses and
// destroys its container afterwards as before (no start or destroy is
// left under way, which would keep later starts BUSY).
func TestCallsDuringStartWhenTheClientLeaves(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	waiting := func() int {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 2)
		return strings.Count(b.String(), "host/containers.awaitOps(")
	}
	for _, call := range []string{"exec", "signal", "monitor", "destroy-exec"} {
		for _, after := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
			name := fmt.Sprint("left-", call, after)
			ctx, cancel := context.WithTimeout(context.Background(), after)
			body, _ := json.Marshal(map[string]any{"Entrypoint": []string{"sleep", "3600"}, "Call": call, "Cmd": []string{"sleep", "3600"}})
			req, _ := http.NewRequestWithContext(ctx, "POST", w.url+"/call/BOX/"+name+"/DuringStart", bytes.NewReader(body))
			_, err := http.DefaultClient.Do(req)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "%s: the client left during the start", name)
			assert.Eventually(t, func() bool { return waiting() == 0 }, 20*time.Second, 20*time.Millisecond, "%s: nothing waits for the start", name)
			w.mustCall(t, "BOX", name, "Destroy", "")
			w.mustCall(t, "BOX", name, "Start", []string{"sleep", "3600"})
			assert.Equal(t, `{"Code":0,"Stderr":"","Stdout":"ok\n"}`, w.mustCall(t, "BOX", name, "Exec", map[string]any{"Cmd": []string{"echo", "ok"}}), name)
			w.mustCall(t, "BOX", name, "Destroy", "done")
		}
	}
	w.stop()
	assertNoLeftovers(t, data)
}

// TestLeaveDuringStart: an object this host gives up (a cluster drains
// it) while a start of its container is under way loses that container
// too: the leave waits for the start and removes what it started. Leave
// found no container yet and returned, and the one the start then made
// ran on for an object that had left (Running true, as the object's start
// under way now counts as running for the cluster's Holds).
func TestLeaveDuringStart(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	ns, err := w.Objects().Namespace("BOX")
	require.NoError(t, err)
	holdings := containerHoldings{w.services, 0}
	for i := range 3 {
		name := fmt.Sprint("leave", i)
		id := ns.IDFromName(name)
		started := make(chan string, 1)
		go func() {
			code, body := w.call(t, "BOX", name, "Start", []string{"sleep", "3600"})
			started <- fmt.Sprint(code, " ", body)
		}()
		require.Eventually(t, func() bool { return holdings.Holds("Box", id) }, 10*time.Second, time.Millisecond, "the start is asked for")
		_, booted := w.services.containers.Backend().Get("Box", id)
		holdings.Leave("Box", id, true)
		assert.Equal(t, "200 null", <-started, name)
		assert.False(t, holdings.Holds("Box", id), "%s: the container it started is gone (it had booted as Leave began: %v)", name, booted)
		_, left := w.services.containers.Backend().Get("Box", id)
		assert.False(t, left, name)
	}
	w.stop()
	assertNoLeftovers(t, data)
}

// TestFetchOfAPortThatClosesTheConnection: a fetch to a container port
// whose server accepts the connection and closes it without answering
// (having read the request, or not: a reset) says so, naming the port, and
// the host keeps serving the object. The guest got Go's bare "EOF" (or
// "read tcp …: connection reset by peer").
func TestFetchOfAPortThatClosesTheConnection(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	// Port 8080 reads the request's head and closes; 8081 closes at once.
	w.mustCall(t, "BOX", "b", "Start", []string{"sh", "-c", `printf '%s\n' '#!/bin/sh' 'while read -r l && [ "$l" != "$(printf "\r")" ]; do :; done' >/tmp/h &&
chmod +x /tmp/h && nc -ll -p 8081 -e true & exec nc -ll -p 8080 -e /tmp/h`})
	for _, port := range []int{8080, 8081} {
		require.Equal(t, `"ready"`, w.mustCall(t, "BOX", "b", "WaitPort", map[string]any{"Port": port, "Timeout": "10s"}))
		for range 2 {
			code, body := w.call(t, "BOX", "b", "Fetch", map[string]any{"Port": port, "Path": "/passwd"})
			assert.Equal(t, 500, code)
			assert.Equal(t, fmt.Sprintf(`call Fetch: Get "http://container/passwd": port %d of the container closed the connection without answering`, port),
				strings.TrimSpace(body))
		}
	}
	assert.Equal(t, `{"Code":0,"Stderr":"","Stdout":"ok\n"}`, w.mustCall(t, "BOX", "b", "Exec", map[string]any{"Cmd": []string{"echo", "ok"}}),
		"the object and its container go on")
	w.stop()
	assertNoLeftovers(t, data)
}
