// Package ephemeral marks a process whose wharf data directories live no
// longer than it does: a test. The mark is an environment variable holding
// the process's id, so the containerd it starts and that containerd's
// shims carry it too; once the marked process has ended (a kill -9, a test
// binary's timeout), what it left running can be told apart from the
// containers a killed `wharf serve` leaves for its next start to adopt.
package ephemeral

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Env holds the id of the ephemeral process that started this one, or
// this one's own.
const Env = "WHARF_EPHEMERAL_PID"

// Mark marks this process, and the processes it starts from now on, as
// ephemeral.
func Mark() {
	os.Setenv(Env, strconv.Itoa(os.Getpid()))
}

// Marked reports whether this process is marked (by itself or by the
// process that started it).
func Marked() bool { return os.Getenv(Env) != "" }

// Ended reports whether environ, a process's environment, marks it as
// started by an ephemeral process that no longer runs.
func Ended(environ []string) bool {
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, Env+"=")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(v)
		return err == nil && pid > 0 && ProcessEnded(pid)
	}
	return false
}

// registryDir is where ephemeral processes register the data directories
// whose containerd they start: one symbolic link to each, named after the
// marking process's id. What such a process leaves when killed before a
// container's shim runs, or after it is gone (a network namespace, a
// disk), has no process to find it by; the registry finds it. It is one
// per host, whatever each process's TMPDIR (a test runs child tests in a
// temporary directory of its own); a variable for tests.
var registryDir = "/run/wharf-ephemeral"

// Register records that the process that marked this one uses the data
// directory dir, an absolute path; it does nothing in a process that is
// not marked.
func Register(dir string) error {
	pid := os.Getenv(Env)
	if pid == "" {
		return nil
	}
	if err := os.MkdirAll(registryDir, 0o700); err != nil {
		return err
	}
	h := fnv.New64a()
	h.Write([]byte(dir))
	err := os.Symlink(dir, filepath.Join(registryDir, fmt.Sprintf("%s-%x", pid, h.Sum64())))
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// entry is a registered data directory and the id of the process that
// registered it.
type entry struct {
	link, dir string
	pid       int
}

// entries lists the registry.
func entries() []entry {
	links, _ := filepath.Glob(filepath.Join(registryDir, "*-*"))
	var out []entry
	for _, link := range links {
		pidText, _, _ := strings.Cut(filepath.Base(link), "-")
		pid, err := strconv.Atoi(pidText)
		dir, lerr := os.Readlink(link)
		if err == nil && lerr == nil && pid > 0 {
			out = append(out, entry{link: link, dir: dir, pid: pid})
		}
	}
	return out
}

// ProcessEnded reports whether no process has the id pid.
func ProcessEnded(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }

// EndedDirs lists the existing data directories that ephemeral processes
// which ended registered, and that no running one did; it forgets those
// that no longer exist.
func EndedDirs() []string {
	all := entries()
	var dirs []string
	for _, e := range all {
		if !ProcessEnded(e.pid) {
			continue
		}
		if _, err := os.Stat(e.dir); errors.Is(err, fs.ErrNotExist) {
			os.Remove(e.link)
			continue
		}
		live := slices.ContainsFunc(all, func(o entry) bool { return o.dir == e.dir && !ProcessEnded(o.pid) })
		if !live && !slices.Contains(dirs, e.dir) {
			dirs = append(dirs, e.dir)
		}
	}
	return dirs
}

// forget removes the registry's entries that match.
func forget(match func(entry) bool) {
	for _, e := range entries() {
		if match(e) {
			os.Remove(e.link)
		}
	}
}

// Forget forgets the data directory dir as registered by processes that
// ended: what they left there is gone.
func Forget(dir string) {
	forget(func(e entry) bool { return e.dir == dir && ProcessEnded(e.pid) })
}

// Unregister forgets the data directories this process registered: at
// its end, once its tests removed what they made there.
func Unregister() {
	self := os.Getpid()
	forget(func(e entry) bool { return e.pid == self })
}

// UnregisterDir forgets that the process that marked this one uses the
// data directory dir, as Register recorded it: a test that removed what
// it made there, in a directory of its own, and whose process may run no
// Unregister at its end (a plugin's tests with wharftest).
func UnregisterDir(dir string) {
	pid, err := strconv.Atoi(os.Getenv(Env))
	if err != nil {
		return
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return
	}
	forget(func(e entry) bool { return e.pid == pid && e.dir == dir })
}

// Registered reports whether a registered data directory is at or below
// dir.
func Registered(dir string) bool {
	return slices.ContainsFunc(entries(), func(e entry) bool {
		return e.dir == dir || strings.HasPrefix(e.dir, dir+"/")
	})
}
