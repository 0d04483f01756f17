package host

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages/fixture"
)

// TestBackgroundProcessesAcrossEvents starts a background process in one
// event and, in later events (one after the object was evicted), lists
// it, follows its output from the start and from now, kills it and waits
// for it; then the errors a guest can cause, the cap of 64 per container,
// a container without the agent, and the end of the processes with their
// container.
func TestBackgroundProcessesAcrossEvents(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", withRuncBox+"[durable_objects]\nidle_timeout = \"300ms\"\n", data)
	info := func(body string) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &m), body)
		return m
	}

	code, body := w.call(t, "BOX", "bg", "BgList", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the container is not running")

	w.mustCall(t, "BOX", "bg", "Start", []string{"sleep", "3600"})
	started := info(w.mustCall(t, "BOX", "bg", "BgStart", map[string]any{"ID": "server", "Cmd": []string{"sh", "-c",
		`echo "starting $MODE as $(id -u)"; i=0; while true; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.05; done`},
		"User": "app"}))
	assert.Equal(t, "server", started["id"])
	assert.Equal(t, "running", started["status"])
	assert.Positive(t, started["pid"])

	require.Eventually(t, func() bool { return w.Objects().LiveObjects() == 0 }, 10*time.Second, 20*time.Millisecond,
		"the idle object is evicted")
	assert.Equal(t, `["server=running"]`, w.mustCall(t, "BOX", "bg", "BgList", nil), "the process outlived the event and the object's eviction")

	logs := info(w.mustCall(t, "BOX", "bg", "BgLogs", map[string]any{"ID": "server", "Lines": 5}))
	assert.Equal(t, "starting dev as 1000\nout 1\nerr 1\nout 2\nerr 2\n", logs["Output"], "from the start, in the order written")
	assert.Equal(t, 0.0, logs["Dropped"])
	logs = info(w.mustCall(t, "BOX", "bg", "BgLogs", map[string]any{"ID": "server", "From": "now", "Lines": 1}))
	assert.NotContains(t, logs["Output"], "starting", "from now")

	w.mustCall(t, "BOX", "bg", "BgKill", map[string]any{"ID": "server"})
	done := info(w.mustCall(t, "BOX", "bg", "BgWait", "server"))
	assert.Equal(t, "killed", done["status"])
	assert.Equal(t, 143.0, done["exit_code"], "SIGTERM by default")
	assert.Equal(t, "killed", info(w.mustCall(t, "BOX", "bg", "BgGet", "server"))["status"])

	// A process that writes more than the buffer keeps: the stream from
	// the start says how much was dropped and ends with the process.
	w.mustCall(t, "BOX", "bg", "BgStart", map[string]any{"ID": "chatty", "Cmd": []string{"seq", "1", "300000"}})
	assert.Equal(t, "completed", info(w.mustCall(t, "BOX", "bg", "BgWait", "chatty"))["status"])
	logs = info(w.mustCall(t, "BOX", "bg", "BgLogs", map[string]any{"ID": "chatty"}))
	assert.Equal(t, float64(1<<20), logs["Bytes"])
	assert.Equal(t, float64(seqBytes(300000)-1<<20), logs["Dropped"])
	assert.True(t, strings.HasSuffix(logs["Output"].(string), "\n300000\n"))

	// A shell that exited leaving a child holding its output is not
	// replaced while the child lives: it could no longer be killed.
	w.mustCall(t, "BOX", "bg", "BgStart", map[string]any{"ID": "orphan", "Cmd": []string{"sh", "-c", "sleep 1000 &"}})
	assert.Equal(t, "completed", info(w.mustCall(t, "BOX", "bg", "BgWait", "orphan"))["status"])
	code, body = w.call(t, "BOX", "bg", "BgStart", map[string]any{"ID": "orphan", "Cmd": []string{"true"}})
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `background process "orphan" has exited, but processes it left behind still hold its output: kill it first`)
	w.mustCall(t, "BOX", "bg", "BgKill", map[string]any{"ID": "orphan", "Signal": 9})
	assert.Equal(t, "", info(w.mustCall(t, "BOX", "bg", "BgLogs", map[string]any{"ID": "orphan"}))["Output"], "the stream ends with the child")

	var errs []string
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", "bg", "BgErrors", nil)), &errs))
	assert.Equal(t, []string{
		`get unknown: [not-found] no background process "nope"`,
		`kill unknown: [not-found] no background process "nope"`,
		`kill signal 65: [invalid signal] signal out of range: signal must be from 1 to 64, got 65`,
		`start nothing: [invalid] invalid argument: exec needs a command`,
		`bad id: [invalid] a process id is 1 to 64 letters, digits, '.', '_' or '-' (not first), got "no spaces"`,
		`missing program: [exec-failed] the process could not be started: executable file not found: no-such-program in $PATH`,
		`unknown user: [invalid] unknown user: user "ghost" does not exist in the image's /etc/passwd`,
		`logs unknown: [not-found] no background process "nope"`,
		`logs from sideways: [invalid] from must be "start" or "now", got "sideways"`,
		`wait unknown: [not-found] waiting for background process "nope": no background process "nope"`,
		`get a name with the words of an error: [not-found] no background process "the container is not running"`,
		`an id with the words of an error: [invalid] a process id is 1 to 64 letters, digits, '.', '_' or '-' (not first), got "signal must be from 1 to 64"`,
	}, errs)

	assert.Equal(t, `"64 started, then too many background processes: 64 are running, the limit is 64 (too-large=true)"`,
		w.mustCall(t, "BOX", "bg", "BgFill", nil), "the three exited processes are forgotten to make room for 64 running ones, then the cap")
	assert.Equal(t, "true", w.mustCall(t, "BOX", "bg", "Running", nil), "the object and its container keep serving")

	// They belong to the container: a new container has none.
	w.mustCall(t, "BOX", "bg", "Destroy", "")
	w.mustCall(t, "BOX", "bg", "Start", []string{"sleep", "3600"})
	assert.Equal(t, "null", w.mustCall(t, "BOX", "bg", "BgList", nil))

	w.mustCall(t, "RUNCBOX", "bg", "Start", []string{"sleep", "3600"})
	code, body = w.call(t, "RUNCBOX", "bg", "BgList", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the container does not run wharf-init (init = false): background processes need it")
}

// TestForwardedProcessLogs: a background process's log stream handed to
// sdk.Forward keeps flowing to the client after the event that opened it
// ended, past the event timeout, until the process exits.
func TestForwardedProcessLogs(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest+"[limits]\ntimeout = \"2s\"\n", data)
	w.mustCall(t, "BOX", "fl", "Start", []string{"sleep", "3600"})
	w.mustCall(t, "BOX", "fl", "BgStart", map[string]any{"ID": "slow", "Cmd": []string{"sh", "-c", "echo first; sleep 3; echo last"}})

	code, body := get(t, w.url+"/fetch/BOX/fl/logs/slow")
	assert.Equal(t, 200, code, body)
	assert.Equal(t, "first\nlast\n", body, "what the process wrote after the event's 2 s timeout arrives too")

	// A client that stops following a quiet process ends the request at
	// once, not at the process's next output, and it is no failure.
	w.mustCall(t, "BOX", "fl", "BgStart", map[string]any{"ID": "long", "Cmd": []string{"sh", "-c", "echo first; sleep 3600"}})
	logged := len(w.logs.String())
	resp, err := http.Get(w.url + "/fetch/BOX/fl/logs/long")
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "first\n", line)
	resp.Body.Close()
	require.Eventually(t, func() bool { return w.InFlight() == 0 }, 10*time.Second, 10*time.Millisecond, "the request ended")
	after := w.logs.String()[logged:]
	assert.Contains(t, after, `msg="client went away"`)
	assert.NotContains(t, after, "level=WARN")
	assert.NotContains(t, after, "level=ERROR")

	code, body = get(t, w.url+"/fetch/BOX/fl/logs/nope")
	assert.Equal(t, 500, code)
	assert.Contains(t, body, `no background process "nope"`)
	assert.Equal(t, "true", w.mustCall(t, "BOX", "fl", "Running", nil), "the object and its container keep serving")
}

// seqBytes is the size of the output of seq 1 n.
func seqBytes(n int) int {
	total := 0
	for i := 1; i <= n; i++ {
		total += len(fmt.Sprint(i)) + 1
	}
	return total
}

// TestExecEndsWithItsEvent: a process exec'd in an event that ends
// without waiting for it is killed (the ABI's end of an event), while the
// container keeps running.
func TestExecEndsWithItsEvent(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "e", "Start", []string{"sleep", "3600"})
	pid := w.mustCall(t, "BOX", "e", "ExecLeftRunning", nil)
	r := w.mustCall(t, "BOX", "e", "Exec", map[string]any{"Cmd": []string{"sh", "-c",
		"for i in $(seq 100); do kill -0 " + pid + " 2>/dev/null || { echo gone; exit; }; sleep 0.05; done; echo alive"}})
	assert.Contains(t, r, `"Stdout":"gone\n"`, "the exec'd sleep %s was killed when its event ended", pid)
	assert.Equal(t, "true", w.mustCall(t, "BOX", "e", "Running", nil))
}

// TestExecBeyondTheEventsCap: an event holds at most 64 processes; the
// 65th exec fails with TOOLARGE when its handles are handed over (and that
// process is killed), and a process the SDK has waited for no longer
// counts: its handle was kept until the event ended, so an event could
// run only 64 execs in all.
func TestExecBeyondTheEventsCap(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "cap", "Start", []string{"sleep", "3600"})
	assert.Equal(t, `"65th: 64 processes are open in this event, the limit is 64 (too-large=true); after: \u003cnil\u003e"`,
		w.mustCall(t, "BOX", "cap", "ExecBeyondCap", nil))
	assert.Equal(t, `"0\n"`, w.mustCall(t, "BOX", "cap", "Count", "sleep 60[01]"), "no sleep is left running")
}

// TestExecGivenUpLeavesNoProcess: execs whose pending handle the guest
// closes at once, or a few milliseconds on, while the process starts leave
// no process in the container, through the agent and through runc. Through
// runc the start was canceled with the caller's context: the shim could
// start the process after the canceled call returned, and its removal,
// canceled too, failed ('process must be stopped before deletion'), so the
// process ran on with nobody to end it.
func TestExecGivenUpLeavesNoProcess(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", withRuncBox, data)
	for _, b := range []string{"BOX", "RUNCBOX"} {
		w.mustCall(t, b, "g", "Start", []string{"sleep", "3600"})
		for _, delay := range []int{0, 2, 5, 10} {
			w.mustCall(t, b, "g", "RawExecCloseEarly", [2]int{5, delay})
		}
		// The starts given up on finish in the background (slowly through
		// runc: then this exec waits behind them).
		assert.Eventually(t, func() bool {
			_, left := w.call(t, b, "g", "Count", "sleep 602")
			return left == `"0\n"`
		}, time.Minute, 500*time.Millisecond, "%s: a sleep 602 is left running", b)
	}
}

// TestExecEndsWithItsChildren: the end of an event that did not wait for
// its exec kills what the exec started too (a shell's children, in its
// process group), through the agent. Only the shell was killed; its sleeps
// ran on, owned by nobody (new-user trial: a sandbox script's children
// outlived its timed-out request).
func TestExecEndsWithItsChildren(t *testing.T) {
	assertEventEndsItsExecs(t, "ExecShellLeftRunning", "sleep 359[89]")
}

// assertEventEndsItsExecs calls method of a BOX object whose container
// sleeps, and asserts that soon after that event no process whose
// arguments match pattern is left in the container.
func assertEventEndsItsExecs(t *testing.T, method, pattern string) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "c", "Start", []string{"sleep", "3600"})
	w.mustCall(t, "BOX", "c", method, nil)
	assert.Eventually(t, func() bool { return w.mustCall(t, "BOX", "c", "Count", pattern) == `"0\n"` },
		5*time.Second, 100*time.Millisecond, "the event's end killed its processes")
}

// TestSignalStopPausesTheContainer: SIGSTOP from the object stops the
// container's main process, not the agent: the object's execs still run,
// and other objects' requests are served meanwhile; SIGCONT lets the main
// process go on. Sent to the agent, the next exec waited for good while it
// held the instance, and every request of the host waited behind it.
func TestSignalStopPausesTheContainer(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "p", "Start", []string{"sh", "-c", "while true; do date +%s%N > /tmp/beat; sleep 0.05; done"})
	beat := func() string {
		r := w.mustCall(t, "BOX", "p", "Exec", map[string]any{"Cmd": []string{"cat", "/tmp/beat"}})
		return r
	}
	assert.Eventually(t, func() bool { return strings.Contains(beat(), `"Code":0`) }, 10*time.Second, 50*time.Millisecond)

	w.mustCall(t, "BOX", "p", "Signal", int(syscall.SIGSTOP))
	time.Sleep(200 * time.Millisecond) // a beat written as it stopped
	stopped := beat()
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, stopped, beat(), "the main process stopped; execs still run")
	assert.Equal(t, "0", w.mustCall(t, "STORE", "other", "Events", nil), "other objects are served")

	w.mustCall(t, "BOX", "p", "Signal", int(syscall.SIGCONT))
	assert.Eventually(t, func() bool { return beat() != stopped }, 10*time.Second, 50*time.Millisecond, "it goes on")
	assert.Equal(t, "true", w.mustCall(t, "BOX", "p", "Running", nil))
}

// TestABlockedContainerCallHoldsOnlyItsObject: while one object's exec
// waits (its agent was stopped by an operator: the start waits up to
// containers.ExecStartTimeout), the other objects and the Worker requests
// of the same, only instance are served at once. The exec was a blocking
// import that held the instance, and everything on it waited.
func TestABlockedContainerCallHoldsOnlyItsObject(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest+"[limits]\ninstances = 1\n", data)
	w.mustCall(t, "BOX", "stuck", "Start", []string{"sleep", "3600"})
	c, ok := w.services.containers.Backend().Get("Box", idFor(t, w, "stuck"))
	require.True(t, ok)
	require.NoError(t, syscall.Kill(int(c.Pid()), syscall.SIGSTOP)) // its agent
	defer syscall.Kill(int(c.Pid()), syscall.SIGCONT)

	blocked := make(chan string, 1)
	go func() {
		_, body := w.call(t, "BOX", "stuck", "Exec", map[string]any{"Cmd": []string{"true"}})
		blocked <- body
	}()
	time.Sleep(500 * time.Millisecond) // the exec waits on the agent
	for i := range 5 {
		start := time.Now()
		code, body := get(t, w.url+"/alone")
		assert.Equal(t, 200, code, body)
		w.mustCall(t, "STORE", "other", "Events", nil)
		assert.Less(t, time.Since(start), 2*time.Second, "round %d waited behind the blocked exec", i)
	}
	select {
	case body := <-blocked:
		t.Fatalf("the exec did not wait on the stopped agent: %s", body)
	default:
	}
	assert.Contains(t, <-blocked, "context deadline exceeded", "the exec's start ends at its bound")
}

// TestUntakenExecsCountAgainstTheCap: execs whose results an event never
// takes (raw container_exec) count against its 64 processes from the
// call: the 65th is refused at once. The cap was checked only when the
// handles were handed over, so an event ran 100 such processes.
func TestUntakenExecsCountAgainstTheCap(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "m", "Start", []string{"sleep", "3600"})
	assert.Equal(t, `"started 64, then container_exec: status 12; running: 63\n"`, w.mustCall(t, "BOX", "m", "RawExecMany", 100),
		"64 started, one given up (killed) to count")
	assert.Eventually(t, func() bool { return w.mustCall(t, "BOX", "m", "Count", "sleep 600") == `"0\n"` },
		5*time.Second, 100*time.Millisecond, "the event's end killed them")
}

// TestExecResultTakenForAnotherScopeEndsWithItsEvent: an exec's result
// taken with call_result for scope 0 (the instance) still belongs to the
// event that started it, and its process ends with that event. Its handles
// went to the scope that took them, and the process outlived its event.
func TestExecResultTakenForAnotherScopeEndsWithItsEvent(t *testing.T) {
	assertEventEndsItsExecs(t, "RawExecForScope", "sleep 601")
}

// TestExecAsTheContainerExits: an exec that meets the container's main
// process exiting (an entrypoint that ends at once) runs, is killed with
// the container (137), or says the container is not running
// (sdk.ErrNotRunning), not what failed inside: it said "reading the
// container's stack limit: no such process" or "connecting to the agent:
// ... connection refused".
func TestExecAsTheContainerExits(t *testing.T) {
	assertExecsAsContainersExit(t, containersManifest, "BOX", 8)
}

// assertExecsAsContainersExit starts n containers of binding whose
// entrypoint ends at once and execs into each at once: each exec runs, is
// killed with its container, or says the container is not running.
func assertExecsAsContainersExit(t *testing.T, manifestText, binding string, n int) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", manifestText, data)
	for i := range n {
		r := w.mustCall(t, binding, fmt.Sprint("gone", i), "StartThenExec", []string{"true"})
		assert.Contains(t, []string{`"\u003cnil\u003e (not-running=false)"`, `"the process exited with code 137 (not-running=false)"`,
			`"wharf: the container is not running (not-running=true)"`}, r, "exec %d", i)
	}
}

// TestSignalAsTheContainerExits: a signal that meets the container's main
// process exiting is sent, or says the container is not running
// (sdk.ErrNotRunning), not containerd's "process already finished: not
// found" (an I/O error).
func TestSignalAsTheContainerExits(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	for i := range 6 {
		var answers string
		require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", fmt.Sprint("gone", i), "StartThenSignal", []string{"true"})), &answers))
		for _, answer := range strings.Split(answers, "; ") {
			assert.Contains(t, []string{"<nil> (not-running=false)", "wharf: the container is not running (not-running=true)"}, answer, "container %d", i)
		}
	}
}

// TestRuncExecAsTheContainerExits: through runc (init = false) too, an
// exec that meets the container's main process exiting says the container
// is not running. Runc's words were passed on: "cannot exec in a stopped
// container" or "namespace path: lstat /proc/N/ns/ipc: no such file or
// directory" (none of the errors lostTheContainer knows).
func TestRuncExecAsTheContainerExits(t *testing.T) {
	assertExecsAsContainersExit(t, withRuncBox, "RUNCBOX", 6)
}
