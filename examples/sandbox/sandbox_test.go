package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestSandboxStreamsScriptOutput runs the example through the real wharf
// binary with a real container: output arrives while the script still
// runs, the session keeps its files, and nothing is left after shutdown.
func TestSandboxStreamsScriptOutput(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	start := time.Now()
	resp, err := http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader("echo one; sleep 1; echo two; echo oops >&2; touch /work/made-by-run-1"))
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	require.NoError(t, err)
	firstAt := time.Since(start)
	rest, _ := io.ReadAll(r)
	resp.Body.Close()
	doneAt := time.Since(start)
	assert.Equal(t, "one\n", first)
	// stderr is combined into the output, in the order written (one pipe
	// through the agent).
	assert.Equal(t, "two\noops\n", string(rest))
	assert.Less(t, firstAt+700*time.Millisecond, doneAt, "the first line arrived while the script still ran (%s vs %s)", firstAt, doneAt)

	resp, err = http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader("ls /work"))
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "made-by-run-1\n", string(out), "a session keeps its container between runs")

	resp, err = http.Post(srv.URL+"/run/s2", "text/plain", strings.NewReader("ls /work"))
	require.NoError(t, err)
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "", string(out), "another session has its own container")

	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
	assert.Empty(t, testutil.Processes(data), "a process of the test's containerd survived")
}

// TestSandboxExitCodesAndFiles: a failing script's output ends with its
// exit code; files go in and out of a session through the files API.
func TestSandboxExitCodesAndFiles(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	for script, want := range map[string]string{
		"exit 3":            "[exit status 3]\n",
		"echo hi; false":    "hi\n[exit status 1]\n",
		"echo fine":         "fine\n",
		"no-such-command-x": "sh: no-such-command-x: not found\n[exit status 127]\n",
	} {
		code, out := do("POST", "/run/s1", strings.NewReader(script))
		assert.Equal(t, 200, code, script)
		assert.Equal(t, want, out, script)
	}

	payload := make([]byte, 3<<20)
	rand.Read(payload)
	// The directories an upload's path lacks are made, as the hosted
	// Sandbox SDK's writeFile makes them.
	code, out := do("PUT", "/files/s1/work/up/deep/data.bin", bytes.NewReader(payload))
	require.Equal(t, 200, code, "no directory /work/up yet: %s", out)
	assert.Contains(t, out, `"size":3145728`)
	sum := sha256.Sum256(payload)
	_, out = do("POST", "/run/s1", strings.NewReader("sha256sum /work/up/deep/data.bin"))
	assert.Equal(t, hex.EncodeToString(sum[:])+"  /work/up/deep/data.bin\n", out, "the container sees the uploaded bytes")
	code, out = do("GET", "/files/s1/work/up/deep/data.bin", nil)
	assert.Equal(t, 200, code)
	assert.True(t, out == string(payload), "the download differs from the upload (%d bytes)", len(out))
	// A path through a file cannot be made: the answer says why. The
	// refused upload is small enough to be in the socket buffers before the
	// answer: a bigger one is answered and its connection reset while the
	// client still sends (64 KiB did not fit loopback's first send buffer).
	code, out = do("PUT", "/files/s1/work/up/deep/data.bin/x", bytes.NewReader(payload[:4<<10]))
	assert.Equal(t, 400, code, out)
	assert.Equal(t, "uploading: write /work/up/deep/data.bin/x: not a directory\n", out)
	code, out = do("GET", "/files/s1/work/up/deep/data.bin", nil)
	assert.Equal(t, 200, code, "the session serves on after a refused upload")
	assert.Equal(t, len(payload), len(out))

	code, out = do("GET", "/files/s1/work/nope.txt", nil)
	assert.Equal(t, 404, code, out)
	assert.Equal(t, "downloading: read /work/nope.txt: no such file or directory\n", out, "wharf: at most once, in front")
	code, out = do("GET", "/files/s1/work/up", nil)
	assert.Equal(t, 400, code, out)
	do("POST", "/run/s1", strings.NewReader("mkfifo /work/pipe"))
	start := time.Now()
	code, out = do("GET", "/files/s1/work/pipe", nil)
	assert.Equal(t, 400, code, out)
	assert.Contains(t, out, "not a file (a named pipe or a socket)")
	assert.Less(t, time.Since(start), 5*time.Second, "a named pipe is refused at once")
	// A careless script removes the directory scripts run in.
	do("POST", "/run/s1", strings.NewReader("cd / && rm -rf /work"))
	code, out = do("POST", "/run/s1", strings.NewReader("pwd"))
	assert.Equal(t, 200, code)
	assert.Equal(t, "/work\n", out, "the next script runs in a new /work")
	code, _ = do("POST", "/run/s1", strings.NewReader("true"))
	assert.Equal(t, 200, code, "the session serves on")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// TestSandboxListsDirectories: GET of a directory's URL with a final "/"
// lists it, each entry as the hosted Sandbox SDK's listFiles describes it
// (its type apart, the permission bits as ls shows them); the session's
// URL alone, with or without the "/", is the container's root (both were
// redirected to /files/, a URL of no session). A directory's URL without
// the "/" is a 400 that says to add it.
func TestSandboxListsDirectories(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	code, out := do("POST", "/run/s1", strings.NewReader("mkdir -p /work/sub/empty && echo hi > /work/sub/a.txt && "+
		"chmod 640 /work/sub/a.txt && chmod 750 /work/sub/empty && ln -s a.txt /work/sub/link && mkfifo /work/sub/pipe"))
	require.Equal(t, 200, code, out)
	type entry struct {
		Name         string `json:"name"`
		AbsolutePath string `json:"absolutePath"`
		RelativePath string `json:"relativePath"`
		Type         string `json:"type"`
		Mode         string `json:"mode"`
		Permissions  struct {
			Readable, Writable, Executable bool
		} `json:"permissions"`
		Target     string `json:"target"`
		ModifiedAt string `json:"modifiedAt"`
	}
	// list lists path, and leaves out each entry's modifiedAt (RFC 3339)
	// after checking that it is no later than now.
	list := func(path string) []entry {
		t.Helper()
		code, out := do("GET", path, nil)
		require.Equal(t, 200, code, "%s: %s", path, out)
		var entries []entry
		require.NoError(t, json.Unmarshal([]byte(out), &entries), "%s: %s", path, out)
		for i, e := range entries {
			modified, err := time.Parse(time.RFC3339, e.ModifiedAt)
			require.NoError(t, err, "%s", e.Name)
			assert.False(t, modified.After(time.Now()), "%s: %s", e.Name, e.ModifiedAt)
			entries[i].ModifiedAt = ""
		}
		return entries
	}
	entries := list("/files/s1/work/sub/")
	rwx := func(r, w, x bool) (p struct{ Readable, Writable, Executable bool }) {
		p.Readable, p.Writable, p.Executable = r, w, x
		return p
	}
	assert.Equal(t, []entry{
		{Name: "a.txt", AbsolutePath: "/work/sub/a.txt", RelativePath: "a.txt", Type: "file", Mode: "rw-r-----", Permissions: rwx(true, true, false)},
		{Name: "empty", AbsolutePath: "/work/sub/empty", RelativePath: "empty", Type: "directory", Mode: "rwxr-x---", Permissions: rwx(true, true, true)},
		{Name: "link", AbsolutePath: "/work/sub/link", RelativePath: "link", Type: "symlink", Mode: "rwxrwxrwx", Permissions: rwx(true, true, true), Target: "a.txt"},
		{Name: "pipe", AbsolutePath: "/work/sub/pipe", RelativePath: "pipe", Type: "other", Mode: "rw-r--r--", Permissions: rwx(true, true, false)},
	}, entries)
	code, out = do("GET", "/files/s1/work/sub/empty/", nil)
	assert.Equal(t, 200, code, out)
	assert.Equal(t, "[]\n", out)
	for _, path := range []string{"/files/s1/", "/files/s1"} {
		assert.Contains(t, list(path), entry{Name: "work", AbsolutePath: "/work", RelativePath: "work", Type: "directory", Mode: "rwxr-xr-x",
			Permissions: rwx(true, true, true)}, path)
	}

	code, out = do("GET", "/files/s1/work/sub/a.txt", nil)
	assert.Equal(t, 200, code, out)
	assert.Equal(t, "hi\n", out, "a file's URL still downloads it")
	code, out = do("GET", "/files/s1/work/sub", nil)
	assert.Equal(t, 400, code, out)
	assert.Equal(t, "downloading: /work/sub is a directory: end its URL with / to list it\n", out)
	code, out = do("GET", "/files/s1/work/nope/", nil)
	assert.Equal(t, 404, code, out)
	assert.Equal(t, "listing: list /work/nope: no such file or directory\n", out)
	code, out = do("GET", "/files/s1/work/sub/a.txt/", nil)
	assert.Equal(t, 400, code, out)
	assert.Equal(t, "listing: list /work/sub/a.txt: not a directory\n", out)
	code, out = do("PUT", "/files/s1", strings.NewReader("x"))
	assert.Equal(t, 400, code, out)
	assert.Equal(t, "uploading: write /: is a directory\n", out)
	require.NoError(t, srv.Stop(30*time.Second))
}

// TestSandboxPauseAndResume: /signal/{session}/STOP pauses the session's
// container (what runs in it stops, scripts still start) and wharf ps
// says it is paused, not running, as /ps does of its background process;
// CONT lets it go on. A signal it does not know is a bad request naming
// those it does.
func TestSandboxPauseAndResume(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	post := func(path, body string) (int, string) { return do("POST", path, strings.NewReader(body)) }
	ps := func() string {
		out, err := exec.Command(testutil.BuildWharf(t), "ps", "--data-dir", data).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	code, out := do("GET", "/nope/s9", nil)
	assert.Equal(t, 404, code, out)
	code, out = do("GET", "/run/s9", nil)
	assert.Equal(t, 405, code, out)
	code, out = post("/start/s1/ticker", "while :; do date +%s%N >> /work/ticks; sleep 0.05; done")
	require.Equal(t, 200, code, out)
	assert.Regexp(t, `(?m)^SANDBOX\s+s1\s+.*\brunning\b`, ps())
	assert.NotContains(t, ps(), "s9", "a route the sandbox does not have starts no container")

	code, out = post("/signal/s1/STOP", "")
	require.Equal(t, 200, code, out)
	assert.Equal(t, "sent SIGSTOP\n", out)
	assert.Eventually(t, func() bool { return regexp.MustCompile(`(?m)^SANDBOX\s+s1\s+.*\bpaused\b`).MatchString(ps()) },
		2*time.Second, 100*time.Millisecond, "each process stops as its SIGSTOP reaches it")
	assert.Eventually(t, func() bool { _, list := do("GET", "/ps/s1", nil); return strings.Contains(list, `"status":"paused"`) },
		2*time.Second, 100*time.Millisecond, "/ps tells the background process paused")
	_, before := post("/run/s1", "wc -l < /work/ticks")
	time.Sleep(500 * time.Millisecond)
	_, after := post("/run/s1", "wc -l < /work/ticks")
	assert.Equal(t, before, after, "the background process is paused; scripts still run")

	code, out = post("/signal/s1/sigcont", "")
	require.Equal(t, 200, code, out)
	assert.Regexp(t, `(?m)^SANDBOX\s+s1\s+.*\brunning\b`, ps())
	_, list := do("GET", "/ps/s1", nil)
	assert.Contains(t, list, `"status":"running"`, "/ps tells the background process running again")
	assert.Eventually(t, func() bool { _, now := post("/run/s1", "wc -l < /work/ticks"); return now != after },
		5*time.Second, 100*time.Millisecond, "it goes on")

	code, out = post("/signal/s1/PAUSE", "")
	assert.Equal(t, 400, code)
	assert.Equal(t, "signalling the sandbox: \"PAUSE\" is not one of CONT, HUP, INT, KILL, QUIT, STOP, TERM, USR1, USR2\n", out)
	code, _ = post("/run/s1", "true")
	assert.Equal(t, 200, code, "the session serves on")
}

// TestSandboxSignalStartsNoContainer: a signal to a session whose
// container was never started, or has exited, is a 409 saying it is not
// running and what starts one, and starts no container; the session serves on (its next
// script starts one).
func TestSandboxSignalStartsNoContainer(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	post := func(path string) (int, string) { return do("POST", path, strings.NewReader("")) }
	running := regexp.MustCompile(`(?m)^SANDBOX\s+s1\s`)
	ps := func() string {
		out, err := exec.Command(testutil.BuildWharf(t), "ps", "--data-dir", data).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	const notRunning = "signalling the sandbox: the container is not running: a request to another route (/run, say) starts one\n"

	code, out := post("/signal/s1/TERM")
	assert.Equal(t, 409, code)
	assert.Equal(t, notRunning, out)
	assert.NotRegexp(t, running, ps(), "a signal to a new session starts no container")

	code, out = post("/run/s1")
	require.Equal(t, 200, code, out)
	require.Regexp(t, running, ps())
	code, out = post("/signal/s1/TERM")
	require.Equal(t, 200, code, out)
	assert.Eventually(t, func() bool { return !running.MatchString(ps()) }, 10*time.Second, 100*time.Millisecond,
		"TERM ends the container's main shell, and so the container")
	for _, sig := range []string{"KILL", "HUP"} {
		code, out = post("/signal/s1/" + sig)
		assert.Equal(t, 409, code, sig)
		assert.Equal(t, notRunning, out, sig)
	}
	assert.NotRegexp(t, running, ps(), "a signal to an exited container starts none")

	code, out = do("POST", "/run/s1", strings.NewReader("echo again"))
	assert.Equal(t, 200, code)
	assert.Equal(t, "again\n", out, "the next script starts a container")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// TestSandboxRequestMeetingTheExitIs409: a request that comes as the
// session's container goes away (its main shell ended by a TERM just
// before) is served by a new container, or is a 409 saying the container
// is not running, whatever its route; it was a 500 of a script ("running
// the script: the container is not running") or of the process list, and
// a 400 of a file call with the agent's connection error ("connecting to
// the agent: dial unix …: connection refused").
func TestSandboxRequestMeetingTheExitIs409(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	type request struct {
		method, path, body string
		notRunning         []string // its answers when it meets the exit
	}
	// send sends r: it is served (200), or it met the container exiting
	// and says so (409).
	send := func(r request, round int) {
		code, out := do(r.method, r.path, strings.NewReader(r.body))
		if code != 200 {
			assert.Equal(t, 409, code, "%s %s (round %d): %s", r.method, r.path, round, out)
			assert.Contains(t, r.notRunning, out, "%s %s (round %d)", r.method, r.path, round)
		}
	}
	script := request{"POST", "/run/s1", "echo hi", []string{"running the script: the container is not running\n"}}
	term := request{"POST", "/signal/s1/TERM", "", []string{"signalling the sandbox: the container is not running: a request to another route (/run, say) starts one\n"}}
	for round := range 3 {
		for _, r := range []request{
			script,
			{"GET", "/files/s1/etc/passwd", "", []string{"downloading: read /etc/passwd: the container is not running\n"}},
			// An upload meets it as it creates the file, or as it
			// describes the file it wrote.
			{"PUT", "/files/s1/tmp/up", "x", []string{"uploading: write /tmp/up: the container is not running\n",
				"uploading: stat /tmp/up: the container is not running\n"}},
			{"GET", "/files/s1/tmp/", "", []string{"listing: list /tmp: the container is not running\n"}},
			{"GET", "/ps/s1", "", []string{"listing the processes: the container is not running\n"}},
		} {
			// A script starts a container (or meets the one the last
			// TERM is ending); the TERM ends it, and r comes as it goes.
			send(script, round)
			send(term, round)
			send(r, round)
		}
	}
	// The last request may have met the container the last TERM ends:
	// the next then starts one.
	assert.Eventually(t, func() bool {
		code, out := do("POST", "/run/s1", strings.NewReader("echo again"))
		return code == 200 && out == "again\n"
	}, 10*time.Second, 100*time.Millisecond, "the session serves on")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// TestSandboxFileNamesWithQueryCharacters: a file's name is the path
// after /files/{session}, decoded: an escaped '?' or '#' is part of the
// name (the Worker once passed the decoded path on as a URL, so
// /files/s1/tmp/a%3Fb wrote /tmp/a), and a control character is refused
// as a bad request, not a failure of the Worker.
func TestSandboxFileNamesWithQueryCharacters(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	code, out := do("PUT", "/files/s1/tmp/a%3Fb", strings.NewReader("query"))
	require.Equal(t, 200, code, out)
	code, out = do("PUT", "/files/s1/tmp/c%23d", strings.NewReader("fragment"))
	require.Equal(t, 200, code, out)
	_, out = do("POST", "/run/s1", strings.NewReader("ls /tmp"))
	assert.Equal(t, "a?b\nc#d\n", out)
	_, out = do("GET", "/files/s1/tmp/a%3Fb", nil)
	assert.Equal(t, "query", out)
	code, out = do("GET", "/files/s1/tmp/%00", nil)
	assert.Equal(t, 400, code, out)
	code, out = do("POST", "/start/s1/%0A", strings.NewReader("true"))
	assert.Equal(t, 400, code, out)
	require.NoError(t, srv.Stop(30*time.Second))
}

// TestSandboxRunsOnlyWholeScripts: a /run whose body is cut short (the
// client left after part of it) runs nothing, where the shell used to run
// the part that came, as it would any script ending there; a script over
// maxScript is a 413, and a huge body to /start no longer exhausts the
// instance's memory, ending another session's run with it.
func TestSandboxRunsOnlyWholeScripts(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	code, out := do("POST", "/run/s1", strings.NewReader("rm -f /work/cut-ran"))
	require.Equal(t, 200, code, out)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	part := "touch /work/cut-ran\n" // of a script promised as 1000 bytes
	_, err = fmt.Fprintf(conn, "POST /run/s1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", part)
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond) // the part reaches the session's event
	require.NoError(t, conn.Close())
	time.Sleep(2 * time.Second) // what it would run has run
	code, out = do("POST", "/run/s1", strings.NewReader("ls /work"))
	assert.Equal(t, 200, code)
	assert.Equal(t, "", out, "the cut script did not run")

	big := strings.Repeat("echo a\n", maxScript/7+1)
	code, out = do("POST", "/run/s1", strings.NewReader(big))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.True(t, strings.HasPrefix(out, "running the script: the script is over 1048576 bytes"), "%.200s", out)

	// A long run of another session while a 400 MB body arrives: read
	// whole, that body ended the instance (memory_mib 128), and the run with
	// it (a 500).
	other := make(chan string, 1)
	go func() {
		code, out := do("POST", "/run/s2", strings.NewReader("sleep 3; echo done"))
		other <- fmt.Sprint(code, " ", out)
	}()
	time.Sleep(time.Second)
	resp := refusedUpload(t, srv.URL, "/start/s3/p", 400<<20)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "200 done\n", <-other)
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// TestSandboxUploadToAFullDiskFailsAtOnce: an upload to a session whose
// disk is full answers at once with the disk's error, where the files
// API's Close waited for bytes that never came until the request's time
// limit (a 504 "worker exceeded its time limit" 30 s later, for 100 KB).
func TestSandboxUploadToAFullDiskFailsAtOnce(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	do := requests(t, srv.URL)
	// basic's writable layer is 4000 MB: fill most of it without writing
	// it, then the rest.
	code, out := do("POST", "/run/s1", strings.NewReader("fallocate -l 3700M /work/fill; dd if=/dev/zero of=/work/rest bs=64k 2>/dev/null; df / | tail -1"))
	require.Equal(t, 200, code, out)
	require.Regexp(t, `\s100%\s`, out, "the disk is full")
	start := time.Now()
	code, out = do("PUT", "/files/s1/work/small.bin", bytes.NewReader(make([]byte, 100<<10)))
	took := time.Since(start)
	assert.NotEqual(t, 200, code, out)
	assert.Contains(t, out, "no space left on device")
	assert.Less(t, took, 10*time.Second, "answered at once, not at the time limit")
	code, out = do("POST", "/run/s1", strings.NewReader("rm /work/fill /work/rest && echo freed"))
	assert.Equal(t, 200, code)
	assert.Equal(t, "freed\n", out)
	code, out = do("PUT", "/files/s1/work/small.bin", bytes.NewReader(make([]byte, 100<<10)))
	assert.Equal(t, 200, code, out)
	require.NoError(t, srv.Stop(30*time.Second))
}

// refusedUpload sends a POST of path with a body of size spaces on a
// connection of its own and returns the response, which the server may
// send, and close the connection with, before the body is all written:
// the writes that fail then are not the test's concern (an http.Client
// may return their error instead of the response).
func refusedUpload(t *testing.T, url, path string, size int64) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", path, size)
	require.NoError(t, err)
	go io.Copy(conn, io.LimitReader(zeros{}, size))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp
}

// zeros reads as endless spaces.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestSandboxContainerSurvivesHostCrash kills wharf serve with SIGKILL; the
// next start adopts the session's running container (its files are still
// there), and a clean stop then removes everything.
func TestSandboxContainerSurvivesHostCrash(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	dir := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	run := func(srv *testutil.Serve, script string) string {
		resp, err := http.Post(srv.URL+"/run/s1", "text/plain", strings.NewReader(script))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}

	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.Equal(t, "", run(srv, "touch /work/before-crash"))
	srv.Kill()

	srv = testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.True(t, srv.WaitLog("adopted=1", 5*time.Second), "the running container was adopted")
	assert.Equal(t, "before-crash\n", run(srv, "ls /work"), "the same container, not a new one")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// TestSandboxDevServerInBackground starts a dev server (busybox httpd) as
// a background process in one request; later requests fetch from it,
// follow its log from the start and from now, list it and kill it, and
// the followed log ends with it.
func TestSandboxDevServerInBackground(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveSandbox(t, data)
	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	// follow opens a log stream; its head arrives with the first log bytes.
	follow := func(from string) (*http.Response, error) {
		client := &http.Client{Timeout: 30 * time.Second} // a log that never shows the line fails, not hangs
		return client.Get(srv.URL + "/logs/s1/dev?from=" + from)
	}
	// lineWith reads lines until one contains s.
	lineWith := func(r *bufio.Reader, s string) string {
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err, "the log ended before a line with %q", s)
			if strings.Contains(line, s) {
				return line
			}
		}
	}

	_, out := post("/run/s1", "echo '<h1>hello</h1>' > /work/index.html")
	require.Equal(t, "", out)
	ps, err := http.Get(srv.URL + "/ps/s1")
	require.NoError(t, err)
	none, _ := io.ReadAll(ps.Body)
	ps.Body.Close()
	assert.Equal(t, "[]\n", string(none), "no background process yet: an empty list")
	code, out := post("/start/s1/dev", `echo "dev server on :8080"; exec httpd -f -vv -p 8080 -h /work`)
	require.Equal(t, 200, code, out)
	assert.Contains(t, out, `"id":"dev","pid":`)
	assert.Contains(t, out, `"status":"running"`)
	code, out = post("/start/s1/dev", "true")
	assert.Equal(t, 409, code)
	assert.Equal(t, "starting the process: background process \"dev\" is already running\n", out, "each error says what failed, then why")

	// The server outlived the request that started it.
	_, out = post("/run/s1", "sleep 0.3; wget -q -O - http://127.0.0.1:8080/index.html")
	assert.Equal(t, "<h1>hello</h1>\n", out)

	resp, err := follow("start")
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "0", resp.Header.Get("X-Dropped-Bytes"))
	fromStart := bufio.NewReader(resp.Body)
	first, err := fromStart.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "dev server on :8080\n", first)
	lineWith(fromStart, "url:/index.html") // httpd -vv logs each request to stderr

	// From now: the head reaches the client with the first log bytes, so
	// requests to the server go on until the follower has them.
	type followed struct {
		resp *http.Response
		err  error
	}
	opened := make(chan followed, 1)
	go func() { resp, err := follow("now"); opened <- followed{resp, err} }()
	var now *followed
	for now == nil {
		_, out = post("/run/s1", "wget -q -O - http://127.0.0.1:8080/second.html 2>&1")
		assert.Contains(t, out, "404")
		select {
		case f := <-opened:
			now = &f
		case <-time.After(200 * time.Millisecond):
		}
	}
	require.NoError(t, now.err)
	nowResp := now.resp
	fromNow := bufio.NewReader(nowResp.Body)
	line, err := fromNow.ReadString('\n')
	require.NoError(t, err)
	assert.NotContains(t, line, "index.html", "from now: nothing logged before")
	post("/run/s1", "wget -q -O - http://127.0.0.1:8080/second.html")
	lineWith(fromNow, "url:/second.html")
	resp.Body.Close() // a client that leaves stops following; the server runs on

	resp, err = http.Get(srv.URL + "/ps/s1")
	require.NoError(t, err)
	list, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(list), `"id":"dev"`)
	assert.Contains(t, string(list), `"status":"running"`)

	code, out = post("/kill/s1/dev", "")
	require.Equal(t, 200, code, out)
	assert.Contains(t, out, `"status":"killed"`)
	assert.Contains(t, out, `"exit_code":143`)
	_, err = io.ReadAll(fromNow)
	assert.NoError(t, err, "the followed log ends when the server exits")
	nowResp.Body.Close()

	// A process that ignores SIGTERM gets SIGKILL after the grace period.
	code, out = post("/start/s1/stubborn", "trap '' TERM; echo ready; while true; do sleep 1; done")
	require.Equal(t, 200, code, out)
	// Killed before its shell set the trap, it would end at the SIGTERM.
	ready, err := http.Get(srv.URL + "/logs/s1/stubborn")
	require.NoError(t, err)
	line, err = bufio.NewReader(ready.Body).ReadString('\n')
	ready.Body.Close()
	require.Equal(t, "ready\n", line, err)
	began := time.Now()
	code, out = post("/kill/s1/stubborn", "")
	require.Equal(t, 200, code, out)
	assert.Contains(t, out, `"status":"killed"`)
	assert.Contains(t, out, `"exit_code":137`)
	assert.Greater(t, time.Since(began), 4*time.Second, "SIGTERM first, SIGKILL after 5 s")

	resp, err = http.Get(srv.URL + "/logs/s1/nope")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 404, resp.StatusCode)
	assert.Equal(t, "following the log: no background process \"nope\"\n", string(body), "wharf: at most once, in front")
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.NetworkLeftovers(data))
}

// requests returns a function that sends a request to the sandbox at url
// and returns its status and body.
func requests(t *testing.T, url string) func(method, path string, body io.Reader) (int, string) {
	return func(method, path string, body io.Reader) (int, string) {
		req, err := http.NewRequest(method, url+path, body)
		require.NoError(t, err)
		req.Close = true // an upload refused before its body was read ends its connection
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(out)
	}
}

// serveSandbox serves examples/sandbox with busybox imported into its
// data directory, data.
func serveSandbox(t *testing.T, data string) *testutil.Serve {
	t.Helper()
	fixture.ImportBusybox(t, data)
	return testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data)
}
