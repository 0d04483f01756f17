package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wharfhq/wharf/internal/dirlock"
	"github.com/wharfhq/wharf/internal/ephemeral"
)

// Scratch directories hold what a test process keeps for its whole life:
// the binaries and guests it builds, a data directory its tests share.
// Their names carry the process id. RemoveScratch removes them as the
// process ends (Run does), and the first ScratchDir of a later process
// removes those of processes that died without doing so (a kill -9, a test
// binary's timeout). One still in use (the shims of a killed test's
// containers work in their task bundles in its data directory, or another
// process is removing those) is kept for containerd.ReclaimEnded, which
// needs that directory to remove them, and swept by a later process once
// they are gone.

// scratchPrefix begins every scratch directory's name, before the pid.
const scratchPrefix = "wharf-scratch-"

var scratch struct {
	sync.Mutex
	swept bool
	dirs  []string
}

// memoryRoot holds MemoryScratchDir's directories: a tmpfs, where a sync
// costs nothing.
const memoryRoot = "/dev/shm"

// ScratchDir makes a directory in the system's temporary directory that
// lives as long as the test process; purpose goes into its name.
func ScratchDir(purpose string) (string, error) { return scratchDirIn(os.TempDir(), purpose) }

// MemoryScratchDir is ScratchDir in memory (memoryRoot), for a test that
// syncs files thousands of times.
func MemoryScratchDir(purpose string) (string, error) { return scratchDirIn(memoryRoot, purpose) }

// scratchDirIn makes a scratch directory in root.
func scratchDirIn(root, purpose string) (string, error) {
	scratch.Lock()
	defer scratch.Unlock()
	if !scratch.swept {
		scratch.swept = true
		sweepScratch()
	}
	dir, err := os.MkdirTemp(root, scratchName(os.Getpid())+purpose+"-")
	if err != nil {
		return "", err
	}
	scratch.dirs = append(scratch.dirs, dir)
	return dir, nil
}

// RemoveScratch removes the scratch directories this process made.
func RemoveScratch() {
	scratch.Lock()
	defer scratch.Unlock()
	for _, dir := range scratch.dirs {
		os.RemoveAll(dir)
	}
	scratch.dirs = nil
}

// Run runs a package's tests for its TestMain and removes the scratch
// directories they made; it returns the exit code. The process is marked
// ephemeral, so the containers of a test binary killed with SIGKILL are
// removed by the next one (see containerd.ReclaimEnded).
func Run(m *testing.M) int { return runEphemeral(m.Run) }

// runEphemeral marks the process ephemeral and calls run; then it removes
// the scratch directories and, if every test passed (each checked it left
// nothing), forgets the data directories the process registered for
// containerd.ReclaimEnded. It returns run's exit code.
func runEphemeral(run func() int) int {
	ephemeral.Mark()
	defer RemoveScratch()
	code := run()
	if code == 0 {
		ephemeral.Unregister()
	}
	return code
}

// scratchName begins the names of the scratch directories of process pid.
func scratchName(pid int) string { return fmt.Sprintf("%s%d-", scratchPrefix, pid) }

// sweepScratch removes the scratch directories of processes that ended.
func sweepScratch() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchPrefix+"*"))
	inMemory, _ := filepath.Glob(filepath.Join(memoryRoot, scratchPrefix+"*"))
	for _, dir := range append(dirs, inMemory...) {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), scratchPrefix), "-")
		if pid, err := strconv.Atoi(pidText); err == nil && ephemeral.ProcessEnded(pid) {
			sweep(dir)
		}
	}
}

// sweep removes dir, the scratch directory of a process that ended, unless
// it is in use: locked (a data directory another test process is removing
// a killed test's containers from, see containerd.ReclaimEnded, holds its
// lock meanwhile), worked in by a process, or holding a data directory
// registered for ReclaimEnded (see ephemeral.Register) and not reclaimed.
// The lock is held while it is removed.
func sweep(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	if dirlock.Try(d) != nil || inUse(dir) || ephemeral.Registered(dir) {
		return
	}
	os.RemoveAll(dir)
}

// inUse reports whether a process on the host works in dir or runs a
// program from it: a shim of a killed test's container works in its task
// bundle, which containerd.ReclaimEnded finds it by and needs to remove
// the container.
func inUse(dir string) bool {
	in := func(path string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		for _, link := range []string{"cwd", "exe"} {
			if target, err := os.Readlink(filepath.Join(p, link)); err == nil && in(strings.TrimSuffix(target, " (deleted)")) {
				return true
			}
		}
	}
	return false
}
