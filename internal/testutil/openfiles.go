package testutil

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// FilesHeldDuring runs during and meanwhile looks, every millisecond, at
// the files the process pid holds open; it returns the paths of those it
// saw (as /proc/pid/fd gives them: an unlinked file's ends " (deleted)",
// an O_TMPFILE one is "DIR/#INODE (deleted)"; a pipe's or socket's is
// none).
// SQLite's temporary files have no name a listing of their directory
// shows, and are held only while a statement runs.
func FilesHeldDuring(pid int, during func()) []string {
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	var done atomic.Bool
	seen := make(chan []string)
	go func() {
		var paths []string
		for {
			last := done.Load()
			fds, _ := os.ReadDir(fdDir)
			for _, fd := range fds {
				if p, err := os.Readlink(fdDir + fd.Name()); err == nil && strings.HasPrefix(p, "/") && !slices.Contains(paths, p) {
					paths = append(paths, p)
				}
			}
			if last {
				seen <- paths
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	during()
	done.Store(true)
	return <-seen
}

// SQLiteTempFiles are those of paths (as FilesHeldDuring gives them) that
// are SQLite's temporary files: unlinked, named etilqs_ or, made with
// O_TMPFILE, #INODE.
func SQLiteTempFiles(paths []string) []string {
	var temps []string
	for _, p := range paths {
		if name, ok := strings.CutSuffix(filepath.Base(p), " (deleted)"); ok && (strings.HasPrefix(name, "etilqs_") || strings.HasPrefix(name, "#")) {
			temps = append(temps, p)
		}
	}
	return temps
}
