package host

import "syscall"

// openFilesWanted is the descriptor limit wharf asks for: every live
// Durable Object holds its database, write-ahead log and shared-memory
// files open.
const openFilesWanted = 1 << 20

// RaiseFileLimit lifts the process's open-file limit as far as it may (a
// root process up to the kernel's nr_open, others to their hard limit),
// so thousands of live objects do not run out of descriptors. It returns
// the limit in effect.
func RaiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	for _, want := range []uint64{openFilesWanted, lim.Max} {
		next := syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next) == nil {
			return want
		}
	}
	return lim.Cur
}
