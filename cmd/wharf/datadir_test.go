package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testregistry"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestSecondServeOnSameDataDirIsRefused starts a second wharf serve on the
// data directory of a running one: it is refused at once, before building,
// starting containerd or touching the firewall, and the first keeps
// serving with its container and nft table. So are `wharf images`
// commands that would start a second containerd there.
func TestSecondServeOnSameDataDirIsRefused(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "webapp")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	get := func() int {
		resp, err := http.Get(srv.URL + "/s/alice/index.html")
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, get())
	pidOf := regexp.MustCompile(`(?m)^APP\s+\S+\s+App\s+[0-9a-f]{16}\s+running\s+\S+\s+\S+\s+(\d+)`)
	out, code := wharfCmd(t, "", "ps", "--data-dir", data)
	require.Equal(t, 0, code, out)
	before := pidOf.FindStringSubmatch(out)
	require.NotNil(t, before, out)
	abs, err := filepath.Abs(data)
	require.NoError(t, err)
	require.NotEmpty(t, egress.FirewallLeftovers(containerd.Scope(abs)), "the first wharf's nft table")

	want := "wharf: the data directory " + data + " is in use by another wharf (pid " + strconv.Itoa(srv.Pid()) + "); stop it or choose another --data-dir\n"
	out, code = wharfCmd(t, "", "serve", app, "--listen", "127.0.0.1:0", "--data-dir", data)
	assert.Equal(t, 1, code)
	assert.Equal(t, want, out, "refused before anything else: no build, no containerd, no log line")
	out, code = wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "wharf.test/busybox:latest", "images reach the running wharf's containerd, which serves the data directory's store")
	// The lock is on the directory: neither another path to it nor deleting
	// the pid file lets a second wharf in.
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(abs, link))
	require.NoError(t, os.Remove(filepath.Join(data, "wharf.lock")))
	out, code = wharfCmd(t, "", "serve", app, "--listen", "127.0.0.1:0", "--data-dir", link)
	assert.Equal(t, 1, code)
	assert.Equal(t, "wharf: the data directory "+link+" is in use by another wharf; stop it or choose another --data-dir\n", out)

	assert.Equal(t, 200, get(), "the first wharf still serves")
	out, code = wharfCmd(t, "", "ps", "--data-dir", data)
	require.Equal(t, 0, code, out)
	after := pidOf.FindStringSubmatch(out)
	require.NotNil(t, after, "the container still runs: %s", out)
	assert.Equal(t, before[1], after[1], "the same container process")
	assert.NotEmpty(t, egress.FirewallLeftovers(containerd.Scope(abs)), "the nft table is still there")
	assert.NotContains(t, srv.Logs(), "level=ERROR")

	require.NoError(t, srv.Stop(30*time.Second))
	out, code = wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, "the directory is free again once the first has stopped: %s", out)
	_, err = os.Stat(filepath.Join(data, "wharf.lock"))
	assert.NoError(t, err)
}

// TestImagesNameTheDataDirAbsolute: wharf images given a relative
// --data-dir (the README's `--data-dir .wharf`) that a wharf owns without
// a containerd that listens there (its containerd was killed) is refused,
// naming the directory by its absolute path, which works from any
// directory: it said "the data directory .wharf is in use".
func TestImagesNameTheDataDirAbsolute(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, ".wharf")
	lock, err := host.LockDataDir(data) // as a running wharf serve holds it
	require.NoError(t, err)
	defer lock.Unlock()
	tookAWhileAgo(t, data)

	cmd := exec.Command(testutil.BuildWharf(t), "images", "ls", "--data-dir", ".wharf")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, "wharf: the data directory "+data+" is in use by another wharf (pid "+strconv.Itoa(os.Getpid())+
		"); stop it or choose another --data-dir\n", string(out))
}

// TestImagesThroughAStaleSocket: wharf images on a data directory that
// a wharf owns, where the socket of a containerd that was killed (or of
// one before a reboot) is left, is refused as the
// directory in use, saying why: it said only "containerd at
// <socket>: connection refused", a socket the user never named.
func TestImagesThroughAStaleSocket(t *testing.T) {
	data := t.TempDir()
	lock, err := host.LockDataDir(data)
	require.NoError(t, err)
	defer lock.Unlock()
	tookAWhileAgo(t, data)
	sock := containerd.EmbeddedAddress(data)
	require.NoError(t, os.MkdirAll(filepath.Dir(sock), 0o700))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close()) // its file stays, and nothing listens
	defer os.Remove(sock)

	out, code := wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 1, code)
	assert.Regexp(t, `^wharf: the data directory `+regexp.QuoteMeta(data)+` is in use by another wharf \(pid `+strconv.Itoa(os.Getpid())+
		`\); stop it or choose another --data-dir \(its containerd does not answer: containerd at `+regexp.QuoteMeta(sock)+`: .*connection refused.*\)\n$`, out)
}

// TestImagesOnALockDatedInTheFuture: a wharf images command on a data
// directory whose owner has no containerd there, and whose lock is dated
// in the future (the clock was set back since the owner took it, or the
// file was touched), is refused once it has waited ownerStartWait for
// that containerd: it waited until the clock reached the lock's time plus
// ownerStartWait, an hour here.
func TestImagesOnALockDatedInTheFuture(t *testing.T) {
	data := t.TempDir()
	lock, err := host.LockDataDir(data) // as a running wharf serve holds it
	require.NoError(t, err)
	defer lock.Unlock()
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(data, "wharf.lock"), later, later))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testutil.BuildWharf(t), "images", "ls", "--data-dir", data).CombinedOutput()
	require.NoError(t, ctx.Err(), "wharf images ls still waited 30 s later")
	require.Error(t, err, "%s", out)
	assert.Equal(t, "wharf: the data directory "+data+" is in use by another wharf (pid "+strconv.Itoa(os.Getpid())+
		"); stop it or choose another --data-dir\n", string(out))
}

// tookAWhileAgo makes the owner of the data directory data look as if it
// took it an hour ago: a wharf images command does not wait for its
// containerd to start then, and is refused at once.
func tookAWhileAgo(t *testing.T, data string) {
	then := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(data, "wharf.lock"), then, then))
}

// TestImagesStartedWithTheirOwner: a wharf images command started in the
// same instant as the wharf serve that owns the data directory, once that
// wharf took the directory but before its containerd's socket exists,
// waits for that containerd and goes through it: it was refused as the
// directory in use, and a retry worked.
func TestImagesStartedWithTheirOwner(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "webapp")
	_, err := run(t, "build", app) // so that serve starts its containerd at once
	require.NoError(t, err)
	srv := testutil.LaunchServe(t, app, "--no-build", "--listen", "127.0.0.1:0", "--data-dir", data)
	require.Eventually(t, func() bool { return host.DataDirOwner(data).Pid == srv.Pid() }, 30*time.Second, time.Millisecond,
		"wharf serve takes the data directory:\n%s", srv.Logs())
	_, err = os.Stat(containerd.EmbeddedAddress(data))
	require.ErrorIs(t, err, os.ErrNotExist, "the command must start before serve's containerd listens")
	out, code := wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, out)
	assert.Regexp(t, `^NAME\s+DIGEST\s+SIZE\s+USED BY\nwharf.test/busybox:latest\s+sha256:[0-9a-f]{64}\s+[0-9.]+ MB\s+-\n$`, out)
	// serve logs the line once its containerd answers, which is when the
	// command can go through it: the line may reach srv.Logs after.
	assert.True(t, srv.WaitLog(`msg="containerd started"`, 10*time.Second), "through serve's containerd:\n%s", srv.Logs())
	srv.Stop(30 * time.Second) // still compiling the plugin, it says "stopped while starting"
	assert.Empty(t, testutil.Processes("containerd", data))
}

// TestImagesBesideAServeWithoutContainers: a wharf images command on the
// data directory of a wharf serve that runs no containerd there (its
// plugin has no [[containers]]) is refused at once, saying why, also in
// the first moments after that wharf took the directory: it waited until
// ownerStartWait after, for a containerd that would never answer (4.6 s
// seen). The serve serves on; once it stops, the directory is free.
func TestImagesBesideAServeWithoutContainers(t *testing.T) {
	data := t.TempDir()
	app := helloPlugin(t)
	testutil.BuildWharf(t) // not while serve's start is timed
	srv := testutil.LaunchServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.Eventually(t, func() bool { return host.DataDirOwner(data).Pid == srv.Pid() }, 30*time.Second, time.Millisecond,
		"wharf serve takes the data directory:\n%s", srv.Logs())
	want := "wharf: the data directory " + data + " is in use by another wharf (pid " + strconv.Itoa(srv.Pid()) + "); stop it or choose another --data-dir " +
		"(it runs no containerd there to share: a wharf serve of a plugin without [[containers]], or a wharf given --containerd-address)\n"
	for _, args := range [][]string{{"ls"}, {"rm", "wharf.test/busybox:latest"}, {"prune"}} {
		began := time.Now()
		out, code := wharfCmd(t, "", append(append([]string{"images"}, args...), "--data-dir", data)...)
		took := time.Since(began)
		assert.Equal(t, 1, code)
		assert.Equal(t, want, out, "images %q", args)
		assert.Less(t, took, 2*time.Second, "images %q answers at once", args)
	}
	require.True(t, srv.WaitLog("msg=serving", time.Minute), srv.Logs())
	out, code := wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 1, code)
	assert.Equal(t, want, out, "and while it serves")
	_, err := os.Stat(filepath.Join(data, "containerd"))
	assert.ErrorIs(t, err, os.ErrNotExist, "no command started a containerd there")
	assert.NotContains(t, srv.Logs(), "level=ERROR")

	require.NoError(t, srv.Stop(30*time.Second))
	out, code = wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, "the directory is free again: %s", out)
	assert.Equal(t, "NAME  DIGEST  SIZE  USED BY\n", out)
	assert.Empty(t, testutil.Processes("containerd", data))
}

// TestServeWaitsForAnImagesCommand: wharf serve started while a wharf
// images command holds the data directory (an import under way, with the
// containerd it started) waits for the command to end, saying so, and
// then serves; it was refused as if another serve ran there.
func TestServeWaitsForAnImagesCommand(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	whole, err := os.ReadFile(archive)
	require.NoError(t, err)
	pipe := filepath.Join(t.TempDir(), "busybox.tar")
	require.NoError(t, syscall.Mkfifo(pipe, 0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	importing := exec.CommandContext(ctx, testutil.BuildWharf(t), "images", "import", pipe, "--data-dir", data)
	var out bytes.Buffer
	importing.Stdout, importing.Stderr = &out, &out
	require.NoError(t, importing.Start())
	w, err := os.OpenFile(pipe, os.O_WRONLY, 0) // once the command opens it, holding the directory
	require.NoError(t, err)
	defer w.Close()
	pid := host.DataDirOwner(data).Pid
	require.Equal(t, importing.Process.Pid, pid, "the import holds the data directory")

	srv := testutil.LaunchServe(t, filepath.Join(testutil.RepoRoot(), "examples", "webapp"), "--listen", "127.0.0.1:0", "--data-dir", data)
	require.True(t, srv.WaitLog("waiting for a wharf images command to finish with the data directory", time.Minute), srv.Logs())
	assert.Contains(t, srv.Logs(), fmt.Sprintf("pid=%d", pid))
	_, err = w.Write(whole)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, importing.Wait(), out.String())
	assert.Contains(t, out.String(), "imported wharf.test/busybox:latest")
	require.True(t, srv.WaitLog("msg=serving", 5*time.Minute), srv.Logs())
	require.NoError(t, srv.Stop(30*time.Second))
}

// TestImagesWhileTheOwnerStops: a wharf images command that goes through
// the containerd of the wharf that owns the data directory (wharf serve,
// or another wharf images command, which ends first) finishes, and that
// containerd stops after it: it stopped under the command, whose import
// failed halfway ("failed to ingest …: error reading from server: EOF").
func TestImagesWhileTheOwnerStops(t *testing.T) {
	data := t.TempDir()
	lock, err := host.LockDataDir(data)
	require.NoError(t, err)
	defer lock.Unlock()
	owner, err := containerd.OpenBackend(context.Background(), data, "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)

	cmd := exec.Command(testutil.BuildWharf(t), "images", "import", archive, "--data-dir", data)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	// The owner stops its containerd once the command holds its share of
	// it (a shared lock, listed in /proc/locks).
	require.Eventually(t, func() bool { return holdsSharedLock(t, cmd.Process.Pid) }, 10*time.Second, 5*time.Millisecond, "the command's share")
	closed := make(chan error, 1)
	go func() { closed <- owner.Close() }()
	require.NoError(t, cmd.Wait(), out.String())
	assert.Contains(t, out.String(), "imported wharf.test/busybox:latest")
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the owner's containerd did not stop once the command ended")
	}
}

// TestImagesWhenTheOwnerIsKilled: a wharf images command that goes
// through the containerd of the wharf serve owning the data directory,
// when that serve is killed (SIGKILL) during the command, and its
// containerd with it, says so and leaves nothing running: it ended with
// "rpc error: code = Unavailable desc = error reading from server: EOF".
// The command pulls from a registry that holds the image's first blob
// until the serve is gone.
func TestImagesWhenTheOwnerIsKilled(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data) // serve checks its class's image
	app := filepath.Join(testutil.RepoRoot(), "examples", "webapp")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	asked, release := make(chan struct{}, 1), make(chan struct{})
	registry := testregistry.Start(t, "", "")
	holding := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			select {
			case asked <- struct{}{}:
			default:
			}
			<-release
		}
		(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: registry.Host})
		}}).ServeHTTP(w, r)
	}))
	defer holding.Close()
	releaseAll := sync.OnceFunc(func() { close(release) })
	defer releaseAll() // before Close, which waits for the handlers

	img, err := random.Image(1<<20, 1) // blobs the data directory does not hold
	require.NoError(t, err)
	pushed, err := name.ParseReference(registry.Host+"/x/random:v1", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(pushed, img))
	ref := strings.TrimPrefix(holding.URL, "http://") + "/x/random:v1"

	cmd := exec.Command(testutil.BuildWharf(t), "images", "pull", ref, "--data-dir", data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	select {
	case <-asked:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the pull asked for no blob: %s", stderr.String())
	}
	srv.Kill()
	require.Eventually(t, func() bool { return len(testutil.Processes("containerd", data)) == 0 }, 10*time.Second, 10*time.Millisecond,
		"serve's containerd goes with it")
	releaseAll() // the pull goes on, to a containerd that is gone
	require.Error(t, cmd.Wait(), stdout.String())
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	assert.Equal(t, "wharf: the wharf that owned the data directory "+data+" (pid "+strconv.Itoa(srv.Pid())+
		") went away during the command, and its containerd with it: the command did not finish", lines[len(lines)-1], stderr.String())
	assert.Empty(t, testutil.Processes(data), "nothing runs on the data directory")
	assert.Empty(t, containerd.MountsUnder(data))

	// The directory is free and works: a next serve adopts what the
	// killed one left.
	out, code := wharfCmd(t, "", "images", "ls", "--data-dir", data)
	assert.Equal(t, 0, code, out)
	assert.NotContains(t, out, "x/random", "nothing was pulled")
	srv = testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.NoError(t, srv.Stop(30*time.Second))
	assert.Empty(t, containerd.HostLeftovers(data))
}

// TestImagesImportWhenTheOwnerIsKilled: wharf images import commands
// through the containerd of the wharf serve owning the data directory,
// when that serve is killed (SIGKILL), end and say so, the one that waited
// for a blob another import was writing too: it waited for ever,
// containerd's content writer taking the gone server for the other writer
// holding the blob, and retrying. The first import reads its archive from
// a named pipe, which gives half the layer until the serve is gone.
func TestImagesImportWhenTheOwnerIsKilled(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data) // serve checks its class's image
	app := filepath.Join(testutil.RepoRoot(), "examples", "webapp")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	img, err := random.Image(1<<20, 1) // a layer the data directory does not hold
	require.NoError(t, err)
	archive := filepath.Join(t.TempDir(), "random.tar")
	require.NoError(t, tarball.WriteToFile(archive, name.MustParseReference("wharf.test/random:1"), img))
	whole, err := os.ReadFile(archive)
	require.NoError(t, err)
	pipe := filepath.Join(t.TempDir(), "random.tar")
	require.NoError(t, syscall.Mkfifo(pipe, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := func(archive string) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.CommandContext(ctx, testutil.BuildWharf(t), "images", "import", archive, "--data-dir", data)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		return cmd, &out
	}
	writing, wrote := start(pipe)
	w, err := os.OpenFile(pipe, os.O_WRONLY, 0) // once the command opens it, through serve's containerd
	require.NoError(t, err)
	defer w.Close()
	_, err = w.Write(whole[:len(whole)/2])
	require.NoError(t, err)
	waiting, waited := start(archive)
	time.Sleep(time.Second) // it meets the blob the first one is writing
	srv.Kill()
	require.Eventually(t, func() bool { return len(testutil.Processes("containerd", data)) == 0 }, 10*time.Second, 10*time.Millisecond,
		"serve's containerd goes with it")
	w.Write(whole[len(whole)/2:])
	w.Close()

	gone := "wharf: the wharf that owned the data directory " + data + " (pid " + strconv.Itoa(srv.Pid()) +
		") went away during the command, and its containerd with it: the command did not finish\n"
	for _, c := range []struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}{{writing, wrote}, {waiting, waited}} {
		require.Error(t, c.cmd.Wait(), c.out.String())
		require.NoError(t, ctx.Err(), "an import still waited a minute later: %s", c.out.String())
		assert.Equal(t, gone, c.out.String())
	}
	assert.Empty(t, testutil.Processes(data), "nothing runs on the data directory")
	assert.Empty(t, containerd.MountsUnder(data))

	// The killed wharf's firewall table waits for its next run, which
	// removes it when it stops.
	next := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	require.NoError(t, next.Stop(time.Minute))
	assertNothingLeft(t, data)
}

// holdsSharedLock reports whether process pid holds a shared flock.
func holdsSharedLock(t *testing.T, pid int) bool {
	locks, err := os.ReadFile("/proc/locks")
	require.NoError(t, err)
	for line := range strings.Lines(string(locks)) {
		f := strings.Fields(line) // 1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF
		if len(f) >= 5 && f[1] == "FLOCK" && f[3] == "READ" && f[4] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

// TestACopyOfADataDirServesTheObjectsItsOriginalRan: a copy (cp -a) of a
// running wharf's data directory, given a network scope of its own as the
// refusal says, serves the objects whose containers the original runs:
// their entries, which came with the copy into its containerd, answered
// each start with "already exists", a 503 marked X-Wharf-Provisioning
// that the SDK and curl --retry repeat forever. The original's container
// runs on, and each wharf leaves nothing when it stops.
func TestACopyOfADataDirServesTheObjectsItsOriginalRan(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	srv := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	t.Cleanup(srv.Kill)
	require.Equal(t, "ok\n", sandboxRun(t, srv.URL, "k0", "echo ok"))

	copied := filepath.Join(t.TempDir(), "copy")
	out, err := exec.Command("cp", "-a", data, copied).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NoError(t, os.Remove(filepath.Join(copied, "containerd", "network-scope")))
	second := testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", copied)
	t.Cleanup(second.Kill)
	// Not sandboxRun, which would end the test here on a failure and
	// kill both wharfs: they are stopped, and checked, either way.
	resp, err := (&http.Client{Timeout: time.Minute}).Post(second.URL+"/run/k0", "text/plain", strings.NewReader("echo copy"))
	if assert.NoError(t, err) {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		assert.Equal(t, "copy\n", string(body))
	}
	assert.Contains(t, second.Logs(), "this data directory is a copy of another")
	require.NoError(t, second.Stop(time.Minute))
	assertNothingLeft(t, copied)

	assert.Equal(t, "still\n", sandboxRun(t, srv.URL, "k0", "echo still"), "the original serves on")
	require.NoError(t, srv.Stop(time.Minute))
	assertNothingLeft(t, data)
}
