package containerd

import (
	"bufio"
	"errors"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrUnknownUser is an exec user the image does not know.
var ErrUnknownUser = hostcontainers.ErrUnknownUser

// maxPasswd bounds how much of a container's /etc/passwd is read.
const maxPasswd = 4 << 20

// noID is (uid_t)-1, which setuid and setgid take for "no change".
const noID = 1<<32 - 1

// resolveUser turns a user name or uid into ids using the container's own
// /etc/passwd, read through the init process's root.
func resolveUser(pid uint32, user string) (specs.User, error) {
	if uid, err := strconv.ParseUint(user, 10, 32); err == nil {
		if uid == noID {
			return specs.User{}, fmt.Errorf("%w: user %q: %d is the kernel's \"no id\" ((uid_t)-1), which no process can run as", ErrUnknownUser, user, noID)
		}
		return specs.User{UID: uint32(uid), GID: uint32(uid)}, nil
	}
	f, err := openInRoot(pid, "etc/passwd")
	if err != nil {
		return specs.User{}, fmt.Errorf("%w: user %q: the image has no /etc/passwd: %w", ErrUnknownUser, user, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxPasswd))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[0] == user {
			uid, err1 := strconv.ParseUint(fields[2], 10, 32)
			gid, err2 := strconv.ParseUint(fields[3], 10, 32)
			if err1 != nil || err2 != nil || uid == noID || gid == noID {
				return specs.User{}, fmt.Errorf("%w: user %q: malformed /etc/passwd entry", ErrUnknownUser, user)
			}
			return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
		}
	}
	return specs.User{}, fmt.Errorf("%w: user %q does not exist in the image's /etc/passwd", ErrUnknownUser, user)
}

// openInRoot opens the regular file path of the container whose init is
// pid, for reading. Its symbolic links resolve in the container's root
// (through /proc/PID/root a link to /etc/shadow would lead to the host's),
// and the open never waits (a named pipe is refused).
func openInRoot(pid uint32, path string) (*os.File, error) {
	root, err := openProcRoot(int(pid))
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/" + path, Err: err}
	}
	f := os.NewFile(uintptr(fd), "/"+path)
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = &fs.PathError{Op: "open", Path: "/" + path, Err: errors.New("not a regular file")}
		}
		return nil, err
	}
	return f, nil
}
