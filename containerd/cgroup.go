package containerd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	return "/" + Namespace + "/" + cgroupTag(runcRoot) + "-" + id
}

// cgroupTag begins the names of the cgroups of the containerd whose runc
// state is at runcRoot: a hash of runcRoot.
func cgroupTag(runcRoot string) string {
	sum := sha256.Sum256([]byte(runcRoot))
	return hex.EncodeToString(sum[:4])
}

// BuildCgroupParent is the cgroup BuildKit puts the build containers it
// runs on this backend under (buildkitd's defaultCgroupParent; each goes
// in buildkit/<id> below it): /wharf/<hash of the runc root>-build. Its
// default, /buildkit, is shared by every BuildKit on the host, and what a
// build left there could not be told apart. Container ids begin with
// "wharf-", so it is no container's cgroup.
func (b *Backend) BuildCgroupParent() string {
	return Namespace + "/" + buildTag(b.RuncRoot)
}

// buildTag names what the builds of the containerd whose runc state is at
// runcRoot have on the host: their cgroup (BuildCgroupParent) and their nft
// table (OpenBuildNetwork).
func buildTag(runcRoot string) string { return cgroupTag(runcRoot) + "-build" }

// cgroupsOf lists the cgroup directories, in every hierarchy, of the
// containers and builds of the containerd whose runc state is at runcRoot.
func cgroupsOf(runcRoot string) []string {
	var out []string
	for _, dir := range cgroupDirs("/" + Namespace) {
		found, _ := filepath.Glob(filepath.Join(dir, cgroupTag(runcRoot)+"-*"))
		out = append(out, found...)
	}
	return out
}

// cgroupDirs are the directories of the cgroup at path (see cgroupPath),
// made by runc: one in the unified hierarchy (cgroup v2), or one in each
// v1 hierarchy. The links systemd makes to co-mounted hierarchies (cpu to
// cpu,cpuacct) are not hierarchies of their own.
func cgroupDirs(path string) []string {
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		return []string{filepath.Join(cgroupRoot, path)}
	}
	hierarchies, _ := os.ReadDir(cgroupRoot)
	dirs := make([]string, 0, len(hierarchies))
	for _, h := range hierarchies {
		if h.IsDir() {
			dirs = append(dirs, filepath.Join(cgroupRoot, h.Name(), path))
		}
	}
	return dirs
}

// removeCgroup removes the cgroup at path (see cgroupPath) wherever it is
// left empty. A start cut short by a crash can leave it with no runc state
// that a delete would remove it by. One that still holds processes is
// left, as a delete by runc would leave it.
func removeCgroup(path string) error {
	var errs []error
	busyUntil := time.Now().Add(busyWait)
	for _, dir := range cgroupDirs(path) {
		errs = append(errs, removeCgroupDir(dir, busyUntil))
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes the cgroup at path and every cgroup below it,
// deepest first, wherever they are left empty, as removeCgroup does.
func removeCgroupTree(path string) error {
	var errs []error
	busyUntil := time.Now().Add(busyWait)
	for _, top := range cgroupDirs(path) {
		var dirs []string
		filepath.WalkDir(top, func(dir string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, dir)
			}
			return nil
		})
		for _, dir := range slices.Backward(dirs) {
			errs = append(errs, removeCgroupDir(dir, busyUntil))
		}
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes one cgroup directory unless it is gone or holds
// processes. An empty cgroup whose last process has only just exited can
// refuse for a moment (EBUSY, seen in the v1 cpuset hierarchy): it is
// tried again until busyUntil, which a removal shares among all the
// directories it removes.
func removeCgroupDir(dir string, busyUntil time.Time) error {
	err := unix.Rmdir(dir)
	for errors.Is(err, unix.EBUSY) && time.Now().Before(busyUntil) && !inUse(dir) {
		time.Sleep(20 * time.Millisecond)
		err = unix.Rmdir(dir)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("removing cgroup %s: %w", dir, err)
	}
	return nil
}

// busyWait is how long a removal tries the empty cgroups that refuse.
const busyWait = time.Second

// inUse reports whether the cgroup directory dir lists a process or has a
// cgroup below it, either of which keeps it for good.
func inUse(dir string) bool {
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil || len(bytes.TrimSpace(procs)) > 0 {
		return true
	}
	entries, _ := os.ReadDir(dir)
	return slices.ContainsFunc(entries, fs.DirEntry.IsDir)
}

// processCgroup is the directory of the cgroup the host's process pid is
// in: in controller's hierarchy (cgroup v1), else in the unified hierarchy
// (cgroup v2, which v2 reports). A process that is gone is fs.ErrNotExist,
// also one reaped as its file was read (ESRCH).
func processCgroup(pid int, controller string) (dir string, v2 bool, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if errors.Is(err, unix.ESRCH) {
		err = fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	}
	if err != nil {
		return "", false, err
	}
	unified := ""
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		switch {
		case len(parts) != 3:
		case slices.Contains(strings.Split(parts[1], ","), controller):
			return filepath.Join(cgroupRoot, parts[1], parts[2]), false, nil
		case parts[0] == "0" && parts[1] == "":
			unified = filepath.Join(cgroupRoot, parts[2])
		}
	}
	if unified == "" {
		return "", false, fmt.Errorf("process %d has no %s cgroup", pid, controller)
	}
	return unified, true, nil
}

// DefaultBuildPids is how many processes and threads the RUN steps of a
// data directory's builds may have together (see LimitBuilds).
const DefaultBuildPids = 4096

// DefaultBuildMemory is how much memory the RUN steps of a data
// directory's builds may use together (see LimitBuilds): half of the
// host's. A compiler or a bundler gets much of the host, while what runs
// beside the build (wharf serving, its containers, the host's own
// services) keeps the other half, and a step that allocates without
// bound is killed in its cgroup instead of driving the host to its OOM
// killer, which may pick any process.
func DefaultBuildMemory() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil || si.Totalram == 0 {
		return 4 << 30
	}
	return int64(si.Totalram) * int64(si.Unit) / 2
}

// LimitBuilds caps the processes and threads of all the build steps
// BuildKit runs on this backend together at pids, in the pids controller of
// BuildCgroupParent, which it makes: a RUN that forks without bound (a
// fork bomb, make -j with no number) took every pid of the host, and with
// them the wharfs serving on it. It caps their memory together at memory
// bytes, swap included, in the memory controller of the same cgroup: a
// RUN that allocated without bound took the host's. RemoveBuildLeftovers
// removes the cgroup once no step is left in it.
func (b *Backend) LimitBuilds(pids int, memory int64) error {
	dir, err := buildCgroupDir(b.BuildCgroupParent(), "pids", true)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "pids.max"), []byte(fmt.Sprint(pids)), 0)
	}
	if err != nil {
		return fmt.Errorf("limiting the processes of builds: %w", err)
	}
	if dir, err = buildCgroupDir(b.BuildCgroupParent(), "memory", true); err == nil {
		err = limitMemory(dir, memory)
	}
	if err != nil {
		return fmt.Errorf("limiting the memory of builds: %w", err)
	}
	return nil
}

// limitMemory sets the memory limit of the cgroup at dir, with no swap
// beyond it where the kernel accounts swap: on cgroup v2 memory.max and
// memory.swap.max; on v1 memory.limit_in_bytes and
// memory.memsw.limit_in_bytes, which may never be below it (so it is
// lifted first).
func limitMemory(dir string, limit int64) error {
	v := []byte(fmt.Sprint(limit))
	if _, err := os.Stat(filepath.Join(dir, "memory.max")); err == nil {
		os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		return os.WriteFile(filepath.Join(dir, "memory.max"), v, 0)
	}
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	os.WriteFile(memsw, []byte("-1"), 0)
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), v, 0); err != nil {
		return err
	}
	os.WriteFile(memsw, v, 0)
	return nil
}

// BuildMemory is what the builds' memory limit (LimitBuilds) has seen
// since it was set: the processes the kernel killed for it, and the most
// memory the build steps used at once. On cgroup v2 these are
// memory.events' oom_kill, which counts those of the steps' own cgroups,
// and memory.peak. On v1, which counts the kills only in the step's own
// cgroup, gone by then, kills is -1, and peak is memory.max_usage_in_bytes.
func (b *Backend) BuildMemory() (kills, peak int64) {
	kills = -1
	dir, err := buildCgroupDir(b.BuildCgroupParent(), "memory", false)
	if err != nil {
		return kills, 0
	}
	if events, err := os.ReadFile(filepath.Join(dir, "memory.events")); err == nil {
		for line := range strings.Lines(string(events)) {
			fmt.Sscanf(line, "oom_kill %d", &kills)
		}
	}
	for _, name := range []string{"memory.peak", "memory.max_usage_in_bytes"} {
		if v, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			fmt.Sscan(string(v), &peak)
			break
		}
	}
	return kills, peak
}

// BuildPids is what the builds' limit (LimitBuilds) has seen since it was
// set: the most processes and threads the build steps had at once
// (pids.peak) and the forks it refused (pids.events' max: on cgroup v1,
// and v2 before Linux 6.13, these count in the step's own cgroup, gone by
// then, so the peak tells that the limit was reached).
func (b *Backend) BuildPids() (peak, refused int64) {
	dir, err := buildCgroupDir(b.BuildCgroupParent(), "pids", false)
	if err != nil {
		return 0, 0
	}
	if p, err := os.ReadFile(filepath.Join(dir, "pids.peak")); err == nil {
		fmt.Sscan(string(p), &peak)
	}
	events, err := os.ReadFile(filepath.Join(dir, "pids.events"))
	if err != nil {
		return peak, 0
	}
	for line := range strings.Lines(string(events)) {
		if _, err := fmt.Sscanf(line, "max %d", &refused); err == nil {
			break
		}
	}
	return peak, refused
}

// buildCgroupDir is the directory of the cgroup at path (below the root)
// in the controller (pids, memory): in the unified hierarchy (cgroup v2),
// where make also enables the controller on the way down, or in the v1
// hierarchy holding it. With make, it is made if missing.
func buildCgroupDir(path, controller string, make bool) (string, error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		dir := cgroupRoot
		for _, part := range parts {
			if make {
				// Refused in a cgroup namespace's root that holds
				// processes: the controller's files below are then
				// missing unless it was on already.
				os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+controller), 0)
				if err := os.Mkdir(filepath.Join(dir, part), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
					return "", err
				}
			}
			dir = filepath.Join(dir, part)
		}
		return dir, nil
	}
	hierarchies, _ := os.ReadDir(cgroupRoot)
	for _, h := range hierarchies {
		if !h.IsDir() || !slices.Contains(strings.Split(h.Name(), ","), controller) {
			continue
		}
		dir := filepath.Join(append([]string{cgroupRoot, h.Name()}, parts...)...)
		if make {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", err
			}
		}
		return dir, nil
	}
	return "", errors.New("no cgroup hierarchy has the " + controller + " controller")
}
