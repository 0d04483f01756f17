package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dataDirLockFile is the file in a data directory whose exclusive flock
// marks its owner; it holds the owner's pid for the refusal message.
const dataDirLockFile = "wharf.lock"

// ErrDataDirInUse is returned by LockDataDir when another process owns the
// data directory.
var ErrDataDirInUse = errors.New("in use by another wharf")

// DataDirLock is one process's exclusive hold on a data directory. The
// kernel releases it when the process exits, however it exits.
type DataDirLock struct{ f *os.File }

// LockDataDir creates dir if needed and takes its lock without waiting.
// A data directory has one owner: a second wharf on it would start a
// second containerd on the same state and take over the first one's
// containers and firewall, so it must be refused before it does anything.
func LockDataDir(dir string) (*DataDirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, dataDirLockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(f.Name())
		f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking the data directory %s: %w", dir, err)
		}
		by := ""
		if pid, err := strconv.Atoi(strings.TrimSpace(string(owner))); err == nil {
			by = fmt.Sprintf(" (pid %d)", pid)
		}
		return nil, fmt.Errorf("the data directory %s is %w%s; stop it or choose another --data-dir", dir, ErrDataDirInUse, by)
	}
	if err = f.Truncate(0); err == nil {
		_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return &DataDirLock{f: f}, nil
}

// Unlock gives the data directory up.
func (l *DataDirLock) Unlock() error { return l.f.Close() }
