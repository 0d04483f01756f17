package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// sandboxRun posts script to examples/sandbox's /run/{session} at url and
// returns its output.
func sandboxRun(t *testing.T, url, session, script string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Minute}).Post(url+"/run/"+session, "text/plain", strings.NewReader(script))
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	return string(out)
}

// assertNothingLeft checks that the wharf with data at data left no
// container resources and no process behind.
func assertNothingLeft(t *testing.T, data string) {
	t.Helper()
	assert.Empty(t, containerd.HostLeftovers(data))
	assert.Empty(t, testutil.Processes(data), "a process of that wharf survived")
}

// TestServeOutlivesItsLogReader: wharf serve whose stderr reader goes away
// (a log shipper that restarts, a closed terminal) keeps serving, and on
// SIGTERM still stops cleanly, removing its container, instead of being
// ended by SIGPIPE at its next log line.
func TestServeOutlivesItsLogReader(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	addr := freeAddr(t)
	args := []string{"serve", filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", addr, "--data-dir", data}
	if testutil.Engine != "" {
		args = append(args, "--engine", testutil.Engine)
	}
	cmd := exec.Command(testutil.BuildWharf(t), args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewScanner(stderr)
	for !strings.Contains(lines.Text(), "msg=serving") {
		if !lines.Scan() {
			cmd.Wait()
			t.Fatal("wharf serve ended before it served")
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	url := "http://" + addr
	require.Equal(t, "ok\n", sandboxRun(t, url, "s1", "echo ok"))

	require.NoError(t, stderr.(io.Closer).Close()) // nobody reads wharf's log any more
	assert.Equal(t, "still\n", sandboxRun(t, url, "s1", "echo still"), "it serves on")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "a clean exit, not SIGPIPE")
	case <-time.After(time.Minute):
		t.Fatal("wharf serve did not stop")
	}
	assertNothingLeft(t, data)
}

// TestKilledTestStopsItsWharf: a test binary killed with SIGKILL (as a
// -timeout or an impatient developer does) runs no cleanup; the wharf
// serve it started stops cleanly anyway, container and all.
func TestKilledTestStopsItsWharf(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_KILLED_CHILD_DATA"); data != "" {
		srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data)
		sandboxRun(t, srv.URL, "s1", "echo ok")
		fmt.Printf("wharf pid %d\n", srv.Pid())
		select {} // until killed
	}
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	testutil.BuildWharf(t) // the child runs it, not a wharf of its own
	child := testutil.StartChildTest(t, "TestKilledTestStopsItsWharf", "WHARF_TEST_KILLED_CHILD_DATA="+data)
	var pid int
	for pid == 0 && child.Stdout.Scan() {
		fmt.Sscanf(child.Stdout.Text(), "wharf pid %d", &pid)
	}
	require.NotZero(t, pid, "the child test started wharf serve")
	child.Kill(t)
	deadline := time.Now().Add(time.Minute)
	for syscall.Kill(pid, 0) == nil {
		require.True(t, time.Now().Before(deadline), "wharf serve (pid %d) outlived the killed test by a minute", pid)
		time.Sleep(50 * time.Millisecond)
	}
	assertNothingLeft(t, data)
}

// TestServeStopsPromptlyWithStreamsOpen: SIGTERM to wharf serve while
// objects stream the output of never-ending execs to clients ends wharf
// within a few seconds (not after the HTTP drain timeout plus the stop
// grace), and leaves no container, shim, network or mount behind.
func TestServeStopsPromptlyWithStreamsOpen(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data)
	t.Cleanup(srv.Kill)
	ended := make(chan error, 3)
	for i := range 3 {
		resp, err := http.Post(fmt.Sprintf("%s/run/s%d", srv.URL, i), "text/plain", strings.NewReader("while true; do echo x; sleep 0.1; done"))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "x\n", line, "the stream is flowing")
		go func() {
			_, err := io.Copy(io.Discard, resp.Body)
			ended <- err
		}()
	}
	start := time.Now()
	require.NoError(t, srv.Stop(time.Minute))
	took := time.Since(start)
	t.Logf("wharf serve stopped %v after SIGTERM", took)
	assert.Less(t, took, 5*time.Second, "wharf serve stops promptly with streams open\n%s", srv.Logs())
	for range 3 {
		<-ended // each stream ended with wharf
	}
	assertNothingLeft(t, data)
}

// TestServeRecoversQuicklyAfterAKillDuringStarts: wharf serve killed
// (SIGKILL) while 20 objects start their containers at once serves again
// on its next start within seconds, having adopted or removed each of
// them, and a clean stop then leaves nothing.
func TestServeRecoversQuicklyAfterAKillDuringStarts(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	for i := range 20 {
		go (&http.Client{Timeout: time.Minute}).Post(fmt.Sprintf("%s/run/k%d", srv.URL, i), "text/plain", strings.NewReader("echo ok"))
	}
	for deadline := time.Now().Add(time.Minute); strings.Count(srv.Logs(), " start\" class=Sandbox") < 10; time.Sleep(time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "10 containers started\n%s", srv.Logs())
	}
	srv.Kill()

	// The plugin was built by the first start: this one's time is the
	// recovery's (and the load's), not the go build's.
	start := time.Now()
	srv = testutil.StartServe(t, app, "--no-build", "--listen", "127.0.0.1:0", "--data-dir", data, "--log-level", "debug")
	took := time.Since(start)
	t.Logf("wharf serve served again %v after its start", took)
	require.Contains(t, srv.Logs(), "containers from a previous run\" adopted=")
	assert.NotContains(t, srv.Logs(), "could not be looked at", "every container was looked at")
	onlyAdopted(t, data)
	// Waiting for init to reap each orphan shim took 2 s apiece: 20 s for
	// 10. Without that, 2.5–4 s on a quiet machine, under 5 s on a busy one.
	assert.Less(t, took, 12*time.Second, "wharf serve recovers promptly")
	require.Equal(t, "ok\n", sandboxRun(t, srv.URL, "k0", "echo ok"))
	require.NoError(t, srv.Stop(30*time.Second))
	assertNothingLeft(t, data)
}

// TestServeLogsWhatItsShutdownCouldNotRemove: what wharf serve fails to
// remove on its way out is logged, not dropped: here its firewall table,
// which an operator's `nft flush ruleset` removed while it served.
func TestServeLogsWhatItsShutdownCouldNotRemove(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	srv := testutil.StartServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data)
	t.Cleanup(srv.Kill)
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: egress.TableName(containerd.Scope(data))}
	c, err := nftables.New()
	require.NoError(t, err)
	c.DelTable(table)
	require.NoError(t, c.Flush(), "wharf serve's table is there to remove")

	require.NoError(t, srv.Stop(time.Minute))
	assert.Contains(t, srv.Logs(), "removing the nft table "+table.Name)
	assertNothingLeft(t, data)
}
