package containerd

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/keptlog"
)

// A wharf killed (SIGKILL) while its containers run leaves them running,
// with its firewall table, their network namespaces, links, shims,
// mounts and cgroups, for its data directory's next run to adopt or
// remove. If that data directory is then removed (a test's temporary
// directory, an operator cleaning up), no next run comes: the next wharf
// of any data directory removes them instead (orphanedScope,
// removeOrphanedScope), found through the lock file the killed wharf left
// in /run/wharf (see claimScope), which names its data directory.
//
// A lock file is all that tells whose a scope's names are: with none
// (/run/wharf removed after the kill), the names are left, since a data
// directory that still keeps their scope may exist anywhere, and a wharf
// of a version that takes no lock may run with them.

// orphanedScope reports why the scope tag, whose lock file names holder
// and which no process holds (the caller holds the lock), is no data
// directory's any more: "" if a next run of holder's data directory may
// take it, or if that cannot be told. A data directory that no longer
// exists is gone; so is one that keeps no scope and no record of a run
// (an rm -rf of it leaves the mount points of the killed wharf's
// containers, and nothing else): a next run there takes a new one. One
// that keeps another scope is left: the wharf that ran there since may
// have containers of its own at the same paths, for its next run.
func orphanedScope(tag string, holder scopeHolder) string {
	dir := holder.DataDir
	if dir == "" || !filepath.IsAbs(dir) {
		return "" // a lock taken a moment before it was killed
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return "its data directory no longer exists"
	} else if err != nil {
		return ""
	}
	if kept, err := readScope(dir); err != nil || kept != "" || ranBefore(dir) {
		return ""
	}
	return "its data directory no longer holds its data"
}

// orphanOwner tells why what scope tag names must be left although its
// lock file names a data directory dir that is gone: a process holds the
// scope's lock on a file removed from /run/wharf (a running wharf, see
// runningWharfWith), its containerd runs (a wharf of it runs after all;
// unless dir is claiming, the data directory this process claims a scope
// for: its containerd, just started, runs nothing yet), or a shim of its
// containerd works in another directory (the data directory was moved,
// not removed: it still keeps the scope, for its next run to adopt). ""
// if nothing does.
func orphanOwner(host *hostView, tag, dir, claiming string) string {
	if pid, ok := host.removedLocks()[scopeLockPath(tag)+" (deleted)"]; ok {
		return "process " + pid + " holds its scope's lock"
	}
	if dir != claiming && daemonRuns(host.procs(), dir) {
		return "its containerd runs"
	}
	for _, sh := range shimsAmong(host.procs(), EmbeddedAddress(dir)) {
		if cwd := workDir(sh.pid); cwd != "" && !strings.HasPrefix(cwd, dir+"/") {
			return fmt.Sprintf("its shim %d works in %s", sh.pid, cwd)
		}
	}
	return ""
}

// workDir is the working directory of process pid, "" if it cannot be
// read.
func workDir(pid int) string {
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return cwd
}

// removeLeftProcesses removes what the processes of a killed wharf of the
// data directory named left running: the processes of its containers and
// builds (by their cgroups), its shims and log keepers, then their mounts
// (in its containerd's directory and its build directory) and cgroups.
// named is the data directory as those processes name it, at where it is
// now: named, unless it was moved since (see discardForeignRuntimeState).
// It returns what it removed.
func removeLeftProcesses(procs []process, named, at string) (removed []string, errs []error) {
	pids := map[int]string{}
	for _, sh := range shimsAmong(procs, EmbeddedAddress(named)) {
		pids[sh.pid] = "shim"
	}
	for _, p := range procs {
		if strings.HasPrefix(argAfter(p.args, keptlog.Flag), named+"/") {
			pids[p.pid] = "log keeper"
		}
		if filepath.Base(p.args[0]) == "buildkitd" && strings.HasPrefix(argAfter(p.args, "--config"), BuildDir(named)+"/") {
			pids[p.pid] = "buildkitd"
		}
	}
	cgroups := cgroupsOf(runcRoot(daemonDir(named)))
	for _, pid := range cgroupProcs(cgroups) {
		pids[pid] = "container process"
	}
	for _, pid := range slices.Sorted(maps.Keys(pids)) {
		syscall.Kill(pid, syscall.SIGKILL)
		removed = append(removed, pids[pid]+" "+strconv.Itoa(pid))
	}
	// The container processes that forked meanwhile are in the cgroups.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := cgroupProcs(cgroups)
		for pid := range pids {
			if !exited(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("processes %v did not exit after SIGKILL", left))
			break
		}
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, under := range []string{daemonDir(at), BuildDir(at)} {
		for _, m := range MountsUnder(under) {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
			} else if err == nil && !slices.Contains(removed, "mount "+m) { // overlays stacked at a root filesystem
				removed = append(removed, "mount "+m)
			}
		}
	}
	busyUntil := time.Now().Add(busyWait)
	for _, top := range cgroups {
		var dirs []string
		filepath.WalkDir(top, func(d string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, d)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			errs = append(errs, removeCgroupDir(d, busyUntil))
		}
		// One per hierarchy (cgroup v1): named once.
		name := "cgroup /" + Namespace + "/" + filepath.Base(top)
		if _, err := os.Stat(top); errors.Is(err, fs.ErrNotExist) && !slices.Contains(removed, name) {
			removed = append(removed, name)
		}
	}
	return removed, errs
}

// removeOrphanedScope removes what the killed wharf of the data directory
// dir, whose scope was tag, left on the host: its processes, mounts and
// cgroups (removeLeftProcesses), network namespaces and links, its nft
// table, and its
// containerd's socket directory in /run unless daemonRuns (a containerd
// started for dir runs: the claim's own). It returns what it removed, and
// what of the scope's it left because a process that is not the killed
// wharf's runs in it.
func removeOrphanedScope(host *hostView, tag, dir string, daemonRuns bool) (removed, kept []string, err error) {
	removed, errs := removeLeftProcesses(host.procs(), dir, dir)
	// A network namespace a process still runs in (all of the killed
	// wharf's are gone by now) is another's of the same scope: a copy of
	// a data directory keeps its original's scope, and its killed wharf's
	// lock file names the copy, while the original's containers, which
	// the copy left to the original, run on in namespaces of that scope
	// behind its table. Those, their links and the table are left for the
	// original's next run.
	ns, links := scopeNetwork(tag)
	used := namespacesInUse(ns)
	for _, name := range used {
		kept = append(kept, "network namespace "+name)
	}
	ns = slices.DeleteFunc(ns, func(name string) bool { return slices.Contains(used, name) })
	links = slices.DeleteFunc(links, func(link string) bool {
		if slices.Contains(used, netnsPrefix+strings.TrimPrefix(link, vethPrefix)) {
			kept = append(kept, "link "+link)
			return true
		}
		return false
	})
	for _, name := range ns {
		err := netns.DeleteNamed(name)
		if errors.Is(err, unix.EINVAL) { // not mounted: a crash came between creating the file and mounting it
			err = removeIfExists(filepath.Join("/var/run/netns", name))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("network namespace %s: %w", name, err))
		} else {
			removed = append(removed, "network namespace "+name)
		}
	}
	for _, name := range links {
		// Most went with their network namespace.
		if l, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("removing link %s: %w", name, err))
				continue
			}
		}
		removed = append(removed, "link "+name)
	}
	if len(used) > 0 && len(egress.FirewallLeftovers(tag)) > 0 {
		kept = append(kept, "nft table "+egress.TableName(tag))
	} else if len(egress.FirewallLeftovers(tag)) > 0 {
		if err := egress.RemoveFirewall(tag); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "nft table "+egress.TableName(tag))
		}
	}
	// The table of its build steps' network, had it been killed while
	// building (named after its containerd's runc state: OpenBuildNetwork).
	if build := buildTag(runcRoot(daemonDir(dir))); len(egress.FirewallLeftovers(build)) > 0 {
		if err := egress.RemoveFirewall(build); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, "nft table "+egress.TableName(build))
		}
	}
	if sock := EmbeddedAddress(dir); !daemonRuns && filepath.Dir(sock) != daemonDir(dir) {
		// Its own, named after the data directory (SocketPath).
		os.Remove(sock)
		os.Remove(sock + ttrpcSuffix)
		if err := os.Remove(filepath.Dir(sock)); err == nil {
			removed = append(removed, "socket directory "+filepath.Dir(sock))
		}
	}
	return removed, kept, errors.Join(errs...)
}

// namespacesInUse lists those of the named network namespaces names (in
// /var/run/netns) that a process runs in.
func namespacesInUse(names []string) []string {
	byInode := map[uint64]string{}
	for _, name := range names {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/var/run/netns", name), &st) == nil {
			byInode[st.Ino] = name
		}
	}
	if len(byInode) == 0 {
		return nil
	}
	var used []string
	links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, l := range links {
		var st unix.Stat_t
		if unix.Stat(l, &st) != nil {
			continue
		}
		if name, ok := byInode[st.Ino]; ok && !slices.Contains(used, name) {
			used = append(used, name)
		}
	}
	return used
}

// cgroupProcs lists the processes in the cgroup directories dirs and the
// cgroups below them.
func cgroupProcs(dirs []string) []int {
	var pids []int
	for _, top := range dirs {
		filepath.WalkDir(top, func(d string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return nil
			}
			raw, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeOrphan removes what the killed wharf holder of scope tag left if
// its data directory is gone (see orphanedScope), and says so in one line
// to logger; the caller holds the scope's lock, so no wharf takes the
// scope meanwhile, and claims a scope for the data directory claiming.
// It reports whether the lock file is to be kept: what it names was left
// for now (see orphanOwner), for a later claim to look at again (a wharf
// of that data directory starting meanwhile, say, which removes it).
func removeOrphan(host *hostView, tag string, holder scopeHolder, claiming string, logger *slog.Logger) (keep bool) {
	why := orphanedScope(tag, holder)
	if why == "" {
		return false
	}
	procs := host.procs()
	if owner := orphanOwner(host, tag, holder.DataDir, claiming); owner != "" {
		logger.Debug("left what a killed wharf left, whose data directory seems gone", "data_dir", holder.DataDir, "scope", tag, "because", owner)
		return true
	}
	removed, kept, err := removeOrphanedScope(host, tag, holder.DataDir, daemonRuns(procs, holder.DataDir))
	host.removed = host.removed || len(removed) > 0
	if len(removed) == 0 && err == nil {
		return false
	}
	attrs := []any{"data_dir", holder.DataDir, "pid", holder.PID, "scope", tag, "why", why, "removed", strings.Join(removed, ", ")}
	if len(kept) > 0 {
		attrs = append(attrs, "left_in_use", strings.Join(kept, ", "))
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	logger.Warn("removed what a killed wharf whose data directory is gone left on this host", attrs...)
	return false
}

// hostView is what one sweep (sweepStaleLocks) reads of the host's
// processes, once for all the lock files it looks at: each read of /proc
// takes some 10 ms, and every lock file of a gone data directory read it
// five times (some 100 ms each: 5 s for 50 of them, under scopes, at a
// wharf's start). It is read again after a removal, and once it is
// hostViewAge old: a wharf that starts meanwhile is seen.
type hostView struct {
	processes []process
	locks     map[string]string // the lock files open, removed from /run/wharf: pid by "<path> (deleted)"
	read      time.Time
	removed   bool // a removal since the read
}

// hostViewAge is how long a hostView is used.
const hostViewAge = 100 * time.Millisecond

func (h *hostView) refresh() {
	if !h.read.IsZero() && !h.removed && time.Since(h.read) < hostViewAge {
		return
	}
	h.processes, h.locks, h.read, h.removed = processes(), map[string]string{}, time.Now(), false
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, scopeLockDir+"/") && strings.HasSuffix(target, " (deleted)") {
			h.locks[target] = strings.Split(fd, "/")[2]
		}
	}
}

// procs lists the host's processes.
func (h *hostView) procs() []process {
	h.refresh()
	return h.processes
}

// removedLocks are the lock files that processes hold open although they
// were removed from /run/wharf (see runningWharfWith).
func (h *hostView) removedLocks() map[string]string {
	h.refresh()
	return h.locks
}
