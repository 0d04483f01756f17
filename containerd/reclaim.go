package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/dirlock"
	"github.com/wharfhq/wharf/internal/ephemeral"
)

// reclaimOnce makes the first OpenBackend of an ephemeral process reclaim
// what ended ones left; later ones find nothing new worth a scan.
var reclaimOnce sync.Once

// reclaimEndedOnce is ReclaimEnded for the first embedded backend an
// ephemeral process opens; what it did and what failed go to logger.
func reclaimEndedOnce(ctx context.Context, logger *slog.Logger) {
	if !ephemeral.Marked() {
		return
	}
	reclaimOnce.Do(func() {
		dirs, err := ReclaimEnded(ctx, logger)
		for _, dir := range dirs {
			logger.Info("removed what an ended test left running", "data_dir", dir)
		}
		if err != nil {
			logger.Warn("removing what ended tests left running", "err", err)
		}
	})
}

// ReclaimEnded removes what ended ephemeral processes (tests, see package
// internal/ephemeral) left running: a process killed with SIGKILL runs no
// cleanup, and its containerd goes with it, but its containers' shims,
// networks, disks, mounts and cgroups stay. For each data directory a shim
// of such a process works in, or such a process registered (see
// ephemeral.Register), that no containerd serves any more, it starts that
// directory's containerd, removes every container the way a start after a
// crash removes those it does not adopt, then the builds' leftovers, and
// stops it. Containers of a killed `wharf serve` (its data directory is
// marked adoptable), or of an ephemeral process still running, are left
// alone. It returns the data directories it reclaimed.
func ReclaimEnded(ctx context.Context, logger *slog.Logger) ([]string, error) {
	var reclaimed []string
	var errs []error
	for _, dir := range endedDataDirs() {
		ok, err := reclaimEnded(ctx, dir, logger)
		if errors.Is(err, unix.EWOULDBLOCK) {
			continue // in use: not ended after all, or being reclaimed
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
		} else if ok {
			reclaimed = append(reclaimed, dir)
		}
	}
	return reclaimed, errors.Join(errs...)
}

// reclaimEnded reclaims dir, one of endedDataDirs, and forgets it, with
// its lock held; it reports whether it did. One that another process
// reclaimed between the list and the lock (a test may have removed it
// since, or started on it) is left: another containerd there would be one
// too many.
func reclaimEnded(ctx context.Context, dir string, logger *slog.Logger) (bool, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	beforeRecheck(dir)
	if !slices.Contains(endedDataDirs(), dir) {
		return false, nil
	}
	if err := reclaimLocked(ctx, dir, logger); err != nil {
		return false, err
	}
	ephemeral.Forget(dir)
	return true, nil
}

// endedDataDirs lists the data directories that wharf's shims of ended
// ephemeral processes work in, or that ended ones registered (see
// ephemeral.Register), and that no containerd serves.
func endedDataDirs() []string {
	var dirs []string
	procs := processes()
	for _, p := range procs {
		ns := argAfter(p.args, "-namespace")
		if !strings.Contains(p.args[0], "containerd-shim") || ns != Namespace && ns != BuildNamespace {
			continue
		}
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
		if err != nil || !ephemeral.Ended(strings.Split(string(environ), "\x00")) {
			continue
		}
		bundle, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.pid))
		if err != nil {
			continue
		}
		dir := dataDirOfBundle(bundle, ns)
		if _, err := os.Stat(dir); err != nil {
			// Gone (its test removed it while a killed wharf's container
			// ran on): no containerd can be started there. The next
			// claim of a scope removes it (see removeOrphan).
			continue
		}
		if !slices.Contains(dirs, dir) && !daemonRuns(procs, dir) && !adoptable(dir) {
			dirs = append(dirs, dir)
		}
	}
	// Those killed before a container's shim ran, or after it was gone.
	for _, dir := range ephemeral.EndedDirs() {
		switch {
		case adoptable(dir):
			ephemeral.Forget(dir)
		case !slices.Contains(dirs, dir) && !daemonRuns(procs, dir):
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// adoptablePath marks a data directory whose containers are for a wharf
// serve to adopt: the last embedded containerd started there was one of a
// process that is no test. A test's containers there (say, wharftest's
// Options.DataDir is the plugin's .wharf) were adopted by that wharf, and
// their shims still carry the ended test's mark.
func adoptablePath(dataDir string) string { return filepath.Join(daemonDir(dataDir), "adoptable") }

// markAdoptable marks the data directory dataDir adoptable unless this
// process is ephemeral, and unmarks it if it is: its embedded containerd
// is about to start.
func markAdoptable(dataDir string) error {
	if ephemeral.Marked() {
		return removeIfExists(adoptablePath(dataDir))
	}
	if err := os.MkdirAll(daemonDir(dataDir), 0o700); err != nil {
		return err
	}
	return os.WriteFile(adoptablePath(dataDir), nil, 0o600)
}

// adoptable reports whether dataDir's containers are for a wharf serve to
// adopt (see markAdoptable).
func adoptable(dataDir string) bool {
	_, err := os.Stat(adoptablePath(dataDir))
	return err == nil
}

// dataDirOfBundle is the data directory whose containerd keeps the task
// bundle at path in namespace ns, or "" if path is no such bundle.
func dataDirOfBundle(path, ns string) string {
	nsDir := filepath.Dir(path)
	if filepath.Base(nsDir) != ns {
		return ""
	}
	// taskStateDir(dir) is dir/containerd/state/io.containerd.runtime.v2.task.
	dir := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(nsDir))))
	if filepath.Join(taskStateDir(dir), ns) != nsDir {
		return ""
	}
	return dir
}

// daemonRuns reports whether one of procs is the containerd wharf starts
// for the data directory dir.
func daemonRuns(procs []process, dir string) bool {
	config := filepath.Join(daemonDir(dir), "config.toml")
	return slices.ContainsFunc(procs, func(p process) bool {
		return filepath.Base(p.args[0]) == "containerd" && argAfter(p.args, "--config") == config
	})
}

// beforeRecheck is called by reclaimEnded once it holds the lock of a
// data directory, before it checks it still needs reclaiming; for tests.
var beforeRecheck = func(dir string) {}

// lockDir takes the lock of the data directory dir (package dirlock)
// without waiting.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := dirlock.Try(d); err != nil {
		d.Close()
		return nil, fmt.Errorf("locking it: %w", err)
	}
	return func() { d.Close() }, nil
}

// reclaimLocked removes every container, and the builds' leftovers, of
// the data directory dir, with its own containerd started for the purpose;
// the caller holds the directory's lock (the one host.LockDataDir takes),
// so a wharf that owns it, or another process reclaiming it, is left alone.
func reclaimLocked(ctx context.Context, dir string, logger *slog.Logger) error {
	b, err := openBackend(ctx, dir, "", logger)
	if err != nil {
		return err
	}
	m, err := NewManager(b, ManagerOptions{Logger: logger})
	if err != nil {
		return errors.Join(err, b.Close())
	}
	_, removed, err := m.Recover(ctx, func(string, bool) *egresspolicy.Policy { return nil })
	logger.Debug("reclaimed containers", "data_dir", dir, "removed", removed)
	// What a build cut short left, as build.RecoverKilled removes it: a
	// buildkitd that outlived its test, and its mounts (a RUN step's cache
	// mounts) with it.
	buildDir := BuildDir(dir)
	killed := KillProcesses(func(args []string) bool {
		return filepath.Base(args[0]) == "buildkitd" && strings.HasPrefix(argAfter(args, "--config"), buildDir+"/")
	})
	return errors.Join(err, m.Close(ctx), killed, UnmountBuild(buildDir), b.RemoveBuildLeftovers(ctx), b.Close())
}
