package containerd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAgentFiles: files are read and written as streams, described,
// listed, created, removed and renamed through the agent, in the
// container's file system, as the image's user or another, with errors
// that say what went wrong; watches stream changes.
func TestAgentFiles(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "files", "ln -s /etc /work/etc-link; sleep 3600", true)
	ctx := context.Background()

	// 64 MiB written from a stream and read back with the same checksum.
	const size = 64 << 20
	w, err := ctr.OpenFile(ctx, "/work/big.bin", "", true, 0)
	require.NoError(t, err)
	sum := sha256.New()
	_, err = io.Copy(io.MultiWriter(w, sum), io.LimitReader(pattern{}, size))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	r, err := ctr.OpenFile(ctx, "/work/big.bin", "", false, 0)
	require.NoError(t, err)
	back := sha256.New()
	n, err := io.Copy(back, r)
	require.NoError(t, err)
	r.Close()
	assert.Equal(t, int64(size), n)
	assert.Equal(t, sum.Sum(nil), back.Sum(nil))
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"stat", "-c", "%s %a %U", "/work/big.bin"}})
	assert.Equal(t, "67108864 644 root\n", out, "the file is in the container")

	info, err := ctr.Stat(ctx, "/work/big.bin", "")
	require.NoError(t, err)
	assert.Equal(t, int64(size), info.Size)
	assert.False(t, info.IsDir)
	info, err = ctr.Stat(ctx, "/work/etc-link", "")
	require.NoError(t, err)
	assert.Equal(t, "/etc", info.Target)
	// Paths resolve in the container: the link leads to its /etc.
	r, err = ctr.OpenFile(ctx, "/work/etc-link/passwd", "", false, 0)
	require.NoError(t, err)
	passwd, _ := io.ReadAll(r)
	r.Close()
	assert.Contains(t, string(passwd), "app:x:1000")

	require.NoError(t, ctr.MkdirAll(ctx, "/work/a/b/c", ""))
	require.NoError(t, ctr.MkdirAll(ctx, "/work/a/b/c", ""), "mkdir -p of an existing directory")
	require.NoError(t, ctr.Rename(ctx, "/work/big.bin", "/work/a/b/moved.bin", ""))
	list, err := ctr.ListDir(ctx, "/work/a/b", "")
	require.NoError(t, err)
	var names []string
	for _, e := range list {
		names = append(names, e.Name)
	}
	assert.Equal(t, []string{"c", "moved.bin"}, names)
	err = ctr.Remove(ctx, "/work/a", "", false)
	assert.ErrorIs(t, err, fs.ErrExist)
	assert.ErrorContains(t, err, "directory not empty")
	require.NoError(t, ctr.Remove(ctx, "/work/a", "", true))
	_, err = ctr.Stat(ctx, "/work/a", "")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.ErrorContains(t, err, "lstat /work/a: no such file or directory")

	// Errors.
	_, err = ctr.OpenFile(ctx, "/nope/x", "", false, 0)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = ctr.ListDir(ctx, "/etc/passwd", "")
	assert.ErrorIs(t, err, syscall.ENOTDIR)
	assert.ErrorContains(t, err, "not a directory")
	_, err = ctr.OpenFile(ctx, "/etc", "", false, 0)
	assert.ErrorIs(t, err, syscall.EISDIR)
	_, err = ctr.OpenFile(ctx, "relative/path", "", false, 0)
	assert.ErrorIs(t, err, fs.ErrInvalid)
	assert.ErrorContains(t, err, "the path must be absolute: relative/path")
	// As another user: the image's root-owned files are out of reach.
	_, err = ctr.OpenFile(ctx, "/etc/owned-by-root", "app", true, 0)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.ErrorContains(t, err, "permission denied")
	require.NoError(t, ctr.MkdirAll(ctx, "/tmp/app-project", "app"))
	w, err = ctr.OpenFile(ctx, "/tmp/app-project/notes.txt", "app", true, 0o600)
	require.NoError(t, err)
	io.WriteString(w, "mine")
	w.Close()
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"stat", "-c", "%a %U", "/tmp/app-project/notes.txt"}})
	assert.Equal(t, "600 app\n", out, "created as the user")
	_, err = ctr.OpenFile(ctx, "/tmp/app-project/notes.txt", "4242", false, 0)
	assert.ErrorIs(t, err, fs.ErrPermission)
	_, err = ctr.Stat(ctx, "/x", "ghost")
	assert.ErrorIs(t, err, ErrUnknownUser)
	_, err = ctr.Exec(ctx, ExecSpec{Args: []string{"id"}, User: "4294967295"})
	assert.ErrorIs(t, err, ErrUnknownUser)
	assert.ErrorContains(t, err, `user "4294967295": 4294967295 is the kernel's "no id" ((uid_t)-1), which no process can run as`)

	// Watch: changes to a directory's entries, as JSON lines.
	watch, err := ctr.Watch(ctx, "/tmp", "")
	require.NoError(t, err)
	code, _, _ := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "echo hi > /tmp/new.txt; mv /tmp/new.txt /tmp/renamed.txt; rm /tmp/renamed.txt; mkdir /tmp/d"}})
	require.Equal(t, uint32(0), code)
	lines := bufio.NewScanner(watch)
	var ops []string
	deadline := time.AfterFunc(10*time.Second, func() { watch.Close() })
	for lines.Scan() {
		var e FileEvent
		require.NoError(t, json.Unmarshal(lines.Bytes(), &e))
		ops = append(ops, e.Op+" "+e.Path)
		if e.Path == "/tmp/d" {
			break
		}
	}
	deadline.Stop()
	watch.Close()
	got := strings.Join(ops, "\n")
	for _, want := range []string{"create /tmp/new.txt", "close_write /tmp/new.txt", "moved_from /tmp/new.txt", "moved_to /tmp/renamed.txt", "delete /tmp/renamed.txt", "create /tmp/d"} {
		assert.Contains(t, got, want)
	}
	_, err = ctr.Watch(ctx, "/no/such/dir", "")
	assert.ErrorIs(t, err, fs.ErrNotExist)

	// A watched directory that is removed ends its stream: nothing more
	// can come.
	require.NoError(t, ctr.MkdirAll(ctx, "/tmp/gone", ""))
	watch, err = ctr.Watch(ctx, "/tmp/gone", "")
	require.NoError(t, err)
	defer watch.Close()
	require.NoError(t, ctr.Remove(ctx, "/tmp/gone", "", false))
	ended := make(chan string, 1)
	go func() {
		all, err := io.ReadAll(watch)
		ended <- fmt.Sprintf("%s%v", all, err)
	}()
	select {
	case got := <-ended:
		assert.Equal(t, `{"op":"delete_self","path":"/tmp/gone"}`+"\n<nil>", got)
	case <-time.After(10 * time.Second):
		t.Error("the watch of a removed directory did not end")
	}
}

// pattern is an endless non-constant byte stream.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i * 7)
	}
	return len(p), nil
}

// TestAgentFilesHostileTargets: a named pipe (whose open would wait for a
// writer for ever), a socket, a path with a NUL byte, a huge path and a
// link loop are refused at once with what is wrong; an endless device is
// read until the reader stops; watches are capped; the agent serves on.
func TestAgentFilesHostileTargets(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "files-hostile", "mkfifo /tmp/fifo; ln -s /tmp/loop /tmp/loop; sleep 3600", true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		_, err := ctr.Stat(ctx, "/tmp/loop", "")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	for _, c := range []struct {
		path  string
		write bool
		msg   string
	}{
		{"/tmp/fifo", false, "open /tmp/fifo: not a file (a named pipe or a socket)"},
		{"/tmp/fifo", true, "open /tmp/fifo: not a file (a named pipe or a socket)"},
		{"/.wharf/agent.sock", false, "open /.wharf/agent.sock: not a file (a named pipe or a socket)"},
		{"/tmp/a\x00b", false, "invalid argument"},
		{"/tmp/" + strings.Repeat("x", 300), true, "file name too long"},
		{"/" + strings.Repeat("x", 5<<20), false, "a path of 5242881 bytes: the limit is 4095"},
		{"/tmp/loop", false, "too many levels of symbolic links"},
	} {
		start := time.Now()
		_, err := ctr.OpenFile(ctx, c.path, "", c.write, 0)
		assert.ErrorIs(t, err, fs.ErrInvalid, "%.40q", c.path)
		assert.ErrorContains(t, err, c.msg)
		assert.Less(t, time.Since(start), 2*time.Second, "answered at once")
	}
	_, err := ctr.Stat(ctx, "/tmp/a\x00b", "")
	assert.ErrorIs(t, err, fs.ErrInvalid)
	err = ctr.Rename(ctx, "/tmp/loop", "/"+strings.Repeat("x", 5000), "")
	assert.EqualError(t, err, "invalid argument: a path of 5001 bytes: the limit is 4095")
	_, err = ctr.OpenFile(ctx, "/.wharf/init", "", true, 0)
	assert.ErrorIs(t, err, fs.ErrPermission)
	assert.EqualError(t, err, "open /.wharf/init: read-only file system")

	zero, err := ctr.OpenFile(ctx, "/dev/zero", "", false, 0)
	require.NoError(t, err)
	n, err := io.Copy(io.Discard, io.LimitReader(zero, 8<<20))
	require.NoError(t, err)
	assert.Equal(t, int64(8<<20), n)
	zero.Close()

	// Watches are inotify instances of root, of which the host has 128
	// by default: a container gets MaxWatches at once.
	var watches []io.ReadCloser
	defer func() {
		for _, w := range watches {
			w.Close()
		}
	}()
	for range MaxWatches {
		w, err := ctr.Watch(ctx, "/tmp", "")
		require.NoError(t, err)
		watches = append(watches, w)
	}
	_, err = ctr.Watch(ctx, "/tmp", "")
	assert.ErrorIs(t, err, ErrTooManyWatches)
	assert.EqualError(t, err, "too many watches: 16 are open on this container, the limit is 16: close one first")
	_, err = ctr.Watch(ctx, "/no/such/dir", "")
	assert.ErrorIs(t, err, ErrTooManyWatches, "the cap comes first")
	watches[0].Close()
	watches[0].Close() // a second close gives nothing back twice
	watches[0], err = ctr.Watch(ctx, "/tmp", "")
	require.NoError(t, err, "a closed watch makes room")
	_, err = ctr.Watch(ctx, "/tmp", "")
	assert.ErrorIs(t, err, ErrTooManyWatches)
	for _, w := range watches[1:] {
		w.Close()
	}
	watches = watches[:1]
	_, err = ctr.Watch(ctx, "/no/such/dir", "")
	assert.ErrorIs(t, err, fs.ErrNotExist, "a failed watch takes no room")

	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
	assert.Equal(t, "still serving\n", out)
}

// TestUserResolvesInTheContainer: a user name is looked up in the
// container's /etc/passwd with its links resolved in the container: a
// link to a path of the host reads the container's file of that path, not
// the host's; a named pipe in its place is refused at once.
func TestUserResolvesInTheContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	hostDir := t.TempDir()
	hostPasswd := filepath.Join(hostDir, "passwd")
	require.NoError(t, os.WriteFile(hostPasswd, []byte("hostonly:x:777:777::/:/bin/sh\n"), 0o644))
	script := fmt.Sprintf("mkdir -p %s && echo inner:x:4242:4242::/:/bin/sh > %s && ln -sf %s /etc/passwd && touch /tmp/ready; sleep 3600",
		hostDir, hostPasswd, hostPasswd)
	ctr := startBusybox(t, c, image, runcRoot, "user-in-root", script, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		_, err := ctr.Stat(ctx, "/tmp/ready", "")
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)

	_, err := ctr.Exec(ctx, ExecSpec{Args: []string{"id", "-u"}, User: "hostonly"})
	assert.ErrorIs(t, err, ErrUnknownUser, "the host's file was not read")
	assert.ErrorContains(t, err, `user "hostonly" does not exist in the image's /etc/passwd`)
	_, err = ctr.Stat(ctx, "/", "hostonly")
	assert.ErrorIs(t, err, ErrUnknownUser)
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"id", "-u"}, User: "inner"})
	assert.Equal(t, "4242\n", out, "the link led to the container's file")

	code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "rm /etc/passwd && mkfifo /etc/passwd"}})
	require.Equal(t, uint32(0), code, errOut)
	start := time.Now()
	_, err = ctr.Exec(ctx, ExecSpec{Args: []string{"id", "-u"}, User: "inner"})
	assert.ErrorIs(t, err, ErrUnknownUser)
	assert.ErrorContains(t, err, "open /etc/passwd: not a regular file")
	assert.Less(t, time.Since(start), 2*time.Second, "answered at once")
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
	assert.Equal(t, "still serving\n", out)
}
