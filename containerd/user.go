package containerd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// ErrUnknownUser is an exec user the image does not know.
var ErrUnknownUser = errors.New("unknown user")

// resolveUser turns a user name or uid into ids using the container's own
// /etc/passwd, read through the init process's root.
func resolveUser(pid uint32, user string) (specs.User, error) {
	if uid, err := strconv.ParseUint(user, 10, 32); err == nil {
		return specs.User{UID: uint32(uid), GID: uint32(uid)}, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/root/etc/passwd", pid))
	if err != nil {
		return specs.User{}, fmt.Errorf("%w: user %q: the image has no /etc/passwd: %w", ErrUnknownUser, user, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 4 && fields[0] == user {
			uid, err1 := strconv.ParseUint(fields[2], 10, 32)
			gid, err2 := strconv.ParseUint(fields[3], 10, 32)
			if err1 != nil || err2 != nil {
				return specs.User{}, fmt.Errorf("%w: user %q: malformed /etc/passwd entry", ErrUnknownUser, user)
			}
			return specs.User{UID: uint32(uid), GID: uint32(gid)}, nil
		}
	}
	return specs.User{}, fmt.Errorf("%w: user %q does not exist in the image's /etc/passwd", ErrUnknownUser, user)
}
