package containerd

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// oddKinds are what a user file is instead of a regular file: the tar
// type of an image's entry, the words of the error about it. The device
// is a character device of a number no driver has (see
// unregisteredCharMajor), whose open fails: one that opened was refused,
// this one was taken as no file, and both were opened, on the host.
var oddKinds = []struct {
	typeflag byte
	what     string
}{{tar.TypeFifo, "a named pipe"}, {tar.TypeDir, "a directory"}, {tar.TypeChar, "a device"}}

// unregisteredCharMajor is a major number of character devices that no
// driver of this kernel has taken (/proc/devices), among those kept for
// local use: opening a device of it fails (ENXIO) and does nothing.
func unregisteredCharMajor(t *testing.T) int64 {
	t.Helper()
	devices, err := os.ReadFile("/proc/devices")
	require.NoError(t, err)
	chars, _, _ := strings.Cut(string(devices), "Block devices:")
	taken := map[string]bool{}
	for line := range strings.Lines(chars) {
		if f := strings.Fields(line); len(f) == 2 {
			taken[f[0]] = true
		}
	}
	for _, major := range []int64{60, 61, 62, 63, 120, 121, 122, 123, 124, 125, 126, 127} {
		if !taken[fmt.Sprint(major)] {
			return major
		}
	}
	t.Fatal("every character major kept for local use is taken")
	return 0
}

// TestImageUserFilesThatAreNotFiles: an image whose /etc/passwd or
// /etc/group is a named pipe, a directory or a device does not start, at once, with
// an error that names the file, as Docker fails on a directory (moby's
// user lookup reads it). The start of one with a named pipe hung in
// wharf: containerd's open of it, for the image's USER, waited for a
// writer forever (runc's, for every start and exec, would too). Through
// runc and through the agent alike.
func TestImageUserFilesThatAreNotFiles(t *testing.T) {
	c, _, runcRoot := testRuntime(t)
	major := unregisteredCharMajor(t)
	for _, file := range userFiles {
		for _, kind := range oddKinds {
			name := strings.ReplaceAll(file, "/", "-") + "-" + strings.ReplaceAll(kind.what, " ", "-")
			image := importBusyboxAs(t, c, "wharf.test/odd:"+name, "app", tar.Header{Typeflag: kind.typeflag, Name: file, Mode: 0o644, Devmajor: major})
			for _, withInit := range []bool{false, true} {
				spec := ContainerSpec{ID: fmt.Sprintf("%s-%v", name, withInit), Image: image, Entrypoint: []string{"sleep", "3600"},
					RuncRoot: runcRoot, Resources: Resources{VCPU: 0.5, MemoryBytes: 64 << 20, Pids: 64}}
				if withInit {
					withAgent(t, &spec)
				}
				started := time.Now()
				err := startOrUnblock(t, c, runcRoot, file, spec)
				assert.ErrorIs(t, err, ErrBadExec, spec.ID)
				assert.ErrorContains(t, err, fmt.Sprintf("open /%s: not a regular file (%s)", file, kind.what), spec.ID)
				assert.Less(t, time.Since(started), 5*time.Second, "%s: refused at once", spec.ID)
			}
		}
	}
}

// startOrUnblock starts the container of spec, which must fail. A start
// still waiting after 10 s fails the test, and is let go on: a writer
// opens the named pipe file of the image's layers, on which it waits.
func startOrUnblock(t *testing.T, c *client.Client, runcRoot, file string, spec ContainerSpec) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctr, err := StartContainer(context.Background(), c, spec)
		if err == nil {
			ctr.Destroy(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Errorf("%s: the start hung", spec.ID)
	}
	layers, _ := filepath.Glob(filepath.Join(filepath.Dir(runcRoot), "root", "*", "snapshots", "*", "fs", file))
	for {
		for _, l := range layers {
			if fd, err := unix.Open(l, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
		}
		select {
		case err := <-done:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestUserFilesThatAreNotFiles: a container whose /etc/passwd or
// /etc/group its root made a named pipe, a directory or a device (which
// wharf opened on the host, where no device cgroup holds) answers every
// exec at once. An exec that needs the file (as a name, or a uid with a
// name; any through runc, which reads both for every exec) fails with an
// error that names it, as Docker fails on a directory; one that does not
// (through the agent: as the main process's user, or /etc/group for a
// uid /etc/passwd does not list) runs. Through runc, an exec as the main
// process's user or as such a uid hung until its context ended (runc's
// open of the named pipe waited for a writer).
func TestUserFilesThatAreNotFiles(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			image := importBusyboxApp(t, c)
			ctr := startBusybox(t, c, image, runcRoot, "odd-user-files", "exec sleep 3600", withInit)
			for _, file := range userFiles {
				for _, kind := range oddKinds {
					restore := replaceInContainer(t, ctr, file, kind.typeflag)
					for _, user := range []string{"", "app", "1000", "4242"} {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						p, err := ctr.Exec(ctx, ExecSpec{Args: []string{"echo", "ran"}, User: user})
						if err == nil {
							_, err = p.Wait(ctx)
						}
						cancel()
						runs := withInit && (user == "" || file == "etc/group" && user == "4242")
						if runs {
							assert.NoError(t, err, "an exec as %q with /%s %s", user, file, kind.what)
							continue
						}
						assert.ErrorIs(t, err, ErrUnknownUser, "an exec as %q with /%s %s", user, file, kind.what)
						assert.ErrorContains(t, err, fmt.Sprintf("open /%s: not a regular file (%s)", file, kind.what), "an exec as %q", user)
					}
					restore()
				}
			}
			_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"id"}, User: "app"})
			assert.Equal(t, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n", out, "the files restored")
		})
	}
}

// replaceInContainer makes the file at path of ctr's root a named pipe,
// a directory or a device (see oddKinds), as the container's root could, and returns what puts
// the file back (a writer opened on the pipe first lets go of an open
// that waits on it).
func replaceInContainer(t *testing.T, ctr *Container, path string, typeflag byte) (restore func()) {
	t.Helper()
	full := fmt.Sprintf("/proc/%d/root/%s", ctr.task.Pid(), path)
	saved, err := os.ReadFile(full)
	require.NoError(t, err)
	require.NoError(t, os.Remove(full))
	switch typeflag {
	case tar.TypeFifo:
		require.NoError(t, unix.Mkfifo(full, 0o644))
	case tar.TypeChar:
		require.NoError(t, unix.Mknod(full, unix.S_IFCHR|0o644, int(unix.Mkdev(uint32(unregisteredCharMajor(t)), 0))))
	default:
		require.NoError(t, os.Mkdir(full, 0o755))
	}
	return func() {
		if fd, err := unix.Open(full, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
		}
		require.NoError(t, os.Remove(full))
		require.NoError(t, os.WriteFile(full, saved, 0o644))
	}
}

// TestImageUserFilesLinkedToDevices: an image whose /etc/passwd or
// /etc/group is a symbolic link into /dev, /proc or /sys (/dev/zero, say)
// does not start, at once, with an error that names the file and where it
// leads, through runc and through the agent alike. Such a link leads, in
// the container where runc reads it, to what the runtime mounted there,
// not to a file of the image: wharf looked in the image's snapshot, which
// has no /dev/zero, took it for no file, and runc's read of /dev/zero
// failed the start with "cannot start a stopped process" (of /proc/kmsg,
// it waited forever). A link to a file of the image, or to none, still
// starts.
func TestImageUserFilesLinkedToDevices(t *testing.T) {
	c, _, runcRoot := testRuntime(t)
	start := func(id, image string, withInit bool) error {
		spec := ContainerSpec{ID: id, Image: image, Entrypoint: []string{"sleep", "3600"}, RuncRoot: runcRoot,
			Resources: Resources{VCPU: 0.5, MemoryBytes: 64 << 20, Pids: 64}}
		if withInit {
			withAgent(t, &spec)
		}
		return startOrUnblock(t, c, runcRoot, "etc/group", spec)
	}
	links := []struct{ target, to, dir string }{
		{"/dev/zero", "/dev/zero", "dev"}, {"../dev/tty", "/dev/tty", "dev"}, {"/proc/self/environ", "/proc/self/environ", "proc"},
		{"../../sys/kernel/notes", "/sys/kernel/notes", "sys"}}
	for _, file := range userFiles {
		for i, link := range links {
			name := fmt.Sprintf("%s-%d", strings.ReplaceAll(file, "/", "-"), i)
			image := importBusyboxAs(t, c, "wharf.test/linked:"+name, "", tar.Header{Typeflag: tar.TypeSymlink, Name: file, Linkname: link.target})
			for _, withInit := range []bool{false, true} {
				id := fmt.Sprintf("linked-%s-%v", name, withInit)
				started := time.Now()
				err := start(id, image, withInit)
				assert.ErrorIs(t, err, ErrBadExec, "%s: %s", id, link.target)
				assert.ErrorContains(t, err, fmt.Sprintf("open /%s: not a regular file (a link to %s: in a container, %s is the runtime's, not the image's)",
					file, link.to, "/"+link.dir), id)
				assert.Less(t, time.Since(started), 5*time.Second, "%s: refused at once", id)
			}
		}
	}
	image := importBusyboxAs(t, c, "wharf.test/linked:fine", "",
		tar.Header{Typeflag: tar.TypeReg, Name: "lib/group", Mode: 0o644},
		tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/group", Linkname: "../lib/group"},
		tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/passwd", Linkname: "/nowhere/passwd"})
	for _, withInit := range []bool{false, true} {
		assert.NoError(t, start(fmt.Sprintf("linked-fine-%v", withInit), image, withInit), "a link to a file of the image, or to none")
	}
}
