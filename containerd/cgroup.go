package containerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// cgroupRoot is where the kernel's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupDirs are the directories container id's cgroup has, or would have:
// runc makes it at containerd's default path for a container, /wharf/<id>,
// in the unified hierarchy (cgroup v2) or in each v1 hierarchy.
func cgroupDirs(id string) []string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return []string{filepath.Join(cgroupRoot, Namespace, id)}
	}
	hierarchies, _ := filepath.Glob(filepath.Join(cgroupRoot, "*"))
	dirs := make([]string, 0, len(hierarchies))
	for _, h := range hierarchies {
		dirs = append(dirs, filepath.Join(h, Namespace, id))
	}
	return dirs
}

// removeCgroup removes container id's cgroup wherever it is left empty. A
// start cut short by a crash can leave it with no runc state that a delete
// would remove it by. One that still holds processes is left: it is in
// use (by a container of the same id under another containerd, as on a
// machine running tests side by side).
func removeCgroup(id string) error {
	var errs []error
	for _, dir := range cgroupDirs(id) {
		err := unix.Rmdir(dir)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
