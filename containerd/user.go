package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/filekind"
)

// ErrUnknownUser is an exec user the image does not know.
var ErrUnknownUser = hostcontainers.ErrUnknownUser

// maxPasswd bounds how much of a container's /etc/passwd or /etc/group
// is read (its root may make it as large as it likes), and so one line of
// it: a group of many members makes a long one.
const maxPasswd = 4 << 20

// maxGroups is the most groups a process may have (the kernel's
// NGROUPS_MAX): setgroups refuses more.
const maxGroups = 65536

// userFileLines reads f, a container's /etc/passwd or /etc/group, up to
// maxPasswd bytes, and returns the whole lines there, without their line
// ends: the one the limit cuts is none of them (cut after
// "app:x:1000:1", app's line gave it group 1). more says the file goes on
// past them, so that what they do not say is not known.
func userFileLines(f *os.File) (lines iter.Seq[string], more bool, err error) {
	data, err := io.ReadAll(io.LimitReader(f, maxPasswd+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > maxPasswd {
		data, more = data[:bytes.LastIndexByte(data[:maxPasswd], '\n')+1], true
	}
	return func(yield func(string) bool) {
		for line := range strings.Lines(string(data)) {
			if !yield(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")) {
				return
			}
		}
	}, more, nil
}

// tooLarge is the words for a user file that userFileLines found more of
// than it reads.
var tooLarge = fmt.Sprintf("is larger than the %d MiB wharf reads of it", maxPasswd>>20)

// noID is (uid_t)-1, which setuid and setgid take for "no change".
const noID = 1<<32 - 1

// resolveUser turns a user name or uid into ids using the container's own
// /etc/passwd and /etc/group, read through the init process's root, as
// Docker does: a name, or a uid /etc/passwd lists, gets its primary group
// from there and the groups /etc/group lists the name in as supplementary
// ones. A uid /etc/passwd does not list (or without the file) runs with
// group 0 and no other, as `docker run --user UID` and containerd's
// entrypoint of an image whose USER is that uid. AdditionalGids holds the
// primary group too, as containerd gives the entrypoint's user, so both
// run with the same groups. home is the user's home directory (see
// lookPasswd).
func resolveUser(pid uint32, user string) (u specs.User, home string, err error) {
	if strings.Contains(user, ":") {
		return specs.User{}, "", fmt.Errorf("%w: user %q: an exec's user is a name or a uid of the image's /etc/passwd, not user:group (the groups come from the image's /etc/passwd and /etc/group)", ErrBadExec, user)
	}
	return lookUser(inProcRoot(pid), user)
}

// lookUser is resolveUser's user, a name or uid, found in the user files
// open opens, with its groups.
func lookUser(open opener, user string) (specs.User, string, error) {
	uid, err := strconv.ParseUint(user, 10, 32)
	numeric := err == nil
	if numeric && uid == noID {
		return specs.User{}, "", fmt.Errorf("%w: user %q: %d is the kernel's \"no id\" ((uid_t)-1), which no process can run as", ErrUnknownUser, user, noID)
	}
	name, home, u, err := lookPasswd(open, user, numeric, uid)
	if err != nil {
		return specs.User{}, "", err
	}
	u.AdditionalGids, err = supplementaryGroups(open, name, u.GID)
	return u, home, err
}

// opener opens a user file of a container (a path such as etc/passwd)
// for reading: openInRoot's or openUnder's.
type opener func(path string) (*os.File, error)

// inProcRoot opens the files of the container whose init is pid.
func inProcRoot(pid uint32) opener {
	return func(path string) (*os.File, error) { return openInRoot(pid, path) }
}

// defaultHome is the home directory of a user /etc/passwd does not list,
// or lists with none, as runc's (HOME for a process whose environment
// sets none).
const defaultHome = "/"

// lookPasswd finds user in the container's /etc/passwd, by its uid if
// numeric, else by name, and returns its name, home directory and ids. A
// uid it does not find (or without the file) is no error: it has no name,
// group 0 and home defaultHome.
func lookPasswd(open opener, user string, numeric bool, uid uint64) (name, home string, u specs.User, err error) {
	unnamed := specs.User{UID: uint32(uid), GID: 0}
	f, err := open("etc/passwd")
	switch {
	case errors.Is(err, errNotAFile): // Docker fails on a directory (and waits on a named pipe forever)
		return "", "", specs.User{}, fmt.Errorf("%w: user %q: %w", ErrUnknownUser, user, err)
	case err != nil && numeric:
		return "", defaultHome, unnamed, nil
	case err != nil:
		return "", "", specs.User{}, fmt.Errorf("%w: user %q: the image has no /etc/passwd: %w", ErrUnknownUser, user, err)
	}
	defer f.Close()
	lines, more, err := userFileLines(f)
	if err != nil {
		return "", "", specs.User{}, fmt.Errorf("%w: user %q: reading the image's /etc/passwd: %w", ErrUnknownUser, user, err)
	}
	for line := range lines {
		fields := strings.Split(line, ":")
		if len(fields) < 4 {
			continue
		}
		id, err1 := strconv.ParseUint(fields[2], 10, 32)
		if numeric && (err1 != nil || id != uid) || !numeric && fields[0] != user {
			continue
		}
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil || id == noID || gid == noID {
			return "", "", specs.User{}, fmt.Errorf("%w: user %q: malformed /etc/passwd entry", ErrUnknownUser, user)
		}
		home = defaultHome
		if len(fields) > 5 && fields[5] != "" {
			home = fields[5]
		}
		return fields[0], home, specs.User{UID: uint32(id), GID: uint32(gid)}, nil
	}
	if more { // not listed where it was read, maybe past (an unlisted uid would get group 0)
		return "", "", specs.User{}, fmt.Errorf("%w: user %q: the image's /etc/passwd %s, and does not list it there", ErrUnknownUser, user, tooLarge)
	}
	if numeric {
		return "", defaultHome, unnamed, nil
	}
	return "", "", specs.User{}, fmt.Errorf("%w: user %q does not exist in the image's /etc/passwd", ErrUnknownUser, user)
}

// supplementaryGroups is gid followed by the groups the container's
// /etc/group lists name in (none without the file, or without a name),
// among the whole lines of its first maxPasswd bytes.
func supplementaryGroups(open opener, name string, gid uint32) ([]uint32, error) {
	gids := []uint32{gid}
	if name == "" {
		return gids, nil
	}
	f, err := open("etc/group")
	if errors.Is(err, fs.ErrNotExist) {
		return gids, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: user %q: the image's /etc/group: %w", ErrUnknownUser, name, err)
	}
	defer f.Close()
	lines, _, err := userFileLines(f) // groups listed past what it reads are left out: fewer, never others
	if err != nil {
		return nil, fmt.Errorf("%w: user %q: reading the image's /etc/group: %w", ErrUnknownUser, name, err)
	}
	seen := map[uint32]bool{gid: true}
	for line := range lines {
		fields := strings.Split(line, ":")
		if len(fields) < 4 || !slices.Contains(strings.Split(fields[3], ","), name) {
			continue
		}
		g, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil || g == noID {
			return nil, fmt.Errorf("%w: user %q: malformed /etc/group entry of group %q", ErrUnknownUser, name, fields[0])
		}
		if seen[uint32(g)] {
			continue
		}
		if len(gids) == maxGroups {
			return nil, fmt.Errorf("%w: user %q is in more than %d groups in the image's /etc/group, the most a process may have", ErrUnknownUser, name, maxGroups)
		}
		seen[uint32(g)] = true
		gids = append(gids, uint32(g))
	}
	return gids, nil
}

// credOf is the agent's credentials for u.
func credOf(u specs.User) *wire.Cred {
	return &wire.Cred{UID: u.UID, GID: u.GID, Groups: u.AdditionalGids}
}

// openInRoot opens the regular file path of the container whose init is
// pid, for reading (see openUnder).
func openInRoot(pid uint32, path string) (*os.File, error) {
	root, err := openProcRoot(int(pid))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(root)
	return openUnder(root, path)
}

// openUnder opens the regular file path under the directory root, for
// reading (see lookUnder). It opens the file lookUnder looked at,
// whatever has been renamed meanwhile, and never waits for a lease.
func openUnder(root int, path string) (*os.File, error) {
	at, err := lookUnder(root, path)
	if err != nil {
		return nil, err
	}
	defer at.Close()
	fd, err := unix.Open(fmt.Sprintf("/proc/thread-self/fd/%d", at.Fd()), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/" + path, Err: err}
	}
	return os.NewFile(uintptr(fd), "/"+path), nil
}

// lookUnder finds the regular file path under the directory root and
// returns a descriptor of it that does not open it (O_PATH). Its symbolic
// links resolve under root, as in a container whose root it is (through
// /proc/PID/root a link to /etc/shadow would lead to the host's), and a
// file there that is not a regular one (a named pipe, a directory, a
// device) is errNotAFile, found by looking at it, never opened: the open
// of a named pipe waits for a writer, and that of a device is its
// driver's to act on (a watchdog's starts the host's countdown to a
// reboot), in wharf, on the host, with no device cgroup. So is a path
// whose links lead into the runtime's directories (see inRuntimeDirs),
// whatever root holds there.
func lookUnder(root int, path string) (*os.File, error) {
	if err := inRuntimeDirs(root, path); err != nil {
		return nil, err
	}
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/" + path, Err: err}
	}
	at := os.NewFile(uintptr(fd), "/"+path)
	st, err := at.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = &fs.PathError{Op: "open", Path: "/" + path, Err: notAFile(st.Mode())}
	}
	if err != nil {
		at.Close()
		return nil, err
	}
	return at, nil
}

// runtimeDirs are the directories where the runtime mounts file systems
// of its own in every container: the devices (a tmpfs of them), the
// kernel's /proc and /sys. What a container reads there is not the
// image's: /dev/zero reads without end, /proc/kmsg waits for the kernel's
// next message.
var runtimeDirs = []string{"dev", "proc", "sys"}

// inRuntimeDirs refuses (errNotAFile) the path under root whose symbolic
// links lead into runtimeDirs. An image's snapshot does not have what the
// runtime mounts there: /etc/group linked to /dev/zero would be no file
// there, and the container's device where runc reads it, in the container.
func inRuntimeDirs(root int, path string) error {
	to, err := resolveUnder(root, path)
	if err != nil {
		return &fs.PathError{Op: "open", Path: "/" + path, Err: err}
	}
	for _, dir := range runtimeDirs {
		if to == "/"+dir || strings.HasPrefix(to, "/"+dir+"/") {
			return &fs.PathError{Op: "open", Path: "/" + path,
				Err: fmt.Errorf("%w (a link to %s: in a container, /%s is the runtime's, not the image's)", errNotAFile, to, dir)}
		}
	}
	return nil
}

// maxLinks is how many symbolic links a path may go through, as the
// kernel allows (ELOOP past them).
const maxLinks = 40

// resolveUnder is the path path leads to under the directory root, its
// symbolic links resolved as lookUnder's open does (an absolute target
// starts at root, ".." stops there), whether what it names exists or not.
// It only reads links: each it asks for lies in directories it has found
// are none.
func resolveUnder(root int, path string) (string, error) {
	var done []string // resolved: none is a link
	todo := strings.Split(path, "/")
	buf := make([]byte, unix.PathMax)
	for links := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(done) > 0 {
				done = done[:len(done)-1]
			}
			continue
		}
		n, err := unix.Readlinkat(root, strings.Join(append(done, name), "/"), buf)
		if err != nil { // not a link, or not there
			done = append(done, name)
			continue
		}
		if links++; links > maxLinks {
			return "", unix.ELOOP
		}
		target := string(buf[:n])
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return "/" + strings.Join(done, "/"), nil
}

// errNotAFile is a file openUnder found, but not a regular one.
var errNotAFile = errors.New("not a regular file")

// notAFile is errNotAFile for a file of mode, saying what it is.
func notAFile(mode fs.FileMode) error {
	return fmt.Errorf("%w (%s)", errNotAFile, filekind.Of(mode))
}

// userFiles are the files that say who a container's users are, which
// runc (up to 1.1) reads at every start and exec to set up the process's
// user and groups, and containerd at a start for the image's user (its
// USER, or root).
var userFiles = []string{"etc/passwd", "etc/group"}

// checkUserFiles refuses the user files of the root directory root if one
// is there but not a regular file, or leads into the runtime's
// directories (see lookUnder): containerd and runc open them with an
// open that waits for a named pipe's writer forever (wharf's start, or
// runc and the exec, hung), and fail on a directory, as moby/sys/user
// (Docker) does; runc fails on /dev/zero and waits on /proc/kmsg. One
// missing, or that cannot be looked up, they take as none, as Docker
// does. It only looks at them (lookUnder): every runc exec does this.
func checkUserFiles(root int) error {
	for _, path := range userFiles {
		at, err := lookUnder(root, path)
		if errors.Is(err, errNotAFile) {
			return err
		}
		if err == nil {
			at.Close()
		}
	}
	return nil
}

// checkUserFilesForRunc refuses, with checkUserFiles, an exec through runc
// (which reads them for every exec) in a container whose user files are
// not regular files. A container whose root cannot be opened (its init
// has exited) is left to runc, which says so.
func (c *Container) checkUserFilesForRunc() error {
	root, err := openProcRoot(int(c.task.Pid()))
	if err != nil {
		return nil
	}
	defer unix.Close(root)
	if err := checkUserFiles(root); err != nil {
		return fmt.Errorf("%w: runc reads the container's /etc/passwd and /etc/group to set up every exec's user: %w", ErrUnknownUser, err)
	}
	return nil
}

// imageUser is the user an image's entrypoint runs as, which withImage
// resolves: its ids and groups, and its home directory (HOME when the
// container's environment sets none).
type imageUser struct {
	specs.User
	Home string
}

// withImage is oci.WithImageConfig(img), whose USER is user, with that
// USER resolved by wharf in the container's snapshot (which must be
// prepared already: client.WithNewSnapshot) as Docker does, into u: a
// name or uid as an exec's user (lookUser), and with :group (a name of
// /etc/group, or a gid) that group and no other; an empty group
// (app:) is none. containerd gave app: group 0, and said of a user or
// group the image lacks only "no users found". An image whose user files
// are not regular files (see checkUserFiles) or whose USER they do not
// resolve is refused, naming the USER and the image.
func withImage(img client.Image, user string, u *imageUser) oci.SpecOpts {
	return func(ctx context.Context, cl oci.Client, c *containers.Container, s *oci.Spec) error {
		mounts, err := cl.SnapshotService(c.Snapshotter).Mounts(ctx, c.SnapshotKey)
		if err != nil {
			return fmt.Errorf("the mounts of snapshot %s: %w", c.SnapshotKey, err)
		}
		var notFiles, unresolved error
		err = inSnapshot(mounts, func(root int) error {
			if notFiles = checkUserFiles(root); notFiles == nil {
				*u, unresolved = resolveImageUser(func(path string) (*os.File, error) { return openUnder(root, path) }, user)
			}
			return nil
		})
		switch {
		case err != nil:
			return fmt.Errorf("reading the image's /etc/passwd and /etc/group: %w", err)
		case notFiles != nil:
			return fmt.Errorf("%w: image %s: its /etc/passwd and /etc/group say who its users are, and must be regular files: %w", ErrBadExec, img.Name(), notFiles)
		case unresolved != nil:
			return fmt.Errorf("%w: image %s USER %q: %w", ErrBadExec, img.Name(), user, unresolved)
		}
		if err := oci.WithImageConfig(img)(ctx, cl, c, s); err != nil {
			return err
		}
		s.Process.User = u.User
		return nil
	}
}

// resolveImageUser resolves an image's USER in the user files open opens
// (see withImage); no USER is root.
func resolveImageUser(open opener, user string) (imageUser, error) {
	name, group, named := strings.Cut(user, ":")
	if name == "" {
		name = "0" // as Docker: the user of :group is root
	}
	for _, id := range []string{name, group} {
		// containerd refuses them too, without naming the image.
		if n, err := strconv.ParseUint(id, 10, 64); err == nil && n > math.MaxInt32 {
			return imageUser{}, fmt.Errorf("%s: uids and gids must be in range 0-%d, as in Docker", id, math.MaxInt32)
		}
	}
	u, home, err := lookUser(open, name)
	if err != nil || !named || group == "" {
		return imageUser{u, home}, err
	}
	gid, err := lookGroup(open, group)
	if err != nil {
		return imageUser{}, err
	}
	u.GID, u.AdditionalGids = gid, []uint32{gid}
	return imageUser{u, home}, nil
}

// lookGroup finds group, a name or gid, in the container's /etc/group. A
// number is a gid, listed or not, even where a group is named so, as in
// Docker (runc's user package).
func lookGroup(open opener, group string) (uint32, error) {
	if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uint32(gid), nil // resolveImageUser refused one out of range
	}
	f, err := open("etc/group")
	if err != nil {
		return 0, fmt.Errorf("group %q: the image has no /etc/group: %w", group, err)
	}
	defer f.Close()
	lines, more, err := userFileLines(f)
	if err != nil {
		return 0, fmt.Errorf("group %q: reading the image's /etc/group: %w", group, err)
	}
	for line := range lines {
		fields := strings.Split(line, ":")
		if len(fields) < 3 || fields[0] != group {
			continue
		}
		g, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil || g == noID {
			return 0, fmt.Errorf("group %q: malformed /etc/group entry", group)
		}
		return uint32(g), nil
	}
	if more {
		return 0, fmt.Errorf("group %q: the image's /etc/group %s, and does not list it there", group, tooLarge)
	}
	return 0, fmt.Errorf("group %q does not exist in the image's /etc/group", group)
}
