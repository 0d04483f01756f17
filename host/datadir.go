package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/dirlock"
)

// dataDirPidFile is the file in a data directory that names its owner's
// pid, for the refusal message. The lock itself is on the directory, so
// deleting this file changes nothing.
const dataDirPidFile = "wharf.lock"

// ErrDataDirInUse is returned by LockDataDir when another process owns the
// data directory.
var ErrDataDirInUse = errors.New("in use by another wharf")

// DataDirLock is one process's exclusive hold on a data directory. The
// kernel releases it when the process exits, however it exits.
type DataDirLock struct {
	dir *os.File
	// Path is the data directory with symlinks resolved: the one name
	// every part of wharf uses for it, so a restart through another path
	// to the same directory finds what the last run created.
	Path string
}

// LockDataDir creates dir if needed and takes its lock without waiting.
// A data directory has one owner: a second wharf on it would start a
// second containerd on the same state and take over the first one's
// containers and firewall, so it must be refused before it does anything.
// The lock (package dirlock) is taken on the directory itself, which
// cannot be removed while it holds wharf's state. Its errors name dir by
// its absolute path (symlinks kept, as the user wrote them): a relative
// --data-dir would mean nothing in another directory.
func LockDataDir(dir string) (*DataDirLock, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	pidFile := filepath.Join(path, dataDirPidFile)
	if err := dirlock.Try(d); err != nil {
		d.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking the data directory %s: %w", dir, err)
		}
		by := ""
		owner, _ := os.ReadFile(pidFile)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(owner))); err == nil {
			by = fmt.Sprintf(" (pid %d)", pid)
		}
		return nil, fmt.Errorf("the data directory %s is %w%s; stop it or choose another --data-dir", dir, ErrDataDirInUse, by)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		d.Close()
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return &DataDirLock{dir: d, Path: path}, nil
}

// Unlock gives the data directory up.
func (l *DataDirLock) Unlock() error { return l.dir.Close() }
