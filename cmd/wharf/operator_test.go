package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// wharfCmd runs the real binary and returns its combined output and exit
// code.
func wharfCmd(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testutil.BuildWharf(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

// serveWebapp serves examples/webapp in a new data directory and starts
// object alice's container with a request, whose page it returns.
func serveWebapp(t *testing.T) (data string, srv *testutil.Serve, page []byte) {
	data = testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	srv = testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "webapp"), "--listen", "127.0.0.1:0", "--data-dir", data)
	resp, err := http.Get(srv.URL + "/s/alice/index.html")
	require.NoError(t, err)
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	return data, srv, page
}

// TestOperatorCLI runs examples/webapp and reaches its containers from the
// terminal: ps, logs, exec (with stdin, an exit code and a TTY), stop,
// destroy, the errors an operator can cause, and /metrics on the admin
// socket.
func TestOperatorCLI(t *testing.T) {
	data, srv, page := serveWebapp(t)
	dd := "--data-dir=" + data
	fi, err := os.Stat(admin.SocketPath(data))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the owner can use the admin socket")
	tmp, _ := filepath.Glob(filepath.Join(data, ".admin-*"))
	assert.Empty(t, tmp)

	out, code := wharfCmd(t, "", "ps", dd)
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^BINDING\s+NAME\s+CLASS\s+OBJECT\s+STATE\s+AGE\s+ADDRESS\s+PID\s+LABELS$`, out)
	assert.Regexp(t, `(?m)^APP\s+alice\s+App\s+[0-9a-f]{16}\s+running\s+\d+s\s+10\.\d+\.\d+\.\d+\s+\d+\s+example=webapp$`, out,
		"the name the object was created from")
	out, code = wharfCmd(t, "", "ps", dd, "--format", "json")
	require.Equal(t, 0, code, out)
	var listed []admin.Container
	require.NoError(t, json.Unmarshal([]byte(out), &listed), out)
	require.Len(t, listed, 1)
	assert.Equal(t, "alice", listed[0].Name)
	assert.Equal(t, "running", listed[0].State)
	assert.Equal(t, []string{"APP"}, listed[0].Bindings)
	out, code = wharfCmd(t, "", "ps", dd, "--format", "yaml")
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: --format must be table or json, got \"yaml\"\n", out)

	// inspect, by name and by an id prefix alone.
	out, code = wharfCmd(t, "", "inspect", dd, "APP", "alice")
	require.Equal(t, 0, code, out)
	var obj admin.Object
	require.NoError(t, json.Unmarshal([]byte(out), &obj), out)
	assert.Equal(t, "alice", obj.Name)
	assert.Equal(t, listed[0].Object, obj.Object)
	assert.Equal(t, "wharf.test/busybox:latest", obj.Image)
	require.NotNil(t, obj.Container)
	assert.Equal(t, "running", obj.Container.State)
	require.NotNil(t, obj.Stats, "a running container's cgroup counters")
	assert.Greater(t, obj.Stats.MemoryBytes, uint64(0))
	assert.Equal(t, uint64(1024<<20), obj.Stats.MemoryLimitBytes, "basic: 1 GiB")
	assert.Greater(t, obj.Stats.Pids, uint64(0))
	assert.Greater(t, obj.Stats.CPUNanos, uint64(0))
	out, code = wharfCmd(t, "", "inspect", dd, "APP", "nobody")
	require.Equal(t, 0, code, out)
	var unused admin.Object
	require.NoError(t, json.Unmarshal([]byte(out), &unused), out)
	assert.False(t, unused.Live)
	assert.Empty(t, unused.Storage, "an object that never touched its storage has no database")
	out2, code := wharfCmd(t, "", "inspect", dd, "id:"+obj.Object[:10])
	require.Equal(t, 0, code, out2)
	assert.Contains(t, out2, `"name": "alice"`)
	out, code = wharfCmd(t, "", "inspect", dd, "alice")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `name an object by <binding> <name>, <binding> id:HEX or id:HEX alone (got "alice" alone)`)
	out, code = wharfCmd(t, "", "inspect", dd, "id:ffff")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `no container of any class has an object id starting with "ffff"`)

	// stats: live counters from the cgroup.
	out, code = wharfCmd(t, "", "stats", dd, "--no-stream", "--interval", "200ms")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `(?m)^BINDING\s+NAME\s+CLASS\s+OBJECT\s+CPU %\s+MEM\s+LIMIT\s+MEM %\s+PIDS\s+READ\s+WRITTEN$`, out)
	assert.Regexp(t, `(?m)^APP\s+alice\s+App\s+[0-9a-f]{16}\s+\d+\.\d\s+[\d.]+[KM]iB\s+1\.0GiB\s+\d+\.\d\s+\d+\s+\S+\s+\S+$`, out)

	out, code = wharfCmd(t, "", "logs", dd, "APP", "alice")
	assert.Equal(t, 0, code, out)
	assert.Equal(t, "serving "+strings.TrimSpace(string(page))+" on :8080\n", out)

	out, code = wharfCmd(t, "", "exec", dd, "APP", "alice", "--", "sh", "-c", "cat /www/index.html; echo oops >&2; exit 3")
	assert.Equal(t, 3, code, "the command's exit code is wharf's")
	assert.Contains(t, out, string(page))
	assert.Contains(t, out, "oops")
	out, code = wharfCmd(t, "typed in\n", "exec", "-it", dd, "APP", "alice", "--", "cat")
	assert.Equal(t, 0, code)
	assert.Equal(t, "typed in\n", out, "stdin reaches the command (docker's -it is accepted: stdin is no terminal here)")
	out, code = wharfCmd(t, "", "exec", dd, "APP", "alice", "--", "sh", "-c",
		`printf '#!/nonexistent/sh\n' >/tmp/nointerp; printf '\001\002\003\004\005\006\007\010' >/tmp/garbage; chmod 755 /tmp/nointerp /tmp/garbage`)
	require.Equal(t, 0, code, out)
	// A program that cannot be run exits as in a shell.
	for _, c := range []struct {
		program string
		code    int
		says    string
	}{
		{"/bin/nope", 127, "executable file not found: /bin/nope"},
		{"/etc/passwd", 126, "starting /etc/passwd: permission denied"},
		{"/tmp/nointerp", 127, "starting /tmp/nointerp: no such file or directory (the interpreter of its #! line, or the loader it needs, does not exist)"},
		{"/tmp/garbage", 126, "starting /tmp/garbage: exec format error"},
	} {
		out, code = wharfCmd(t, "", "exec", dd, "APP", "alice", "--", c.program)
		assert.Equal(t, c.code, code, "%s: %s", c.program, out)
		assert.Equal(t, "wharf: exec ["+c.program+"]: "+c.says+"\n", out)
	}
	if _, err := exec.LookPath("script"); err == nil { // util-linux: run wharf on a pseudo-terminal
		cmd := exec.Command("script", "-qec", testutil.BuildWharf(t)+" exec "+dd+" APP alice -- tty", "/dev/null")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "/dev/pts/", "a terminal gets a TTY in the container")
	}

	// /metrics on the admin socket.
	metrics, err := admin.NewClient(data).Metrics(context.Background())
	require.NoError(t, err)
	assert.Contains(t, metrics, `wharf_container_starts_total{class="App"} 1`)
	assert.Contains(t, metrics, `wharf_containers_running{class="App"} 1`)
	assert.Contains(t, metrics, `wharf_container_execs_total{class="App"} 4`)
	assert.Contains(t, metrics, `wharf_container_start_seconds_bucket{class="App",le="+Inf"} 1`)
	assert.Contains(t, metrics, `wharf_container_failures_total{class="App",kind="start"} 0`, "failures show before any happened")

	// tail follows the log live, filtered.
	startTail := func(args ...string) (*testutil.LogBuffer, func()) {
		var out testutil.LogBuffer
		cmd := exec.Command(testutil.BuildWharf(t), append([]string{"tail", dd}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		return &out, func() { cmd.Process.Kill(); cmd.Wait() }
	}
	byClass, stopByClass := startTail("--class", "App")
	defer stopByClass()
	errorsOnly, stopErrors := startTail("--level", "error", "--format", "json")
	defer stopErrors()
	time.Sleep(2 * time.Second) // let them connect
	resp, err := http.Get(srv.URL + "/s/bob/index.html")
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool { return strings.Contains(byClass.String(), "container:App#") }, 30*time.Second, 50*time.Millisecond,
		"tail shows bob's container starting: %s", byClass.String())
	assert.Regexp(t, `(?m)^\S+ INFO container:App#[0-9a-f]{8} start .*class=App .*took=`, byClass.String())
	assert.Empty(t, errorsOnly.String(), "nothing at error level")
	out, code = wharfCmd(t, "", "tail", dd, "--level", "loud")
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: --level must be debug, info, warn or error, got \"loud\"\n", out)
	out, code = wharfCmd(t, "", "tail", dd, "--class", "Other")
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: --class: no Durable Object class \"Other\" (the manifest has: App)\n", out)
	out, code = wharfCmd(t, "", "tail", dd, "--object", "bob")
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: --object \"bob\" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)\n", out)
	out, code = wharfCmd(t, "", "destroy", dd, "APP", "bob")
	require.Equal(t, 0, code, out)

	// Errors an operator can cause.
	out, code = wharfCmd(t, "", "stop", dd, "NOPE", "alice")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `no Durable Object binding "NOPE" (the manifest has: APP)`)
	out, code = wharfCmd(t, "", "exec", dd, "APP", "nobody", "--", "true")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "APP nobody has no container")
	empty := t.TempDir()
	out, code = wharfCmd(t, "", "ps", "--data-dir", empty)
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: no wharf serve is running with this data directory: no socket at "+admin.SocketPath(empty)+
		"\nwharf: run this in the plugin's directory, or pass the --data-dir wharf serve uses\n", out)

	out, code = wharfCmd(t, "", "exec", dd, "APP", "alice")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "usage: wharf exec <binding> <name|id:HEX> | id:HEX -- cmd [args...]")

	// An object can be named by the id prefix ps shows.
	out, _ = wharfCmd(t, "", "ps", dd)
	prefix := regexp.MustCompile(`(?m)^APP\s+alice\s+App\s+([0-9a-f]{16})`).FindStringSubmatch(out)
	require.NotNil(t, prefix, out)
	out, code = wharfCmd(t, "", "stop", dd, "APP", "id:"+prefix[1])
	require.Equal(t, 0, code, out)
	assert.Equal(t, "APP id:"+prefix[1]+"\n", out, "it names what it stopped, as docker stop does")
	resp, err = http.Get(srv.URL + "/s/alice/_state")
	require.NoError(t, err)
	state, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(state), `"Status":"stopped"`)
	assert.Contains(t, string(state), `"ExitCode":0`, "the object sees the exit code of a container the operator stopped (it saw -1, a destroyed one's)")
	out, _ = wharfCmd(t, "", "ps", dd)
	assert.NotContains(t, out, "App ", "ps shows running containers")
	out, _ = wharfCmd(t, "", "ps", "-a", dd)
	assert.Contains(t, out, "exited (code 0): stopped by the operator", "ps -a shows the exited ones too")
	out, code = wharfCmd(t, "", "stop", dd, "APP", "alice")
	require.Equal(t, 0, code, out)
	out, _ = wharfCmd(t, "", "ps", "-a", dd)
	assert.Contains(t, out, "exited (code 0): stopped by the operator", "stopping an exited container leaves it (it removed it)")
	// It runs with nothing any more (bob's was destroyed: alice's is the
	// only container): no log keeper, network namespace or veth pair.
	for deadline := time.Now().Add(20 * time.Second); len(containerd.NetworkLeftovers(data)) > 0 ||
		slices.ContainsFunc(containerd.HostLeftovers(data), func(s string) bool { return strings.HasPrefix(s, "log keeper") }); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the exited container was not released: %q", containerd.HostLeftovers(data))
		}
	}
	out, code = wharfCmd(t, "", "inspect", dd, "APP", "alice")
	require.Equal(t, 0, code, out)
	obj = admin.Object{}
	require.NoError(t, json.Unmarshal([]byte(out), &obj), out)
	require.NotNil(t, obj.Container)
	assert.Equal(t, "exited (code 0): stopped by the operator", obj.Container.State)
	assert.Equal(t, map[string]string{"example": "webapp"}, obj.Container.Labels, "its labels are kept with it")
	assert.Empty(t, obj.Container.Address, "its address went back to the pool: perhaps another container's now")
	assert.Zero(t, obj.Container.Pid, "so did its pid")
	assert.NotContains(t, obj.AllLabels, "wharf.net.ip", "and its network's labels")
	out, _ = wharfCmd(t, "", "ps", "-a", dd)
	assert.Regexp(t, `(?m)^APP\s+alice\s+App\s+.*exited \(code 0\): stopped by the operator.*example=webapp$`, out)
	out, code = wharfCmd(t, "", "logs", dd, "APP", "alice")
	assert.Equal(t, 0, code, out)
	assert.Equal(t, "serving "+strings.TrimSpace(string(page))+" on :8080\n", out, "with its output")
	out, code = wharfCmd(t, "", "logs", dd, "APP", "id:ffff")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `no container of class App has an object id starting with "ffff"`)
	out, code = wharfCmd(t, "", "destroy", dd, "id:"+prefix[1])
	require.Equal(t, 0, code, out)
	assert.Equal(t, "id:"+prefix[1]+"\n", out)
	out, _ = wharfCmd(t, "", "ps", "-a", dd)
	assert.NotContains(t, out, "App ")
	resp, err = http.Get(srv.URL + "/s/alice/index.html")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, "the next request starts it again")

	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
	assert.NoFileExists(t, admin.SocketPath(data), "the socket is removed on shutdown")
}

// TestOperatorExecEndsWithItsChildren: a `wharf exec` whose client is
// gone (killed, its terminal closed) ends the command with what it started,
// as an object's exec nobody waits for does. Only the command was killed: a
// shell's `sleep 3598 &` ran on in the container with nobody to end it.
func TestOperatorExecEndsWithItsChildren(t *testing.T) {
	assertGoneClientEndsSleeps(t, "359[89]", "", func(dd string) *exec.Cmd {
		return exec.Command(testutil.BuildWharf(t), "exec", dd, "APP", "alice", "--", "sh", "-c", "sleep 3598 & sleep 3599")
	})
}

// TestOperatorTerminalExecEndsWithItsJobs: an interactive shell on a
// terminal runs each job in a process group of its own; when the client is
// gone, its background job goes with it. Killing the shell's group left
// `sleep 3597 &` running in the container.
func TestOperatorTerminalExecEndsWithItsJobs(t *testing.T) {
	_, err := exec.LookPath("script")
	require.NoError(t, err, "needs script (Debian's bsdutils) to run wharf on a pseudo-terminal")
	assertGoneClientEndsSleeps(t, "359[67]", "sleep 3597 &\nsleep 3596\n", func(dd string) *exec.Cmd {
		return exec.Command("script", "-qec", testutil.BuildWharf(t)+" exec "+dd+" APP alice -- sh -i", "/dev/null")
	})
}

// assertGoneClientEndsSleeps serves examples/webapp, starts client (a
// wharf exec into object alice's container, given the --data-dir flag)
// with input, waits until the two sleeps whose arguments match pattern
// run, kills the client and asserts the sleeps are gone.
func assertGoneClientEndsSleeps(t *testing.T, pattern, input string, client func(dataDirFlag string) *exec.Cmd) {
	data, _, _ := serveWebapp(t)
	dd := "--data-dir=" + data
	count := func() string {
		out, _ := wharfCmd(t, "", "exec", dd, "APP", "alice", "--", "sh", "-c", "ps -o args | grep -c '^sleep "+pattern+"$'")
		return strings.TrimSpace(out)
	}
	cmd := client(dd)
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	io.WriteString(in, input)
	require.Eventually(t, func() bool { return count() == "2" }, 10*time.Second, 100*time.Millisecond, "the sleeps run")
	require.NoError(t, cmd.Process.Kill())
	cmd.Wait()
	assert.Eventually(t, func() bool { return count() == "0" }, 5*time.Second, 100*time.Millisecond, "both sleeps are gone")
}

// TestOperatorExecAsAUser: wharf exec --user (-u, as docker exec's) runs
// the command as a user of the image's /etc/passwd, by name or uid, with
// the groups an object's exec as that user gets; a user the image does not
// know, or a user:group, is refused with the reason and runs nothing; a
// user:group is no unknown user, but a syntax the exec does not take. Only
// a plugin could exec as another user.
func TestOperatorExecAsAUser(t *testing.T) {
	data, srv, _ := serveWebapp(t)
	dd := "--data-dir=" + data

	for _, c := range []struct {
		flags []string
		id    string
	}{
		{nil, "uid=0(root) gid=0(root) groups=0(root)"},
		{[]string{"--user", "app"}, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"},
		{[]string{"-u", "1000"}, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"},
		{[]string{"-u", "4321"}, "uid=4321 gid=0(root) groups=0(root)"},
	} {
		out, code := wharfCmd(t, "", append(append([]string{"exec", dd}, c.flags...), "APP", "alice", "--", "id")...)
		assert.Equal(t, 0, code, "%q: %s", c.flags, out)
		assert.Equal(t, c.id+"\n", out, "%q", c.flags)
	}
	for _, c := range []struct{ user, says string }{
		{"nosuch", `unknown user: user "nosuch" does not exist in the image's /etc/passwd`},
		{"1000:50", `bad exec: user "1000:50": an exec's user is a name or a uid of the image's /etc/passwd, not user:group (the groups come from the image's /etc/passwd and /etc/group)`},
	} {
		out, code := wharfCmd(t, "", "exec", dd, "-u", c.user, "APP", "alice", "--", "touch", "/tmp/ran")
		assert.Equal(t, 1, code, "%s: %s", c.user, out)
		assert.Equal(t, "wharf: "+c.says+"\n", out)
	}
	out, code := wharfCmd(t, "", "exec", dd, "APP", "alice", "--", "ls", "/tmp")
	require.Equal(t, 0, code, out)
	assert.NotContains(t, out, "ran", "a refused user runs nothing")
	require.NoError(t, srv.Stop(30*time.Second))
}

// TestOperatorRefusesEmptyNames: an empty binding or name cannot be in the
// admin API's paths (the answer was "404 page not found", "Method Not
// Allowed" or an empty error), so the commands refuse it with the reason
// before asking any wharf.
func TestOperatorRefusesEmptyNames(t *testing.T) {
	dataDir := t.TempDir() // no wharf serve: the arguments are refused first
	const want = `the binding and the name must not be empty ("*" is any binding, id:HEX names an object by its id)`
	for _, args := range [][]string{
		{"inspect", "COUNTER", ""},
		{"inspect", "", "alice"},
		{"stop", "COUNTER", ""},
		{"destroy", "", ""},
		{"logs", "*", ""},
		{"exec", "COUNTER", "", "--", "ls"},
		{"exec", "", "alice", "ls"},
	} {
		_, err := run(t, append(args, "--data-dir", dataDir)...)
		require.Error(t, err, "%q", args)
		assert.Equal(t, want, err.Error(), "%q", args)
	}
	_, err := run(t, "inspect", "COUNTER", "alice", "--data-dir", dataDir)
	assert.ErrorIs(t, err, admin.ErrNotRunning, "a name is asked of the wharf")
}

// TestOperatorArgumentErrors: a command given no object, a bare name or
// too many words says what it got, before asking any wharf.
func TestOperatorArgumentErrors(t *testing.T) {
	dataDir := t.TempDir()
	const object = "name an object by <binding> <name>, <binding> id:HEX or id:HEX alone"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect"}, object + " (got 0 arguments)"},
		{[]string{"stop", "alice"}, object + ` (got "alice" alone)`},
		{[]string{"logs", "APP", "alice", "extra"}, object + " (got 3 arguments)"},
		{[]string{"exec", "APP", "alice"}, "usage: wharf exec <binding> <name|id:HEX> | id:HEX -- cmd [args...] (got 2 arguments)"},
		{[]string{"exec", "id:ab"}, `usage: wharf exec <binding> <name|id:HEX> | id:HEX -- cmd [args...] (got "id:ab" alone)`},
		{[]string{"ps", dataDir}, "wharf ps takes no plugin directory: it reaches a running wharf serve through its data directory, e.g. --data-dir " +
			filepath.Join(dataDir, ".wharf")},
		{[]string{"stats", "x", "y"}, "wharf stats takes no arguments (got 2 arguments)"},
		{[]string{"tail", "x"}, `wharf tail takes no arguments (got "x" alone)`},
	} {
		_, err := run(t, append(tc.args, "--data-dir", dataDir)...)
		require.Error(t, err, "%q", tc.args)
		assert.Equal(t, tc.want, err.Error(), "%q", tc.args)
	}
}

// TestTailTextPutsOutputOnLines: wharf tail's text format prints a panic's
// stack and a failed build's output after their line, as wharf serve does.
func TestTailTextPutsOutputOnLines(t *testing.T) {
	var out bytes.Buffer
	w := &jsonToText{w: &out}
	_, err := w.Write([]byte(`{"time":"T","level":"ERROR","msg":"reload failed","err":"exit status 1","output":"# p\n./main.go:3:1: bad","plugin":"p"}` + "\n"))
	require.NoError(t, err)
	assert.Equal(t, "T ERROR reload failed err=\"exit status 1\" plugin=p\n\t# p\n\t./main.go:3:1: bad\n", out.String())
}

// TestTailTextKeepsTheRecordsOrder: wharf tail's text format writes the
// attributes in the order of the record, as wharf serve does (the plugin
// and request id first), with a group's members named group.member.
func TestTailTextKeepsTheRecordsOrder(t *testing.T) {
	var out bytes.Buffer
	w := &jsonToText{w: &out}
	_, err := w.Write([]byte(`{"time":"2026-12-02T14:17:52.161041435Z","level":"INFO","msg":"fetched","plugin":"p","request_id":"r1","url":"/x","req":{"method":"GET","n":2},"b":true}` + "\n" + `not json` + "\n"))
	require.NoError(t, err)
	assert.Equal(t, "2026-12-02T14:17:52.161Z INFO fetched plugin=p request_id=r1 url=/x req.method=GET req.n=2 b=true\nnot json\n", out.String(),
		"the time to the millisecond, as wharf serve writes it")
}

// TestTailTextWritesACutRecordAsItIs: a line that is not a whole JSON
// object (cut short, say) is written as it is, not as a record of the
// members read before its end.
func TestTailTextWritesACutRecordAsItIs(t *testing.T) {
	for _, line := range []string{`{`, `{"time":"T","level":"INFO","msg":"m"`, `{"time":"T","level":"INFO","msg":"m","g":{"a":1}`, `{"time":"T","msg":`, `[1]`, `null`, ``} {
		var out bytes.Buffer
		w := &jsonToText{w: &out}
		_, err := w.Write([]byte(line + "\n"))
		require.NoError(t, err)
		assert.Equal(t, line+"\n", out.String())
	}
}

// TestTailTextKeepsGuestWordsOnTheirLine: wharf tail's text format quotes a
// name, a value or a message with a newline or a space in it, as wharf
// serve's does: a guest's attribute cannot start a line that reads as
// another record.
func TestTailTextKeepsGuestWordsOnTheirLine(t *testing.T) {
	var out bytes.Buffer
	w := &jsonToText{w: &out}
	_, err := w.Write([]byte(`{"time":"T","level":"INFO","msg":"m\nT ERROR forged","plugin":"p","k\nT ERROR forged plugin=q":"v","a":"x\ny","has space":"","e":""}` + "\n"))
	require.NoError(t, err)
	assert.Equal(t, `T INFO "m\nT ERROR forged" plugin=p "k\nT ERROR forged plugin=q"=v a="x\ny" "has space"="" e=""`+"\n", out.String())
}

// TestPsTableStaysAligned: wharf ps keeps its columns with any object
// name: a long one is cut with an ellipsis (the table fits a terminal;
// --no-trunc and --format json show it whole), one with a tab or a
// newline is quoted. A 300-character name made every line of the table
// that wide, and a tab in a name moved the cells after it a column on.
func TestPsTableStaysAligned(t *testing.T) {
	long := strings.Repeat("session-", 37) + "last"
	list := []admin.Container{
		{Bindings: []string{"APP"}, Name: long, Class: "App", Object: strings.Repeat("a", 64), State: "running", Started: time.Now(), Address: "10.0.0.2", Pid: 11},
		{Bindings: []string{"APP"}, Name: "tab\there\nnewline", Class: "App", Object: strings.Repeat("b", 64), State: "running", Started: time.Now(), Address: "10.0.0.3", Pid: 12},
		{Bindings: []string{"APP"}, Name: "alice", Class: "App", Object: strings.Repeat("c", 64), State: "running", Started: time.Now(), Address: "10.0.0.4", Pid: 13},
		{Bindings: []string{"APP"}, Class: "App", Object: strings.Repeat("d", 64), State: "running", Started: time.Now(), Address: "10.0.0.5", Pid: 14},
	}
	var out bytes.Buffer
	require.NoError(t, printContainers(&out, list, false))
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 5, "a line per container: %s", out.String())
	class := strings.Index(lines[0], "CLASS")
	for i, line := range lines[1:] {
		r := []rune(line)
		require.Greater(t, len(r), class+3, line)
		assert.Equal(t, "App ", string(r[class:class+4]), "row %d's class is under CLASS: %q", i, line)
		assert.Less(t, len(r), 120, "row %d fits a terminal: %q", i, line)
	}
	assert.Contains(t, lines[1], " session-session-session-session-session…  App ", "a long name is cut to 40 characters")
	assert.Contains(t, lines[2], `"tab\there\nnewline"`, "a name with a tab or a newline is quoted")
	assert.Regexp(t, `^APP\s+-\s+App\s`, lines[4], "no name")

	out.Reset()
	require.NoError(t, printContainers(&out, list, true))
	assert.Contains(t, out.String(), long+"  App", "--no-trunc: whole")
}

// TestPsNoTruncShowsTheWholeObjectID: wharf ps --no-trunc shows an
// object's whole id (64 hex digits, the one that names an object without
// a container in id:HEX), as docker ps --no-trunc shows whole ids; it
// showed its first 16 digits, as ps does without it.
func TestPsNoTruncShowsTheWholeObjectID(t *testing.T) {
	data := t.TempDir()
	l, err := net.Listen("unix", admin.SocketPath(data))
	require.NoError(t, err)
	id := strings.Repeat("0123456789abcdef", 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/containers" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]admin.Container{{Bindings: []string{"APP"}, Name: "alice", Class: "App", Object: id,
			State: "running", Started: time.Now(), Address: "10.0.0.2", Pid: 11}})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	out, err := run(t, "ps", "--data-dir", data, "--no-trunc")
	require.NoError(t, err)
	assert.Regexp(t, `\nAPP\s+alice\s+App\s+`+id+`\s+running\s`, out)
	out, err = run(t, "ps", "--data-dir", data)
	require.NoError(t, err)
	assert.Regexp(t, `\nAPP\s+alice\s+App\s+`+id[:16]+`\s+running\s`, out, "cut without it")
	out, err = run(t, "ps", "--help")
	require.NoError(t, err)
	assert.Contains(t, out, "show names and object ids in full")
}

// TestStatsNoTruncShowsWholeNamesAndIDs: wharf stats --no-trunc shows an
// object's whole id and name, as ps --no-trunc does; stats had no such
// flag, and cut both always.
func TestStatsNoTruncShowsWholeNamesAndIDs(t *testing.T) {
	data := t.TempDir()
	l, err := net.Listen("unix", admin.SocketPath(data))
	require.NoError(t, err)
	id, name := strings.Repeat("0123456789abcdef", 4), strings.Repeat("session-", 6)+"last"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/stats" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]admin.ContainerStats{{Bindings: []string{"APP"}, Name: name, Class: "App", Object: id,
			At: time.Now(), MemoryBytes: 3 << 20, MemoryLimitBytes: 1 << 30, Pids: 2}})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	out, err := run(t, "stats", "--data-dir", data, "--no-stream", "--interval", "10ms", "--no-trunc")
	require.NoError(t, err)
	assert.Regexp(t, `\nAPP\s+`+name+`\s+App\s+`+id+`\s`, out)
	out, err = run(t, "stats", "--data-dir", data, "--no-stream", "--interval", "10ms")
	require.NoError(t, err)
	assert.Regexp(t, `\nAPP\s+session-session-\S+…\s+App\s+`+id[:16]+`\s`, out, "cut without it")
	out, err = run(t, "stats", "--help")
	require.NoError(t, err)
	assert.Contains(t, out, "show names and object ids in full")
}

// TestStatsOutput runs wharf stats against a stand-in for a running
// wharf's admin socket: on a terminal each table clears the screen before
// it, as top does; to a pipe (wharf stats | cat, > file) the tables come
// as plain text, a blank line between two.
func TestStatsOutput(t *testing.T) {
	data := t.TempDir()
	l, err := net.Listen("unix", admin.SocketPath(data))
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/stats" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]admin.ContainerStats{{Bindings: []string{"APP"}, Name: "alice", Class: "App",
			Object: strings.Repeat("ab", 32), At: time.Now(), CPUNanos: uint64(time.Now().UnixNano()), MemoryBytes: 3 << 20,
			MemoryLimitBytes: 1 << 30, Pids: 2}})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	// stats runs until three tables are out, then Ctrl-C ends it.
	stats := func(stdout *os.File, out func() string) {
		cmd := exec.Command(testutil.BuildWharf(t), "stats", "--data-dir", data, "--interval", "50ms")
		cmd.Stdout, cmd.Stderr = stdout, stdout
		require.NoError(t, cmd.Start())
		assert.Eventually(t, func() bool { return strings.Count(out(), "BINDING") >= 3 }, 10*time.Second, 20*time.Millisecond, "three tables")
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		require.NoError(t, cmd.Wait(), out())
	}
	table := regexp.MustCompile(`^BINDING\s+NAME\s+CLASS\s+OBJECT\s+CPU %\s+MEM\s+LIMIT\s+MEM %\s+PIDS\s+READ\s+WRITTEN\r?\n` +
		`APP\s+alice\s+App\s+abababababababab\s+\d+\.\d\s+3\.0MiB\s+1\.0GiB\s+0\.3\s+2\s+0B\s+0B\r?\n$`)

	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	piped, eof := readAll(r)
	stats(w, piped)
	w.Close()
	<-eof
	assert.NotContains(t, piped(), "\x1b", "no terminal codes in a pipe")
	tables := strings.Split(piped(), "\n\n")
	assert.GreaterOrEqual(t, len(tables), 3, piped())
	for i, tb := range tables {
		if i < len(tables)-1 {
			tb += "\n"
		}
		assert.Regexp(t, table, tb, "table %d", i)
	}

	// A pseudo-terminal, as a terminal emulator gives.
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	defer ptmx.Close()
	require.NoError(t, unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	onTTY, eof := readAll(ptmx)
	stats(pts, onTTY)
	pts.Close()
	<-eof // EIO once no one has the terminal open
	tables = strings.Split(onTTY(), "\x1b[H\x1b[2J")
	assert.Equal(t, "", tables[0], "the screen is cleared before the first table")
	assert.GreaterOrEqual(t, len(tables), 4, onTTY())
	for i, tb := range tables[1:] {
		assert.Regexp(t, table, tb, "table %d", i)
	}
}

// readAll reads r in the background until it fails (its end): read is
// what was read so far, eof closes then.
func readAll(r io.Reader) (read func() string, eof <-chan struct{}) {
	var mu sync.Mutex
	var buf []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			mu.Lock()
			buf = append(buf, b[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return string(buf)
	}, done
}
