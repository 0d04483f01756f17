// Package ephemeral marks a process whose wharf data directories live no
// longer than it does: a test. The mark is an environment variable holding
// the process's id, so the containerd it starts and that containerd's
// shims carry it too; once the marked process has ended (a kill -9, a test
// binary's timeout), what it left running can be told apart from the
// containers a killed `wharf serve` leaves for its next start to adopt.
package ephemeral

import (
	"os"
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
		return err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	return false
}
