package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

// pathScope is the scope wharf derived from a data directory's path before
// it kept them: the first 2 bytes of sha256(path), in hex.
func pathScope(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return hex.EncodeToString(sum[:2])
}

// dirOfAFreeScope is a new directory whose pathScope no running wharf
// holds and nothing on the host carries (a killed wharf's table, say).
func dirOfAFreeScope(t *testing.T) string {
	t.Helper()
	for {
		d := t.TempDir()
		_, err := os.Stat("/run/wharf/scope-" + pathScope(d) + ".lock")
		if os.IsNotExist(err) && len(egress.FirewallLeftovers(pathScope(d))) == 0 && len(NetworkLeftovers(d)) == 0 {
			return d
		}
	}
}

// dirHashedAlike makes a new directory whose path has the pathScope of
// dir (about 65536 tries of sha256).
func dirHashedAlike(t *testing.T, dir string) string {
	t.Helper()
	base := t.TempDir()
	for i := 0; ; i++ {
		d := filepath.Join(base, strconv.Itoa(i))
		if pathScope(d) == pathScope(dir) {
			require.NoError(t, os.Mkdir(d, 0o700))
			return d
		}
	}
}

// scopedWharf is a backend and manager on data, checked for leftovers and
// closed (the manager unless the test closed it) when the test ends.
func scopedWharf(t *testing.T, data string, o ManagerOptions) (*Backend, *Manager) {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	b, err := OpenBackend(context.Background(), data, "", o.Logger)
	require.NoError(t, err)
	m, err := NewManager(b, o)
	if err != nil {
		b.Close()
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		assert.NoError(t, m.Close(context.Background()))
		left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
		assert.NoError(t, err)
		assert.Empty(t, left, "left behind in %s", data)
		b.Close()
	})
	return b, m
}

// TestTwoWharfsWhosePathsHashAlikeKeepTheirOwnFirewalls: every name a
// wharf gives on the host carries its 16-bit scope, which was a hash of
// its data directory's path. Two running wharfs whose paths hashed alike
// shared the nft table wharf-<scope>: the second one's start replaced the
// first one's table, and the first one's Close removed the second one's,
// and with it the rules that keep its containers from the host (a test
// of the suite found the table of another test's wharf). Now the second
// one takes a scope of its own: each keeps its own table, and a container
// of the second still cannot reach the host once the first has stopped.
func TestTwoWharfsWhosePathsHashAlikeKeepTheirOwnFirewalls(t *testing.T) {
	first := dirOfAFreeScope(t)
	second := dirHashedAlike(t, first)
	_, m1 := scopedWharf(t, first, ManagerOptions{})
	b2, m2 := scopedWharf(t, second, ManagerOptions{Subnet: netip.MustParsePrefix("10.215.0.0/16")})
	s1, s2 := Scope(first), Scope(second)
	require.Equal(t, pathScope(first), s1, "the first takes the scope its path hashes to")
	require.NotEqual(t, s1, s2, "the second takes another")
	assert.Equal(t, s1, m1.net.scope)
	assert.Equal(t, s2, m2.net.scope)
	assert.Equal(t, []string{"nft table ip wharf-" + s1}, egress.FirewallLeftovers(s1), "the first one's table")
	assert.Equal(t, []string{"nft table ip wharf-" + s2}, egress.FirewallLeftovers(s2), "the second one's table")

	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	imgs, err := ImportArchive(context.Background(), b2.Client, archive, "")
	require.NoError(t, err)
	t.Cleanup(func() { RemoveImage(context.Background(), b2.Client, imgs[0].Name, false) })
	mc, err := m2.Start(context.Background(), "Box", "obj", ContainerSpec{Image: imgs[0].Name, Entrypoint: []string{"sleep", "3600"}}, openPolicy(), 0)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(mc.Endpoint.hostLink, "wh"+s2), "its link %s carries the second one's scope", mc.Endpoint.hostLink)

	require.NoError(t, m1.Close(context.Background()))
	assert.Empty(t, egress.FirewallLeftovers(s1), "the first one's Close removes its table")
	assert.Equal(t, []string{"nft table ip wharf-" + s2}, egress.FirewallLeftovers(s2), "and leaves the second one's")

	// Its firewall sends the connection to the egress proxy, which
	// refuses the host.
	_, reached := hostServiceReached(t, mc.Container, mc.Endpoint)
	assert.False(t, reached, "a container of the second wharf reached a service on the host once the first had stopped")
}

// TestADataDirAnOlderWharfRanOnKeepsItsScope: a data directory a wharf
// that kept no scope ran on keeps the one derived from its path, though
// the table and links its killed run left name it (which a new data
// directory's scope never does): the containers that run is adopted, with
// their network. The scope is kept from then on.
func TestADataDirAnOlderWharfRanOnKeepsItsScope(t *testing.T) {
	data, logger, b1, m1, spec := crashingHost(t)
	removeAllIfFailed(t, data, logger, spec)
	require.Equal(t, pathScope(data), m1.net.scope, "the first run takes the scope its path hashes to")
	started, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	// The wharf is killed: its containerd goes, its container, link and
	// table stay, and the kernel releases its lock on the scope.
	require.NoError(t, b1.Close())
	require.NoError(t, m1.Gateway().CloseKeepingFirewall())
	m1.releaseScope()
	require.NotEmpty(t, egress.FirewallLeftovers(pathScope(data)))
	// As a wharf that kept no scope leaves its data directory.
	require.NoError(t, os.Remove(scopeFile(data)))

	b2, m2 := nextRun(t, data, logger)
	adopted, removed, err := m2.Recover(context.Background(), offlinePolicy)
	require.NoError(t, err)
	assert.Equal(t, 1, adopted)
	assert.Equal(t, 0, removed)
	mc, ok := m2.Get("Sandbox", "obj1")
	require.True(t, ok, "the container is adopted")
	assert.Equal(t, started.Pid(), mc.Pid())
	code, out, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"sh", "-c", "ip -4 addr show eth0 | grep -c inet"}})
	assert.Equal(t, uint32(0), code)
	assert.Equal(t, "1\n", out, "it keeps its network")
	assert.Equal(t, pathScope(data), Scope(data))
	kept, err := os.ReadFile(scopeFile(data))
	require.NoError(t, err)
	assert.Equal(t, pathScope(data)+"\n", string(kept), "the scope is kept")
	require.NoError(t, m2.Close(context.Background()))
	require.NoError(t, RemoveImage(context.Background(), b2.Client, spec.Image, false))
}

// TestACopyOfARunningWharfsDataDirIsRefused: a data directory whose kept
// scope a running wharf holds (a copy of that wharf's data directory) is
// refused, saying whose it is and what to do, and touches nothing of the
// running wharf's. The lock goes with the wharf that held it, killed or
// closed: its next run takes the scope back, and once that one is closed
// the copy starts.
func TestACopyOfARunningWharfsDataDirIsRefused(t *testing.T) {
	if data := os.Getenv("WHARF_TEST_SCOPE_CHILD_DATA"); data != "" {
		runAndWaitToBeKilled(t, data)
	}
	original := t.TempDir()
	testutil.LockDir(t, original) // no other test process reclaims it once its wharf is killed
	child := startWharfChild(t, "TestACopyOfARunningWharfsDataDirIsRefused", "WHARF_TEST_SCOPE_CHILD_DATA="+original)
	tag := Scope(original)
	copied := t.TempDir()
	keptAt := filepath.Join(copied, "containerd", "network-scope")
	require.NoError(t, os.MkdirAll(filepath.Dir(keptAt), 0o700))
	require.NoError(t, os.WriteFile(keptAt, []byte(tag+"\n"), 0o600)) // as a copy of the original has it
	logger := slog.New(slog.DiscardHandler)
	// The copy's containerd runs only while it is tried, as that of a
	// wharf serve refused does: a running one counts as its wharf's.
	refused := func(holder string) {
		t.Helper()
		b, err := OpenBackend(context.Background(), copied, "", logger)
		require.NoError(t, err)
		defer b.Close()
		m, err := NewManager(b, ManagerOptions{Logger: logger})
		if err == nil {
			m.Close(context.Background())
		}
		require.Error(t, err)
		assert.Equal(t, "the network scope "+tag+" of the data directory "+copied+" is in use by the wharf of the data directory "+original+" "+holder+
			": two wharfs on one host must not share one (each would remove the other's firewall table wharf-"+tag+"); stop that wharf first, "+
			"or, if one of the two data directories is a copy of the other, remove the copy's network-scope ("+keptAt+" here) to give the copy "+
			"a scope of its own, never the original's: the original's containers may run on that scope", err.Error())
		assert.Equal(t, []string{"nft table ip wharf-" + tag}, egress.FirewallLeftovers(tag), "the running wharf's table stays")
	}
	refused(fmt.Sprintf("(pid %d)", child.Cmd.Process.Pid))
	kept, err := os.ReadFile(filepath.Join(original, "containerd", "network-scope"))
	require.NoError(t, err)
	assert.Equal(t, tag+"\n", string(kept), "the original keeps its scope")
	lockFile := "/run/wharf/scope-" + tag + ".lock"
	assert.FileExists(t, lockFile)
	// Its lock file removed (rm -rf /run/wharf), the running wharf is
	// found by the removed file it holds open.
	require.NoError(t, os.Remove(lockFile))
	refused(fmt.Sprintf("(pid %d)", child.Cmd.Process.Pid))
	require.NoError(t, os.Remove(lockFile), "the lock file the refused claim made stays for a sweep")

	// Killed, it leaves its table, and the lock to its next run.
	child.Kill(t)
	for deadline := time.Now().Add(30 * time.Second); len(testutil.Processes("--config "+original+"/")) > 0; time.Sleep(50 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the killed test's containerd still runs")
	}
	_, m1 := scopedWharf(t, original, ManagerOptions{})
	assert.Equal(t, tag, m1.net.scope, "the original's next run takes its scope back")
	refused(fmt.Sprintf("(pid %d)", os.Getpid()))

	require.NoError(t, m1.Close(context.Background()))
	assert.NoFileExists(t, lockFile, "the lock is released")
	b, err := OpenBackend(context.Background(), copied, "", logger)
	require.NoError(t, err)
	defer b.Close()
	m2, err := NewManager(b, ManagerOptions{Logger: logger})
	require.NoError(t, err, "the copy starts once the original has stopped")
	assert.Equal(t, tag, m2.net.scope)
	require.NoError(t, m2.Close(context.Background()))
	assert.Empty(t, egress.FirewallLeftovers(tag))
	left, err := Leftovers(context.Background(), b.Client, b.Address, b.DataDir)
	require.NoError(t, err)
	assert.Empty(t, left)
}

// runAndWaitToBeKilled is the child of the test above: a wharf's
// containerd and manager on data, then nothing until killed.
func runAndWaitToBeKilled(t *testing.T, data string) {
	logger := slog.New(slog.DiscardHandler)
	b, err := OpenBackend(context.Background(), data, "", logger)
	require.NoError(t, err)
	_, err = NewManager(b, ManagerOptions{Logger: logger})
	require.NoError(t, err)
	fmt.Println("running")
	select {}
}

// startWharfChild runs test name again as a child whose wharf (see
// runAndWaitToBeKilled) runs on the data directory env names, and returns
// once it runs.
func startWharfChild(t *testing.T, name string, env string) *testutil.ChildTest {
	t.Helper()
	child := testutil.StartChildTest(t, name, env)
	for child.Stdout.Scan() && child.Stdout.Text() != "running" {
	}
	require.Equal(t, "running", child.Stdout.Text(), "the child test ended before it said so")
	return child
}

// killHoldingItsLock kills child, whose wharf on data held scope tag, and
// returns the scope's lock file, held by this test from the kill on (the
// wharf of another test process that swept it first would remove what
// the killed one left itself), once the child's containerd is gone. The
// test closes it when its own claim is to sweep it.
func killHoldingItsLock(t *testing.T, child *testutil.ChildTest, tag, data string) *os.File {
	t.Helper()
	lock, err := os.Open(scopeLockPath(tag))
	require.NoError(t, err)
	t.Cleanup(func() { lock.Close() })
	child.Kill(t)
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB), "the killed wharf's lock is released")
	for deadline := time.Now().Add(30 * time.Second); len(testutil.Processes("--config "+data+"/")) > 0; time.Sleep(50 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "the killed test's containerd still runs")
	}
	return lock
}

// TestStaleScopeLocksAreSwept: the lock file of a scope whose holder
// exited without releasing it (killed: the kernel releases the lock, the
// file stays in /run/wharf) is removed by the next claim of any scope;
// a scope held stays held.
func TestStaleScopeLocksAreSwept(t *testing.T) {
	held, releaseHeld, err := claimScope(t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer releaseHeld()
	stale, _, err := claimScope(t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	// Its holder exits: the descriptor is closed, the file stays.
	scopes.Lock()
	scopes.held[stale].lock.Close()
	delete(scopes.held, stale)
	scopes.Unlock()
	require.FileExists(t, scopeLockPath(stale))

	tag, release, err := claimScope(t.TempDir(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer release()
	if tag != stale {
		assert.NoFileExists(t, scopeLockPath(stale), "the stale lock file is removed")
	}
	require.FileExists(t, scopeLockPath(held), "a held one stays")
	f, err := os.Open(scopeLockPath(held))
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK, "and stays locked")
}

// TestAScopeFileThatIsNoFileIsRefused: a data directory's network-scope
// that an operator replaced by something other than a file is refused,
// saying what it is, and at once: a named pipe made the claim wait
// forever (holding every claim of the process). (So would a link to
// /dev/zero have read until memory ran out, which this test does not
// try.)
func TestAScopeFileThatIsNoFileIsRefused(t *testing.T) {
	data := t.TempDir()
	kept := scopeFile(data)
	require.NoError(t, os.MkdirAll(filepath.Dir(kept), 0o700))
	for what, create := range map[string]func() error{
		"a named pipe": func() error { return unix.Mkfifo(kept, 0o600) },
		"a directory":  func() error { return os.Mkdir(kept, 0o700) },
	} {
		require.NoError(t, create())
		done := make(chan error, 1)
		go func() {
			_, _, err := claimScope(data, slog.New(slog.DiscardHandler))
			done <- err
		}()
		select {
		case err := <-done:
			assert.EqualError(t, err, "reading the data directory's network scope: "+kept+" is "+what+", not a file", what)
		case <-time.After(10 * time.Second):
			if f, err := os.OpenFile(kept, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				f.Close() // the reader of a pipe gets its end
			}
			t.Fatalf("the claim of a data directory whose scope file is %s did not return", what)
		}
		require.NoError(t, os.Remove(kept))
	}
}

// TestAStaleLockASweepHoldsIsTakenOnceLetGo: a claim of a scope whose
// lock file a killed wharf left, at the moment another process's
// sweepStaleLocks holds its lock, waits for the sweep; it was refused as
// in use by the killed wharf's pid.
func TestAStaleLockASweepHoldsIsTakenOnceLetGo(t *testing.T) {
	data := dirOfAFreeScope(t)
	tag := pathScope(data)
	require.NoError(t, keepScope(data, tag))
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	raw, err := json.Marshal(scopeHolder{PID: ended.Process.Pid, DataDir: data})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(scopeLockDir, 0o755))
	require.NoError(t, os.WriteFile(scopeLockPath(tag), raw, 0o644))
	sweep, err := os.Open(scopeLockPath(tag))
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(sweep.Fd()), unix.LOCK_EX|unix.LOCK_NB))
	time.AfterFunc(30*time.Millisecond, func() { sweep.Close() }) // as the sweep lets it go

	got, release, err := claimScope(data, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer release()
	assert.Equal(t, tag, got)
}
