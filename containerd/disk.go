package containerd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// A disk is a size-limited filesystem: a sparse file formatted ext4 and
// loop-mounted (with autoclear, so unmounting it frees the loop device).
// A container's writable layer lives on one, its persistent
// directories on another, so a write beyond the size fails with ENOSPC
// inside the container and never fills the host's filesystem. A new disk
// is a sparse copy of a template formatted once per size, which takes
// milliseconds where mkfs takes tens of them.

// ErrMissingE2fsprogs is a host without mkfs.ext4, e2fsck or resize2fs.
var ErrMissingE2fsprogs = errors.New("install the Debian package \"e2fsprogs\"")

// disk is one size-limited filesystem: its image file and mount point.
type disk struct {
	image, dir string
	// journaled disks keep their data across a host crash (persistent
	// directories); scratch ones (writable layers) need no journal.
	journaled bool
}

// mount creates the image (sizeMB, sparse) if it does not exist, grows an
// existing smaller one to sizeMB, and mounts it at the disk's directory.
// It returns the size the image had in MB (0 for a new one): a larger one
// keeps its size, since ext4 cannot shrink while mounted and shrinking
// could lose data.
func (d disk) mount(templates string, sizeMB int) (hadMB int, err error) {
	st, err := os.Stat(d.image)
	switch {
	case errors.Is(err, os.ErrNotExist):
		tmpl, err := template(templates, sizeMB, d.journaled)
		if err != nil {
			return 0, err
		}
		if err := copySparse(d.image, tmpl); err != nil {
			return 0, fmt.Errorf("creating the disk %s: %w", d.image, err)
		}
	case err != nil:
		return 0, err
	default:
		hadMB = int(st.Size() >> 20)
	}
	if hadMB > 0 && hadMB < sizeMB {
		if err := grow(d.image, sizeMB); err != nil {
			return hadMB, fmt.Errorf("growing the disk %s from %d to %d MB: %w", d.image, hadMB, sizeMB, err)
		}
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return hadMB, err
	}
	// noinit_itable: the kernel would otherwise write zeros over every
	// inode table in the background, filling the sparse image.
	m := mount.Mount{Type: "ext4", Source: d.image, Options: []string{"loop", "noatime", "noinit_itable"}}
	if err := m.Mount(d.dir); err != nil {
		return hadMB, fmt.Errorf("mounting the disk %s: %w", d.image, err)
	}
	return hadMB, nil
}

// grow enlarges the unmounted disk image to sizeMB (sparse) and its
// filesystem to fill it. It is done offline: the kernel's online resize
// needs CAP_SYS_RESOURCE, which a containerized host may lack.
func grow(image string, sizeMB int) error {
	e2fsck, err := findE2fsprog("e2fsck")
	if err != nil {
		return err
	}
	resize2fs, err := findE2fsprog("resize2fs")
	if err != nil {
		return err
	}
	if err := os.Truncate(image, int64(sizeMB)<<20); err != nil {
		return err
	}
	// resize2fs wants a freshly checked filesystem; -p repairs only what
	// is safe, and exit code 1 means it did.
	if out, err := exec.Command(e2fsck, "-f", "-p", image).CombinedOutput(); err != nil {
		if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
			return fmt.Errorf("e2fsck: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := exec.Command(resize2fs, image).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmount unmounts the disk (if it is mounted) and removes its mount point
// and, unless keepImage, its image.
func (d disk) unmount(keepImage bool) error {
	err := unmountAll(d.dir, 0)
	if errors.Is(err, unix.EBUSY) { // still held (a dying container): goes when released
		err = unmountAll(d.dir, unix.MNT_DETACH)
	}
	if err != nil {
		return err
	}
	errs := []error{os.RemoveAll(d.dir)}
	if !keepImage {
		errs = append(errs, removeIfExists(d.image))
	}
	return errors.Join(errs...)
}

// template returns a sparse image of sizeMB formatted ext4, formatting it
// the first time a size is asked for.
func template(dir string, sizeMB int, journaled bool) (string, error) {
	name := "ext4-" + strconv.Itoa(sizeMB)
	if journaled {
		name += "-journal"
	}
	path := filepath.Join(dir, name+".img")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	mkfs, err := findE2fsprog("mkfs.ext4")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Truncate(int64(sizeMB) << 20)
	tmp.Close()
	if err != nil {
		return "", err
	}
	// No reserved blocks: disk_mb is what the container gets. The inode
	// tables and journal are left unwritten: holes read as zeros, so they
	// are zeroed already, and the copies stay small (see noinit_itable).
	args := []string{"-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"}
	if !journaled {
		args = append(args, "-O", "^has_journal")
	}
	if out, err := exec.Command(mkfs, append(args, tmp.Name())...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return path, os.Rename(tmp.Name(), path)
}

// findE2fsprog finds a program of e2fsprogs (mkfs.ext4, e2fsck,
// resize2fs) on PATH or in /usr/sbin and /sbin, which a user's PATH may
// lack.
func findE2fsprog(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not on PATH: %w", name, ErrMissingE2fsprogs)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// copySparse copies src to a new file dst, holes included, writing only the
// data extents.
func copySparse(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = copyExtents(out, in, st.Size())
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func copyExtents(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// loopDevicesOf lists the loop devices whose backing file is below dir.
func loopDevicesOf(dir string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if strings.HasPrefix(backing, dir+"/") {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(f)))+" ("+backing+")")
		}
	}
	return out
}
