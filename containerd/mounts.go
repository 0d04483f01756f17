package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
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
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	slices.Reverse(out)
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
