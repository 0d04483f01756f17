package host

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/atomicfile"
	"github.com/wharfhq/wharf/internal/dirlock"
)

// dataDirPidFile is the file in a data directory that names its owner's
// pid, for the refusal message, followed by noContainerdMark if that owner
// runs no containerd there. The lock itself is on the directory, so
// deleting this file changes nothing.
const dataDirPidFile = "wharf.lock"

const noContainerdMark = "no-containerd"

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
//
// The owner may start a containerd of its own in the directory, which
// wharf images commands share: they wait a moment for it to answer
// (DataDirOwner). One that never does says so with
// LockDataDirWithoutContainerd.
func LockDataDir(dir string) (*DataDirLock, error) { return lockDataDir(dir, true) }

// LockDataDirWithoutContainerd is LockDataDir for an owner that starts no
// containerd in the directory (a wharf serve of a plugin without
// [[containers]], a wharf given --containerd-address): DataDirOwner says
// so, and a wharf images command is refused at once rather than wait for
// one.
func LockDataDirWithoutContainerd(dir string) (*DataDirLock, error) { return lockDataDir(dir, false) }

func lockDataDir(dir string, containerd bool) (*DataDirLock, error) {
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
		if pid := DataDirOwner(path).Pid; pid > 0 {
			by = fmt.Sprintf(" (pid %d)", pid)
		}
		return nil, fmt.Errorf("the data directory %s is %w%s; stop it or choose another --data-dir", dir, ErrDataDirInUse, by)
	}
	owner := strconv.Itoa(os.Getpid())
	if !containerd {
		owner += " " + noContainerdMark
	}
	// Written through a new file renamed over the name, never through
	// whatever is at it: a symlink planted there (the directory may be
	// shared, or made by someone else) would have had its target
	// overwritten with the pid. The lock is on the directory, not on this
	// file, so replacing its inode takes nothing from anyone.
	if fi, err := os.Lstat(pidFile); err == nil && fi.IsDir() { // the rename's error would name its temporary file
		d.Close()
		return nil, fmt.Errorf("data directory: %s is a directory, not wharf's pid file: remove it", pidFile)
	}
	if err := atomicfile.Write(pidFile, []byte(owner+"\n"), 0o644, false); err != nil {
		d.Close()
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return &DataDirLock{dir: d, Path: path}, nil
}

// DataDirOwnerInfo is what the owner of a data directory wrote there
// when it took it (see DataDirOwner).
type DataDirOwnerInfo struct {
	Pid   int       // 0 where not known (the file was deleted)
	Since time.Time // when it took it; zero where not known
	// NoContainerd: it starts no containerd in the directory
	// (LockDataDirWithoutContainerd).
	NoContainerd bool
}

// DataDirOwner is what the owner of the data directory dir (resolved
// through symlinks, as LockDataDir's Path) wrote there when it took it.
// Anything but a regular file there (a symlink, a fifo) is not one an
// owner wrote, and is neither followed nor waited on.
func DataDirOwner(dir string) DataDirOwnerInfo {
	f, err := os.OpenFile(filepath.Join(dir, dataDirPidFile), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return DataDirOwnerInfo{}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return DataDirOwnerInfo{}
	}
	raw, _ := io.ReadAll(io.LimitReader(f, 64))
	var o DataDirOwnerInfo
	if fields := strings.Fields(string(raw)); len(fields) > 0 {
		o.Pid, _ = strconv.Atoi(fields[0])
		o.NoContainerd = len(fields) > 1 && fields[1] == noContainerdMark
	}
	if fi, err := f.Stat(); err == nil {
		o.Since = fi.ModTime()
	}
	return o
}

// Unlock gives the data directory up.
func (l *DataDirLock) Unlock() error { return l.dir.Close() }

// clusterStampFile, in a data directory, names the cluster whose history
// its object databases hold: the identity (cluster.Member.ClusterID) of
// the cluster it joined first.
const clusterStampFile = "cluster-id"

// ErrOtherClusterHistory is a data directory whose object databases hold
// the history of another cluster than the one the host joins.
var ErrOtherClusterHistory = errors.New("holds object data of another cluster")

// CheckClusterHistory is called when the host joins the cluster of
// identity id (cluster.Member.ClusterID), described by where for the
// messages, before it touches its objects. A data directory that holds no
// object database yet, or holds them without naming a cluster (it served
// alone, or was made before wharf recorded it), is stamped with id. One
// stamped with another cluster's identity that holds object databases has
// their history, which this cluster's replicated log does not continue
// (its etcd was wiped or replaced): serving them would lose acknowledged
// writes and take values back, so it is refused with ErrOtherClusterHistory,
// unless adopt: then the objects directory is moved aside (kept, never
// read again; its path is returned) and each object restores from this
// cluster's log.
func CheckClusterHistory(dataDir, id, where string, adopt bool) (movedTo string, err error) {
	stampPath := filepath.Join(dataDir, clusterStampFile)
	stamp, err := os.ReadFile(stampPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("data directory: %w", err)
	}
	old := strings.TrimSpace(string(stamp))
	if old == id {
		return "", nil
	}
	objectsDir := filepath.Join(dataDir, "objects")
	dbs, _ := filepath.Glob(filepath.Join(objectsDir, "*", "*.sqlite"))
	if old != "" && len(dbs) > 0 {
		aside := filepath.Join(dataDir, "objects.cluster-"+old)
		if _, err := os.Lstat(aside); err == nil {
			aside += "." + strconv.FormatInt(time.Now().Unix(), 10)
		}
		if !adopt {
			return "", fmt.Errorf("the data directory %s %w: it joined cluster %s, whose history its %d object database(s) hold, but %s is cluster %s: its etcd was wiped or replaced, or --cluster names another etcd. This cluster's log does not continue those histories; serving them would lose acknowledged writes and take values back. "+
				"Point --cluster at the etcd this host joined before; or, to serve on this cluster deliberately, start with --cluster-adopt, which moves %s aside to %s (kept, not used) and restores every object from this cluster's log; or move the data directory away",
				dataDir, ErrOtherClusterHistory, old, len(dbs), where, id, objectsDir, aside)
		}
		if err := os.Rename(objectsDir, aside); err != nil {
			return "", fmt.Errorf("--cluster-adopt: moving the object data of cluster %s aside: %w", old, err)
		}
		movedTo = aside
	}
	if err := atomicfile.Write(stampPath, []byte(id+"\n"), 0o644, true); err != nil {
		return "", fmt.Errorf("data directory: recording the cluster's identity: %w", err)
	}
	return movedTo, nil
}
