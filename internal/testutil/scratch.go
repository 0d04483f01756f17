package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/wharfhq/wharf/internal/ephemeral"
)

// Scratch directories hold what a test process keeps for its whole life:
// the binaries and guests it builds, a data directory its tests share.
// Their names carry the process id. RemoveScratch removes them as the
// process ends (Run does), and the first ScratchDir of a later process
// removes those of processes that died without doing so (a kill -9, a test
// binary's timeout).

// scratchPrefix begins every scratch directory's name, before the pid.
const scratchPrefix = "wharf-scratch-"

var scratch struct {
	sync.Mutex
	swept bool
	dirs  []string
}

// ScratchDir makes a directory in the system's temporary directory that
// lives as long as the test process; purpose goes into its name.
func ScratchDir(purpose string) (string, error) {
	scratch.Lock()
	defer scratch.Unlock()
	if !scratch.swept {
		scratch.swept = true
		sweepScratch()
	}
	dir, err := os.MkdirTemp("", scratchName(os.Getpid())+purpose+"-")
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
func Run(m *testing.M) int {
	ephemeral.Mark()
	defer RemoveScratch()
	return m.Run()
}

// scratchName begins the names of the scratch directories of process pid.
func scratchName(pid int) string { return fmt.Sprintf("%s%d-", scratchPrefix, pid) }

// ScratchOf lists the scratch directories of the process pid.
func ScratchOf(pid int) []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchName(pid)+"*"))
	return dirs
}

// RemoveScratchOf removes the scratch directories of the process pid, which
// has ended: a test binary a test ran as a child and killed, which no
// later process may sweep before the test run checks for leftovers.
func RemoveScratchOf(pid int) {
	for _, dir := range ScratchOf(pid) {
		os.RemoveAll(dir)
	}
}

// sweepScratch removes the scratch directories of processes that ended.
func sweepScratch() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchPrefix+"*"))
	for _, dir := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), scratchPrefix), "-")
		if pid, err := strconv.Atoi(pidText); err == nil && !processExists(pid) {
			os.RemoveAll(dir)
		}
	}
}

// processExists reports whether a process with this id exists.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
