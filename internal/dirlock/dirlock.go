// Package dirlock is the lock that owns a wharf data directory: an
// exclusive flock of the directory itself, which the kernel releases when
// its holder exits, however it exits. A running wharf holds it
// (host.LockDataDir); so does a test process reclaiming what a killed
// test left there (containerd.ReclaimEnded), and the scratch sweep that
// removes such a directory.
package dirlock

import "golang.org/x/sys/unix"

// Try takes the lock of the directory open as d without waiting; closing
// d releases it. It fails with unix.EWOULDBLOCK while another holds it.
func Try(d interface{ Fd() uintptr }) error {
	return unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// Wait takes the lock of the directory open as d, waiting for its holder
// to release it; closing d releases it.
func Wait(d interface{ Fd() uintptr }) error {
	return unix.Flock(int(d.Fd()), unix.LOCK_EX)
}
