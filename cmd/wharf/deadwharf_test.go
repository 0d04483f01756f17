package main

import (
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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

// killedWharf is what a wharf serve killed (SIGKILL) while a container of
// its ran left on the host: its scope's nft table, network namespaces,
// links and container cgroups (as containerd.HostLeftovers named them
// before the kill), and its shims and container processes.
type killedWharf struct {
	data, scope string
	names       []string // "nft table ip …", "network namespace …", "link …", "cgroup …"
	pids        []int    // shims and container processes
	// lock holds the scope's lock file, which the killed wharf left: the
	// wharf of another test process that sweeps it first would remove
	// what the test's next wharf is to remove.
	lock *os.File
}

// release lets go of the scope's lock file.
func (k *killedWharf) release() { k.lock.Close() }

// killWharfWithAContainer serves examples/sandbox on data, runs a session
// whose container keeps a background process, and kills the serve with
// SIGKILL. Whatever the test leaves of it is removed when the test ends.
func killWharfWithAContainer(t *testing.T, data string) *killedWharf {
	t.Helper()
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.Equal(t, "ok\n", sandboxRun(t, srv.URL, "k0", "echo ok"))
	resp, err := http.Post(srv.URL+"/start/k0/sleeper", "text/plain", strings.NewReader("sleep 3600"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	shims := testutil.ProcessIDs("containerd-shim", containerd.EmbeddedAddress(data))
	require.NotEmpty(t, shims, "the container's shim runs")
	k := leftOnTheHost(t, data)
	for _, prefix := range []string{"nft table ip " + egress.TableName(k.scope), "network namespace wharf-" + k.scope, "link wh" + k.scope, "cgroup "} {
		require.True(t, slices.ContainsFunc(k.names, func(n string) bool { return strings.HasPrefix(n, prefix) }), "%s… before the kill: %q", prefix, k.names)
	}
	require.Greater(t, len(k.pids), len(shims), "the container's processes run: %v", k.pids)
	lock, err := os.Open("/run/wharf/scope-" + k.scope + ".lock")
	require.NoError(t, err)
	srv.Kill()
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB), "the killed wharf's lock is released")
	held, err := lock.Stat()
	require.NoError(t, err)
	there, err := os.Stat(lock.Name())
	require.True(t, err == nil && os.SameFile(held, there), "another process on the host swept the killed wharf's lock file before the test held it")
	k.lock = lock
	t.Cleanup(k.release)
	require.Eventually(t, func() bool { return len(testutil.Processes("containerd", "--config", data)) == 0 }, 10*time.Second, 10*time.Millisecond,
		"serve's containerd goes with it")
	return k
}

// leftOnTheHost is what the wharf of the data directory data, about to
// be killed, has on the host (see killedWharf): what is left of it is
// removed when the test ends.
func leftOnTheHost(t *testing.T, data string) *killedWharf {
	t.Helper()
	k := &killedWharf{data: data, scope: containerd.Scope(data)}
	for _, l := range containerd.HostLeftovers(data) {
		what, _, _ := strings.Cut(l, " ")
		switch what {
		case "nft", "network", "link":
			k.names = append(k.names, l)
		case "cgroup": // with the cgroups below it (a build's steps'), deepest last
			require.NoError(t, filepath.WalkDir(strings.TrimPrefix(l, "cgroup "), func(dir string, e fs.DirEntry, err error) error {
				if err != nil || !e.IsDir() {
					return err
				}
				k.names = append(k.names, "cgroup "+dir)
				procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
				if err != nil {
					return err
				}
				for _, f := range strings.Fields(string(procs)) {
					pid, err := strconv.Atoi(f)
					if err != nil {
						return err
					}
					if !slices.Contains(k.pids, pid) { // in each cgroup v1 hierarchy
						k.pids = append(k.pids, pid)
					}
				}
				return nil
			}))
		}
	}
	k.pids = append(k.pids, testutil.ProcessIDs("containerd-shim", containerd.EmbeddedAddress(data))...)
	t.Cleanup(func() { k.remove(t) })
	return k
}

// left lists what of the killed wharf is still on the host.
func (k *killedWharf) left() []string {
	var out []string
	tables, _ := egress.Firewalls()
	for _, n := range k.names {
		what, name, _ := strings.Cut(n, " ")
		var there bool
		switch what {
		case "nft":
			there = slices.Contains(tables, n)
		case "network":
			_, err := os.Stat(filepath.Join("/run/netns", strings.TrimPrefix(name, "namespace ")))
			there = err == nil
		case "link":
			there = exec.Command("ip", "link", "show", "dev", name).Run() == nil
		case "cgroup":
			_, err := os.Stat(name)
			there = err == nil
		}
		if there {
			out = append(out, n)
		}
	}
	for _, m := range containerd.MountsUnder(k.data) {
		out = append(out, "mount "+m)
	}
	for _, pid := range k.pids {
		if processRuns(pid) { // by pid alone: a command line changes as sh -c execs its command
			out = append(out, "process "+strconv.Itoa(pid))
		}
	}
	return out
}

// processRuns reports whether pid runs (a zombie does not).
func processRuns(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// remove removes what is left of the killed wharf, by hand: a test that
// failed must not leave it on the host.
func (k *killedWharf) remove(t *testing.T) {
	for _, pid := range k.pids {
		if processRuns(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && slices.ContainsFunc(k.pids, processRuns); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range slices.Backward(k.left()) { // cgroups deepest first
		what, name, _ := strings.Cut(n, " ")
		var err error
		switch what {
		case "nft":
			var c *nftables.Conn
			if c, err = nftables.New(); err == nil {
				c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: strings.TrimPrefix(name, "table ip ")})
				err = c.Flush()
			}
		case "network":
			err = exec.Command("ip", "netns", "delete", strings.TrimPrefix(name, "namespace ")).Run()
		case "link":
			err = exec.Command("ip", "link", "delete", name).Run()
		case "cgroup":
			err = syscall.Rmdir(name)
		case "mount":
			err = syscall.Unmount(name, syscall.MNT_DETACH)
		}
		if err != nil {
			t.Errorf("removing %s: %v", n, err)
		}
	}
}

// TestServeRemovesWhatAKilledWharfWhoseDataDirIsGoneLeft: a wharf serve
// killed (SIGKILL) while its container ran, whose data directory was then
// removed (a test's temporary directory, or an operator cleaning up),
// left its nft table, its container's network namespace and link, shim,
// processes and cgroup on the host for good: only that data directory's
// next run removed them, which never comes. The next wharf serve of any
// data directory removes them, and says so.
func TestServeRemovesWhatAKilledWharfWhoseDataDirIsGoneLeft(t *testing.T) {
	serveAfterRemovingAKilledWharfsDataDir(t, testutil.CompiledDataDir(t), false)
}

// TestServeOfARemovedDataDirRemovesWhatItsKilledRunLeft: as above, with
// the next wharf serve at the removed data directory's own path (rm -rf
// data; wharf serve --data-dir data): that run, finding nothing of the
// killed one's in the directory, took another scope (one nothing on the
// host carries) and left the killed one's to the host as well.
func TestServeOfARemovedDataDirRemovesWhatItsKilledRunLeft(t *testing.T) {
	serveAfterRemovingAKilledWharfsDataDir(t, testutil.CompiledDataDir(t), true)
}

// TestServeRemovesWhatAKilledWharfLeftWhoseDataDirHasASpace: as
// TestServeRemovesWhatAKilledWharfWhoseDataDirIsGoneLeft, for a data
// directory whose path has a space. /proc/self/mountinfo writes it as
// \040, so the mounts of the killed wharf's container (its root
// filesystem and disk) were found by no one: they stayed, and so did the
// data directory, which could not be removed (EBUSY).
func TestServeRemovesWhatAKilledWharfLeftWhoseDataDirHasASpace(t *testing.T) {
	compiled := testutil.CompiledDataDir(t)
	data := filepath.Join(compiled, "data dir")
	require.NoError(t, os.Mkdir(data, 0o700))
	require.NoError(t, os.Rename(filepath.Join(compiled, "cache"), filepath.Join(data, "cache")))
	serveAfterRemovingAKilledWharfsDataDir(t, data, false)
}

// serveAfterRemovingAKilledWharfsDataDir kills a wharf serve of the data
// directory dead whose container runs, removes that directory (rm -rf)
// and serves a new one (at the same path if samePath), which removes what
// the killed one left, and serves.
func serveAfterRemovingAKilledWharfsDataDir(t *testing.T, dead string, samePath bool) {
	killed := killWharfWithAContainer(t, dead)
	// rm -rf fails on the mount points of the container's disk and root
	// filesystem, and removes everything else.
	require.Error(t, exec.Command("rm", "-rf", killed.data).Run())
	_, err := os.Stat(filepath.Join(killed.data, "containerd", "network-scope"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.NotEmpty(t, killed.left(), "the kill and the removal leave the wharf's table, network, processes")

	data := killed.data
	if !samePath {
		data = testutil.CompiledDataDir(t)
	}
	fixture.ImportBusybox(t, data)
	srv := testutil.LaunchServe(t, filepath.Join(testutil.RepoRoot(), "examples", "sandbox"), "--listen", "127.0.0.1:0", "--data-dir", data, "--log-level", "debug")
	// The killed wharf's lock is let go (for the new wharf's claim of a
	// scope, which sweeps it) once the new wharf's containerd runs: serve
	// claims only once that containerd answers, and from then on the
	// wharfs of other test processes leave what the killed one left to
	// this one on the same path (its containerd runs again). Let go at
	// "containerd started", it came after the claim, made first thing
	// then, which found it held and swept nothing.
	config := filepath.Join(data, "containerd", "config.toml")
	require.Eventually(t, func() bool { return len(testutil.Processes("containerd", "--config", config)) > 0 }, time.Minute, time.Millisecond, srv.Logs())
	killed.release()
	require.True(t, srv.WaitLog("msg=serving", 5*time.Minute), srv.Logs())
	srv.URL = regexp.MustCompile(`msg=serving .*url=(http://\S+)`).FindStringSubmatch(srv.Logs())[1]
	if containerd.Scope(data) == killed.scope {
		// The new run took the scope, free again: the table is its own.
		killed.names = slices.DeleteFunc(killed.names, func(n string) bool { return strings.HasPrefix(n, "nft ") })
	}
	for deadline := time.Now().Add(10 * time.Second); len(killed.left()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, killed.left(), "left by the killed wharf whose data directory is gone")
	for line := range strings.Lines(srv.Logs()) {
		if strings.Contains(line, "killed wharf") {
			t.Logf("logged: %s", line)
		}
	}
	const removedLine = "removed what a killed wharf whose data directory is gone left on this host"
	if samePath || strings.Contains(srv.Logs(), removedLine) {
		assert.Contains(t, srv.Logs(), removedLine)
		assert.Contains(t, srv.Logs(), "data_dir="+logged(killed.data))
	} else {
		// A wharf of another test process that claimed a scope between the
		// release of the lock and this one's claim removed it (and logged
		// it). On the same path none can: it finds the killed data
		// directory's containerd running again (the lock was let go only
		// then), and leaves it to this one.
		t.Logf("another wharf on the host removed what the killed one left")
	}
	if !samePath {
		require.NoError(t, os.RemoveAll(killed.data), "the data directory can be removed")
	}
	require.Equal(t, "ok\n", sandboxRun(t, srv.URL, "k0", "echo ok"), "the new wharf serves")
	require.NoError(t, srv.Stop(time.Minute))
	assertNothingLeft(t, data)
}

// logged is how wharf's log writes the value v: quoted if it has a space.
func logged(v string) string {
	if strings.ContainsAny(v, " \t\"=") {
		return strconv.Quote(v)
	}
	return v
}

// TestServeLeavesWhatAKilledWharfWhoseDataDirIsThereLeft: what a wharf
// serve killed (SIGKILL) while its container ran left is its data
// directory's next run's to adopt: another data directory's wharf serve
// leaves it, and serves; the next run then removes it on its stop.
func TestServeLeavesWhatAKilledWharfWhoseDataDirIsThereLeft(t *testing.T) {
	killed := killWharfWithAContainer(t, testutil.CompiledDataDir(t))
	killed.release()
	left := killed.left()
	require.NotEmpty(t, left)

	app := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.Equal(t, "ok\n", sandboxRun(t, srv.URL, "k0", "echo ok"), "the other wharf serves")
	assert.Equal(t, left, killed.left(), "another data directory's wharf leaves the killed one's")
	assert.NotContains(t, srv.Logs(), "removed what a killed wharf")
	require.NoError(t, srv.Stop(time.Minute))
	assertNothingLeft(t, data)
	assert.Equal(t, left, killed.left(), "another data directory's wharf leaves the killed one's on its stop")

	next := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", killed.data, "--log-level", "debug")
	assert.Contains(t, next.Logs(), "containers from a previous run\" adopted=1")
	require.NoError(t, next.Stop(time.Minute))
	assertNothingLeft(t, killed.data)
	for deadline := time.Now().Add(10 * time.Second); len(killed.left()) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, killed.left(), "its next run removed them")
}
