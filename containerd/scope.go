package containerd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/atomicfile"
	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/filekind"
)

// A wharf's scope is the short tag (4 hex digits) every name it gives on
// the host carries: its nft table (wharf-<scope>), its containers' veth
// links (wh<scope>…, 15 characters at most) and network namespaces
// (wharf-<scope>…). Two wharfs running on one host must never share one:
// each would replace the other's firewall table (and with it the rules
// that keep the other's containers from the host) and match the other's
// links.
//
// So a data directory's scope is chosen once and kept in the directory
// (scopeFile), and a running wharf holds a lock on it (claimScope) that
// the kernel releases when the wharf exits, however it exits. A new data
// directory takes the first of its candidates (hashedScope) that no
// running wharf holds and that names nothing on the host; a data
// directory an older wharf ran on keeps the scope that wharf derived from
// its path, so the containers it left are still found; a data directory
// whose scope another running wharf holds is refused (ScopeInUseError).

// scopeFile is where the data directory dataDir keeps its scope.
func scopeFile(dataDir string) string { return filepath.Join(daemonDir(dataDir), "network-scope") }

// Scope is the scope of the wharf whose data is at dataDir: the one kept
// in the directory, or, where none is (yet), the one wharf derived from
// the path before it kept them, which is also a new directory's first
// candidate.
func Scope(dataDir string) string {
	if tag, err := readScope(dataDir); err == nil && tag != "" {
		return tag
	}
	return hashedScope(dataDir, 0)
}

// readScope reads the scope kept in dataDir: "" if none is.
func readScope(dataDir string) (string, error) {
	// Not opened if it is no regular file: reading a FIFO would wait
	// forever (holding scopes), and /dev/zero would never end.
	info, err := os.Stat(scopeFile(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("%s is %s, not a file", scopeFile(dataDir), filekind.Of(info.Mode()))
	}
	var raw []byte
	if err == nil {
		raw, err = os.ReadFile(scopeFile(dataDir))
	}
	if err != nil {
		return "", fmt.Errorf("reading the data directory's network scope: %w", err)
	}
	tag := strings.TrimSpace(string(raw))
	if !validScope(tag) {
		return "", fmt.Errorf("%s holds %q, which is no network scope (4 lowercase hex digits)", scopeFile(dataDir), tag)
	}
	return tag, nil
}

func validScope(tag string) bool {
	if len(tag) != 4 {
		return false
	}
	for _, r := range tag {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

// hashedScope is the n-th candidate scope of a new data directory dir:
// the first 2 bytes of sha256(dir) for n = 0 (the scope every data
// directory had before scopes were kept), of sha256(dir NUL n) after.
func hashedScope(dir string, n int) string {
	s := dir
	if n > 0 {
		s = fmt.Sprintf("%s\x00%d", dir, n)
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:2])
}

// scopeCandidates is how many candidates a new data directory tries.
const scopeCandidates = 4096

// ranBefore reports whether a wharf of a version that kept no scope may
// have created containers for the data directory dataDir: their names
// carry the scope derived from its path.
func ranBefore(dataDir string) bool {
	for _, dir := range []string{filepath.Join(dataDir, "egress"), journalAt(dataDir).dir} {
		if _, err := os.Stat(dir); err == nil {
			return true
		}
	}
	return false
}

// scopeLockDir holds a lock file per scope held by a running wharf (on
// tmpfs: nothing outlives a reboot). It is one per host, not one per
// network namespace: the network namespaces of containers are named in
// /var/run/netns, which every network namespace of the host shares.
const scopeLockDir = "/run/wharf"

func scopeLockPath(tag string) string { return filepath.Join(scopeLockDir, "scope-"+tag+".lock") }

// scopeHolder is what a lock file says of the wharf that holds it.
type scopeHolder struct {
	PID     int    `json:"pid"`
	DataDir string `json:"data_dir"`
}

// ScopeInUseError is a data directory whose scope another running wharf
// holds.
type ScopeInUseError struct {
	Scope   string
	DataDir string // the one refused
	// Holder is the wharf that holds the scope (its data directory may
	// be unknown: it had only just taken the lock).
	Holder scopeHolder
	// Kept is the data directory's scope file, if it keeps its scope
	// there (else its scope is the one derived from its path).
	Kept string
}

func (e *ScopeInUseError) Error() string {
	who := "another wharf on this host"
	if e.Holder.DataDir != "" {
		who = fmt.Sprintf("the wharf of the data directory %s (pid %d)", e.Holder.DataDir, e.Holder.PID)
	} else if e.Holder.PID > 0 {
		who = fmt.Sprintf("another wharf on this host (pid %d)", e.Holder.PID)
	}
	msg := fmt.Sprintf("the network scope %s of the data directory %s is in use by %s: two wharfs on one host must not share one "+
		"(each would remove the other's firewall table %s); stop that wharf first", e.Scope, e.DataDir, who, egress.TableName(e.Scope))
	if e.Kept != "" {
		msg += fmt.Sprintf(", or, if one of the two data directories is a copy of the other, remove the copy's %s (%s here) to give the copy "+
			"a scope of its own, never the original's: the original's containers may run on that scope", filepath.Base(e.Kept), e.Kept)
	}
	return msg
}

// heldScope is a scope this process holds.
type heldScope struct {
	dataDir string
	lock    *os.File
	refs    int // the managers of dataDir that hold it
}

// scopes are the scopes this process holds, by scope. A scope's lock is
// not taken twice by the process: a second manager of the same data
// directory shares it (as a test's next run does after a simulated
// crash), one of another data directory is refused.
var scopes = struct {
	sync.Mutex
	held map[string]*heldScope
}{held: map[string]*heldScope{}}

// claimScope settles the scope of the wharf whose data is at dataDir (an
// absolute path) and takes its lock, which release gives back (as does
// this process's exit): the kept scope, or for a data directory an older
// wharf ran on the one derived from its path, or for a new one the first
// free candidate, which it keeps. A scope another running wharf holds is
// a *ScopeInUseError. What killed wharfs whose data directories are gone
// left is removed first, and logged to logger (see removeOrphan).
func claimScope(dataDir string, logger *slog.Logger) (tag string, release func(), err error) {
	scopes.Lock()
	defer scopes.Unlock()
	sweepStaleLocks(dataDir, logger)
	kept, err := readScope(dataDir)
	if err != nil {
		return "", nil, err
	}
	if kept != "" {
		if err := lockScope(kept, dataDir); err != nil {
			return "", nil, err
		}
		return kept, releaseScope(kept), nil
	}
	if ranBefore(dataDir) {
		tag := hashedScope(dataDir, 0)
		if err := lockScope(tag, dataDir); err != nil {
			return "", nil, err
		}
		if err := keepScope(dataDir, tag); err != nil {
			releaseLocked(tag)
			return "", nil, err
		}
		return tag, releaseScope(tag), nil
	}
	var inUse error
	for n := range scopeCandidates {
		tag := hashedScope(dataDir, n)
		if err := lockScope(tag, dataDir); err != nil {
			if errors.As(err, new(*ScopeInUseError)) {
				inUse = err
				continue
			}
			return "", nil, err
		}
		if scopes.held[tag].refs == 1 && namesOnHost(tag) {
			// A wharf that no longer runs left its table or containers
			// (for its next run to adopt), or one of a version that
			// takes no lock runs.
			releaseLocked(tag)
			continue
		}
		if err := keepScope(dataDir, tag); err != nil {
			releaseLocked(tag)
			return "", nil, err
		}
		return tag, releaseScope(tag), nil
	}
	return "", nil, fmt.Errorf("no free network scope for the data directory %s after %d tries (the last in use: %v)", dataDir, scopeCandidates, inUse)
}

// HoldScope claims the network scope of the backend's data directory as
// a manager does (see claimScope), for a command that runs no manager but
// leaves on the host what a sweep of a dead scope removes: a build (`wharf
// images build`), whose RUN steps' processes, shims, mounts, network
// namespaces and nft table a kill (SIGKILL) leaves. The lock file names
// the data directory: once it is removed too, the next wharf of the host
// removes them (see removeOrphan); without it, they stayed for good.
// release gives the scope back.
func (b *Backend) HoldScope(logger *slog.Logger) (release func(), err error) {
	_, release, err = claimScope(b.DataDir, logger)
	return release, err
}

// keepScope writes tag to dataDir's scope file.
func keepScope(dataDir, tag string) error {
	if err := atomicfile.Write(scopeFile(dataDir), []byte(tag+"\n"), 0o600, true); err != nil {
		return fmt.Errorf("keeping the data directory's network scope: %w", err)
	}
	return nil
}

// namesOnHost reports whether something on the host carries scope tag:
// an nft table, a link or a named network namespace.
func namesOnHost(tag string) bool {
	if len(egress.FirewallLeftovers(tag)) > 0 {
		return true
	}
	return len(networkNamesOf(tag)) > 0
}

// lockScope takes the lock of scope tag for dataDir; scopes is locked.
func lockScope(tag, dataDir string) error {
	if h := scopes.held[tag]; h != nil {
		if !sameDir(h.dataDir, dataDir) {
			return &ScopeInUseError{Scope: tag, DataDir: dataDir, Holder: scopeHolder{PID: os.Getpid(), DataDir: h.dataDir}, Kept: keptFile(dataDir)}
		}
		h.refs++
		return nil
	}
	if err := os.MkdirAll(scopeLockDir, 0o755); err != nil {
		return fmt.Errorf("network scope lock: %w", err)
	}
	path := scopeLockPath(tag)
	for busy := 0; ; {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("network scope lock: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			var holder scopeHolder
			raw, _ := os.ReadFile(path)
			json.Unmarshal(raw, &holder)
			f.Close()
			if holder.PID > 0 && ephemeral.ProcessEnded(holder.PID) && busy < staleLockTries {
				// The lock of a wharf that ended, which another process's
				// sweepStaleLocks holds for a moment.
				busy++
				time.Sleep(time.Millisecond)
				continue
			}
			return &ScopeInUseError{Scope: tag, DataDir: dataDir, Holder: holder, Kept: keptFile(dataDir)}
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("network scope lock %s: %w", path, err)
		}
		// The holder before removes the file as it releases it: the lock
		// is only this scope's if the file is still at path.
		if !samePathAsFile(path, f) {
			f.Close()
			continue
		}
		if other := runningWharfWith(tag, dataDir); other != nil {
			f.Close() // the file stays, for a sweep
			return &ScopeInUseError{Scope: tag, DataDir: dataDir, Holder: *other, Kept: keptFile(dataDir)}
		}
		raw, _ := json.Marshal(scopeHolder{PID: os.Getpid(), DataDir: dataDir})
		if err := f.Truncate(0); err == nil {
			f.WriteAt(append(raw, '\n'), 0)
		}
		scopes.held[tag] = &heldScope{dataDir: dataDir, lock: f, refs: 1}
		return nil
	}
}

// runningWharfWith finds a running wharf, of a data directory other than
// dataDir, that holds the lock of scope tag on a file no longer at its
// path: a lock file removed while its wharf runs (rm -rf /run/wharf)
// would otherwise no longer keep a copy of its data directory from its
// scope, whose firewall table would replace its own. It looks for the
// removed file among every process's open files, and returns nil if no
// process has it open.
func runningWharfWith(tag, dataDir string) *scopeHolder {
	removed := scopeLockPath(tag) + " (deleted)"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != removed {
			continue
		}
		var holder scopeHolder
		raw, _ := os.ReadFile(fd)
		json.Unmarshal(raw, &holder)
		if !sameDir(holder.DataDir, dataDir) {
			return &holder
		}
	}
	return nil
}

// staleLockTries is how often lockScope tries again a lock whose holder
// ended, a millisecond apart.
const staleLockTries = 100

// sweepStaleLocks removes the lock files no process holds: their holder
// exited without removing them (killed, say). If the data directory such
// a file names is gone, what its wharf left on the host is removed first,
// with the lock held, or the file is kept if that is left for now (see
// removeOrphan; claiming is the data directory the sweep's claim is for).
// A lock taken of a file removed meanwhile is let go (see lockScope).
// scopes is locked; the scopes this process holds are locked on files of
// their own, so they are left.
func sweepStaleLocks(claiming string, logger *slog.Logger) {
	paths, _ := filepath.Glob(filepath.Join(scopeLockDir, "scope-*.lock"))
	host := &hostView{}
	for _, path := range paths {
		// Not blocking: a FIFO put there would hold the read below, and
		// every wharf's start on the host with it, for good.
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
			f.Close() // not a lock file of wharf's
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && samePathAsFile(path, f) {
			tag := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "scope-"), ".lock")
			var holder scopeHolder
			keep := false
			if raw, err := io.ReadAll(io.LimitReader(f, 64<<10)); err == nil && validScope(tag) && json.Unmarshal(raw, &holder) == nil {
				keep = removeOrphan(host, tag, holder, claiming, logger)
			}
			if !keep {
				os.Remove(path)
			}
		}
		f.Close()
	}
}

// releaseScope gives back one hold of scope tag (see releaseLocked);
// calls after the first do nothing.
func releaseScope(tag string) func() {
	return sync.OnceFunc(func() {
		scopes.Lock()
		defer scopes.Unlock()
		releaseLocked(tag)
	})
}

// releaseLocked gives back one hold of scope tag; the last one removes
// the lock file and releases the lock. scopes is locked.
func releaseLocked(tag string) {
	h := scopes.held[tag]
	if h == nil {
		return
	}
	if h.refs--; h.refs > 0 {
		return
	}
	delete(scopes.held, tag)
	os.Remove(scopeLockPath(tag)) // still locked: nobody else's file
	h.lock.Close()
}

// keptFile is dataDir's scope file if it exists.
func keptFile(dataDir string) string {
	if _, err := os.Stat(scopeFile(dataDir)); err == nil {
		return scopeFile(dataDir)
	}
	return ""
}

// sameDir reports whether a and b are the same directory.
func sameDir(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// samePathAsFile reports whether path names the file open as f.
func samePathAsFile(path string, f *os.File) bool {
	sp, errP := os.Stat(path)
	sf, errF := f.Stat()
	return errP == nil && errF == nil && os.SameFile(sp, sf)
}
