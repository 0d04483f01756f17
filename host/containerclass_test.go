package host

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"

	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
)

const webManifest = containersManifest + `[[durable_objects.bindings]]
name = "WEB"
class_name = "Web"
[[durable_objects.bindings]]
name = "WEBHARD"
class_name = "WebHard"
[[containers]]
class_name = "Web"
image = "wharf.test/busybox:latest"
persistent_dirs = ["/data"]
secrets = ["WHARF_TEST_SECRET"]
labels = { team = "web" }
capabilities = ["NET_RAW"]
[[containers]]
class_name = "WebHard"
image = "wharf.test/busybox:latest"
hard_timeout = "6s"
[[durable_objects.bindings]]
name = "ECHO"
class_name = "Echo"
[[containers]]
class_name = "Echo"
image = "wharf.test/busybox:latest"
`

func (w *testWorker) status(t *testing.T, binding, name string) string {
	t.Helper()
	return w.callString(t, binding, name, "Status", nil)
}

// callString calls a method that returns a string.
func (w *testWorker) callString(t *testing.T, binding, name, method string, args any) string {
	t.Helper()
	var s string
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, binding, name, method, args)), &s))
	return s
}

// TestContainerClassStates drives every state of the Container class
// against real containers: stopped, running→healthy behind a readiness
// probe, a crash while healthy (stopped_with_code), a visible stop and a
// start that waits for it, and the hooks in order.
func TestContainerClassStates(t *testing.T) {
	t.Setenv("WHARF_TEST_SECRET", "s3cret-value")
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", webManifest, data)

	assert.Equal(t, "stopped", w.status(t, "WEB", "a"))
	start := time.Now()
	w.mustCall(t, "WEB", "a", "Start", nil)
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "healthy only once the ready_on probe passes")
	assert.Equal(t, "healthy", w.status(t, "WEB", "a"))
	code, body := get(t, w.url+"/fetch/WEB/a/ready")
	assert.Equal(t, 200, code)
	assert.Equal(t, "ok\n", body, "ServeHTTP proxies to DefaultPort")
	assert.Equal(t, "s3cret-value\n", w.callString(t, "WEB", "a", "Run", "echo $WHARF_TEST_SECRET"), "the manifest's secret is in the environment")
	assert.Equal(t, "ok\n", w.callString(t, "WEB", "a", "Run", "probe syscall raw 2>&1"), "the class asked for NET_RAW")

	// A crash while healthy is never reported healthy; the host tells the
	// object at once, so OnStop runs without anyone asking.
	w.mustCall(t, "WEB", "a", "Run", "touch /www/crash")
	require.Eventually(t, func() bool {
		return strings.Contains(w.callString(t, "WEB", "a", "Hooks", nil), "stop:3:exited")
	}, 5*time.Second, 50*time.Millisecond, "OnStop ran on the exit event")
	assert.Equal(t, "stopped_with_code", w.status(t, "WEB", "a"))
	assert.Contains(t, w.mustCall(t, "WEB", "a", "State", nil), `"ExitCode":3`)

	// A fetch starts it again; a stop is visible, and a start waits for it.
	code, _ = get(t, w.url+"/fetch/WEB/a/ready")
	assert.Equal(t, 200, code, "a request to a stopped container starts it")
	assert.Contains(t, w.mustCall(t, "WEB", "a", "State", nil), `"ExitCode":0`, "the new run has no exit code")
	w.mustCall(t, "WEB", "a", "Stop", 15)
	assert.Equal(t, "stopping", w.status(t, "WEB", "a"), "the container takes a second to stop")
	w.mustCall(t, "WEB", "a", "Start", nil)
	assert.Equal(t, "healthy", w.status(t, "WEB", "a"))
	assert.Equal(t, "start\nstop:3:exited\nstart\nstop:0:stopped\nstart\n", w.callString(t, "WEB", "a", "Hooks", nil))

	// Removed from outside (as `wharf destroy` does): the object hears of
	// it and says so.
	ns, err := w.Objects().Namespace("WEB")
	require.NoError(t, err)
	require.NoError(t, w.services.containers.Backend().Destroy(t.Context(), "Web", ns.IDs().FromName("a"), ""))
	require.Eventually(t, func() bool {
		return strings.HasSuffix(w.callString(t, "WEB", "a", "Hooks", nil), "stop:-1:the container was removed\n")
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, "stopped", w.status(t, "WEB", "a"))

	// A plugin may only ask for the secrets its wharf.toml declares, and a
	// declared secret that is not set fails the start and names it.
	code, body = w.call(t, "WEB", "b", "StartWithSecret", "HOME")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `secret "HOME" is not declared: list it in secrets of the class's [[containers]] in wharf.toml`)
	os.Unsetenv("WHARF_TEST_SECRET") // t.Setenv puts it back
	code, body = w.call(t, "WEB", "b", "Start", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `secret "WHARF_TEST_SECRET" is not set: export it in the environment of wharf serve`)
	code, body = get(t, w.url+"/fetch/WEB/b/ready")
	assert.Equal(t, 503, code)
	assert.Equal(t, `wharf: the container could not start: secret "WHARF_TEST_SECRET" is not set: export it in the environment of wharf serve`+"\n", body,
		"a proxied request's answer says why, once")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestContainerClassHardTimeout: hard_timeout (from wharf.toml) ends a
// run counted from its start, and a run started later is not ended by the
// earlier run's deadline.
func TestContainerClassHardTimeout(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", webManifest, data)
	first := time.Now()
	w.mustCall(t, "WEBHARD", "h", "Start", nil)
	time.Sleep(1500 * time.Millisecond)
	w.mustCall(t, "WEBHARD", "h", "Destroy", nil)
	second := time.Now()
	w.mustCall(t, "WEBHARD", "h", "Start", nil)                // a new run: its own 6 s
	time.Sleep(time.Until(first.Add(6500 * time.Millisecond))) // past the first run's deadline
	// 6 s leaves a loaded host 4.5 s to destroy and start again (3 s did not).
	require.Less(t, time.Since(second), 6*time.Second, "the check must come before the second run's own deadline")
	assert.Equal(t, "healthy", w.status(t, "WEBHARD", "h"), "the first run's deadline does not end the second")
	require.Eventually(t, func() bool {
		s := w.status(t, "WEBHARD", "h")
		return s == "stopping" || s == "stopped"
	}, 8*time.Second, 100*time.Millisecond, "the second run ends at its own deadline")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestPersistentDirs keeps /data across container restarts and a host
// restart, and removes it with the object's storage.
func TestPersistentDirs(t *testing.T) {
	t.Setenv("WHARF_TEST_SECRET", "x")
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", webManifest, data)
	w.mustCall(t, "WEB", "p", "Start", nil)
	w.mustCall(t, "WEB", "p", "Run", "echo kept > /data/file; echo lost > /tmp/file")
	w.mustCall(t, "WEB", "p", "Destroy", nil)
	w.mustCall(t, "WEB", "p", "Start", nil)
	assert.Equal(t, "kept\n", w.callString(t, "WEB", "p", "Run", "cat /data/file /tmp/file 2>/dev/null"))
	w.stop()

	w = serveGuest(t, "testdata/guests/objects", webManifest, data)
	w.mustCall(t, "WEB", "p", "Start", nil)
	assert.Equal(t, "kept\n", w.callString(t, "WEB", "p", "Run", "cat /data/file"), "kept across a host restart")
	w.mustCall(t, "WEB", "p", "Destroy", nil)
	w.mustCall(t, "WEB", "p", "Wipe", nil)
	dirs, _ := filepath.Glob(filepath.Join(data, "objects", "Web", "persist", "*"))
	assert.Empty(t, dirs, "deleting the object's storage removes its directories")
	w.mustCall(t, "WEB", "p", "Start", nil)
	assert.Equal(t, "", w.callString(t, "WEB", "p", "Run", "ls /data"))
	w.stop()
	assertNoLeftovers(t, data)
}

// TestPersistentDirsBelongToTheImageUser: an image with a USER can write
// to its persistent directories.
func TestPersistentDirsBelongToTheImageUser(t *testing.T) {
	data := t.TempDir()
	fixture.ImportImages(t, data, testimages.Busybox, testimages.BusyboxApp)
	w := serveGuest(t, "testdata/guests/objects", containersManifest+`[[durable_objects.bindings]]
name = "SLEEPER"
class_name = "Sleeper"
[[containers]]
class_name = "Sleeper"
image = "`+testimages.BusyboxAppRef+`"
persistent_dirs = ["/workspace"]
`, data)
	w.mustCall(t, "SLEEPER", "u", "Start", nil)
	assert.Equal(t, "1000\nwritten\n", w.callString(t, "SLEEPER", "u", "Run", "id -u; echo written > /workspace/f && cat /workspace/f"))

	// Asked from a goroutine after its event, the state of a running
	// container is ErrEventOver: not a wait for its exit (Running said no
	// for want of an event, and Monitor waited outside events).
	w.mustCall(t, "SLEEPER", "u", "StateLater", nil)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, `"" wharf: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads) (ErrEventOver: true)`,
		w.callString(t, "SLEEPER", "u", "StateReceived", nil))
	assert.Equal(t, "healthy", w.status(t, "SLEEPER", "u"), "the container still runs")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestContainerClassWebSocket opens a WebSocket through the Worker and the
// object to the container's echo server: messages flow both ways on the
// switched connection, plain requests still work, and closing it ends the
// container side.
func TestContainerClassWebSocket(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", webManifest, data)
	code, body := get(t, w.url+"/fetch/ECHO/e/")
	require.Equal(t, 200, code, body)
	assert.Equal(t, "ws echo", body, "a plain request is proxied as before")

	ws, err := websocket.Dial("ws"+strings.TrimPrefix(w.url, "http")+"/fetch/ECHO/e/socket", "", "http://localhost/")
	require.NoError(t, err)
	for _, msg := range []string{"hello", "a second message", strings.Repeat("x", 100000)} {
		require.NoError(t, websocket.Message.Send(ws, msg))
		var got string
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		require.NoError(t, websocket.Message.Receive(ws, &got))
		assert.Equal(t, "echo: "+msg, got)
	}
	require.NoError(t, ws.Close())
	code, _ = get(t, w.url+"/alone")
	assert.Equal(t, 200, code, "the host keeps serving")
	w.stop()
	assertNoLeftovers(t, data)
}
