package containerd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/keptthread"
)

// unmountAll unmounts every mount stacked at path (flags as for umount2),
// if path exists. A path removed meanwhile is unmounted, not an error:
// containerd, cleaning up after a shim that died, removes a task bundle's
// rootfs while recovery unmounts it, and mount.UnmountAll, which looks
// for the path before it unmounts, then fails with a bare ENOENT.
func unmountAll(path string, flags int) error {
	if err := mount.UnmountAll(path, flags); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	return nil
}

// MountsUnder lists the mount points at or below dir, deepest first (a
// mount comes after the one it is mounted on in /proc/self/mountinfo).
// moby/sys/mountinfo (containerd's own reader) undoes the kernel's octal
// escapes: a data directory whose path has a space (/srv/my data) matched
// none of its mounts when they were compared as written.
func MountsUnder(dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(mounts))
	for _, m := range slices.Backward(mounts) {
		out = append(out, m.Mountpoint)
	}
	return out
}

// UnmountUnder detaches every mount at or below dir, deepest first, and
// removes the mount points below dir it left empty.
func UnmountUnder(dir string) error {
	var errs []error
	for _, m := range MountsUnder(dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		} else if m != dir {
			os.Remove(m)
		}
	}
	return errors.Join(errs...)
}

// inSnapshot calls fn with a descriptor of the root directory of a
// snapshot, given as the mounts containerd gives for it. An overlay it
// mounts read-only in a mount namespace made for the call
// (inMountNamespace): nothing stays mounted whatever happens to wharf
// meanwhile (a temporary mount of the host's would stay if wharf were
// killed), and the snapshot is left as it was.
func inSnapshot(mounts []mount.Mount, fn func(root int) error) error {
	if len(mounts) != 1 {
		return fmt.Errorf("a snapshot of %d mounts: wharf reads one overlay or bind mount", len(mounts))
	}
	switch m := mounts[0]; m.Type {
	case "bind": // a snapshot of no layers: its directory is its root
		root, err := unix.Open(m.Source, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: m.Source, Err: err}
		}
		defer unix.Close(root)
		return fn(root)
	case "overlay":
		return inMountNamespace(func() error { return inOverlay(m.Options, fn) })
	default:
		return fmt.Errorf("a snapshot mounted as %q: wharf reads an overlay or bind mount", m.Type)
	}
}

// mountThread is the thread inMountNamespace runs on, kept from its first
// call on (package keptthread), with file-system attributes of its own: a
// thread that changes its mount namespace must not share them.
var mountThread = sync.OnceValues(func() (*keptthread.Thread, error) {
	return keptthread.Start(func() error {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("a thread of wharf's own to mount on: %w", err)
		}
		return nil
	})
})

// inMountNamespace runs fn in a mount namespace made for the call, private
// (nothing mounted there reaches wharf's), and gone, with all mounted in
// it, once fn returns or wharf ends, however it ends. It runs on a kept
// thread (mountThread), which is not the main one, whose namespace
// /proc/self shows.
func inMountNamespace(fn func() error) error {
	t, err := mountThread()
	if err != nil {
		return err
	}
	t.Do(func() { err = inNewMountNamespace(fn) })
	return err
}

// inNewMountNamespace runs fn in a new private mount namespace of the
// calling thread (see inMountNamespace), then moves the thread back to the
// namespace it was in, and the new one goes.
func inNewMountNamespace(fn func() error) error {
	back, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wharf's mount namespace: %w", err)
	}
	defer unix.Close(back)
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("a mount namespace of wharf's own: %w", err)
	}
	err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "") // nothing goes back to wharf's
	if err != nil {
		err = fmt.Errorf("making wharf's own mount namespace private: %w", err)
	} else {
		err = fn()
	}
	if serr := unix.Setns(back, unix.CLONE_NEWNS); serr != nil {
		err = errors.Join(err, fmt.Errorf("returning to wharf's mount namespace: %w", serr))
	}
	return err
}

// inOverlay calls fn with a descriptor of the root of the overlay of
// options (containerd's), mounted read-only: the upper directory becomes
// the top lower one, and the work directory goes. It mounts in the
// namespace of the calling thread, made for it (inMountNamespace), and
// changes the thread's working directory: the layers are named relative
// to the directory they share, for an overlay of some 40 layers named in
// full passes the page mount(2) takes.
func inOverlay(options []string, fn func(root int) error) error {
	var layers, data []string
	for _, o := range options {
		switch k, v, _ := strings.Cut(o, "="); k {
		case "upperdir":
			layers = append([]string{v}, layers...)
		case "lowerdir":
			layers = append(layers, strings.Split(v, ":")...)
		case "workdir":
		default:
			data = append(data, o)
		}
	}
	if len(layers) == 0 {
		return fmt.Errorf("an overlay of no layers (options %q)", options)
	}
	dir := filepath.Dir(layers[0])
	for _, l := range layers {
		for !strings.HasPrefix(l, dir+"/") && dir != "/" {
			dir = filepath.Dir(dir)
		}
	}
	for i, l := range layers {
		layers[i], _ = filepath.Rel(dir, l)
	}
	if err := unix.Chdir(dir); err != nil {
		return &fs.PathError{Op: "chdir", Path: dir, Err: err}
	}
	target := os.TempDir() // covered in this namespace only
	data = append(data, "lowerdir="+strings.Join(layers, ":"))
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, strings.Join(data, ",")); err != nil {
		return fmt.Errorf("mounting the overlay of %s read-only: %w", dir, err)
	}
	root, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: target, Err: err}
	}
	defer unix.Close(root)
	return fn(root)
}
