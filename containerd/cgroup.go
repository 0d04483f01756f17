package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the kernel's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupPath is the cgroup of container id under the containerd whose runc
// state is at runcRoot: /wharf/<hash of runcRoot>-<id>. containerd's
// default, /wharf/<id>, is the same for every containerd on the host, so
// two wharfs running a container for an object of the same class and name
// (tests side by side, or two plugins) shared one cgroup: its limits were
// the last start's, and destroying one container (runc kill --all signals
// the whole cgroup) killed the other's processes.
func cgroupPath(runcRoot, id string) string {
	sum := sha256.Sum256([]byte(runcRoot))
	return "/" + Namespace + "/" + hex.EncodeToString(sum[:4]) + "-" + id
}

// cgroupDirs are the directories of the cgroup at path (see cgroupPath),
// made by runc: one in the unified hierarchy (cgroup v2), or one in each
// v1 hierarchy.
func cgroupDirs(path string) []string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return []string{filepath.Join(cgroupRoot, path)}
	}
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupRoot, "*"))
	dirs := make([]string, 0, len(hierarchies))
	for _, h := range hierarchies {
		dirs = append(dirs, filepath.Join(h, path))
	}
	return dirs
}

// removeCgroup removes the cgroup at path (see cgroupPath) wherever it is
// left empty. A start cut short by a crash can leave it with no runc state
// that a delete would remove it by. One that still holds processes is
// left, as a delete by runc would leave it.
func removeCgroup(path string) error {
	var errs []error
	for _, dir := range cgroupDirs(path) {
		err := unix.Rmdir(dir)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
