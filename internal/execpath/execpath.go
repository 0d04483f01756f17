// Package execpath finds a command named without a slash in the
// directories of $PATH as a POSIX shell does: the first executable regular
// file. A command found there only as files that may not be run is refused
// with permission denied (a shell's exit code 126), not reported missing
// (127).
package execpath

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultPath is where a process whose environment has no PATH looks.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNotFound is a command in no directory of the search path.
var ErrNotFound = errors.New("executable file not found")

// FromEnv is the search path of a process with environment env.
func FromEnv(env []string) string {
	path := DefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return path
}

// Find returns where the command name is in the directories of path,
// learning about each candidate from stat: the first executable regular
// file. A relative directory of path ("." or "bin"; an empty one is ".")
// is one of cwd, the working directory of the process to run, as in its
// shell (relative to the caller's own if cwd is empty). If there is none
// but a regular file was found, the error is an *fs.PathError for the
// first such file with syscall.EACCES (matching fs.ErrPermission); if
// there is no regular file, it matches ErrNotFound. A name with a slash
// is returned as it is.
func Find(name, path, cwd string, stat func(string) (fs.FileInfo, error)) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var refused string
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, name)
		st, err := stat(p)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if st.Mode()&0o111 != 0 {
			return p, nil
		}
		if refused == "" {
			refused = p
		}
	}
	if refused != "" {
		return "", &fs.PathError{Op: "exec", Path: refused, Err: syscall.EACCES}
	}
	return "", fmt.Errorf("%w: %s in $PATH", ErrNotFound, name)
}
