package testutil

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
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

// SpillingSQL is a statement whose DISTINCT, 100,000 values of 200 bytes,
// outgrows SQLite's cache (2 MB) and spills to a temporary file.
const SpillingSQL = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100000) SELECT count(DISTINCT randomblob(200) || i) FROM n"

// CheckFreshTempDir checks that dir, a directory for SQLite's temporary
// files just set up, is its owner's only (0700) and empty: what an earlier
// run left there is gone.
func CheckFreshTempDir(t testing.TB, dir string) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != os.ModeDir|0o700 {
		t.Errorf("%s: mode %v, want %v", dir, st.Mode(), os.ModeDir|0o700)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		t.Errorf("%s holds what an earlier run left: %v %v", dir, ents, err)
	}
}

// CheckTempFilesIn checks that held, the files a process held open while
// a statement ran (FilesHeldDuring), include SQLite's temporary files, all
// in dir.
func CheckTempFilesIn(t testing.TB, held []string, dir string) {
	t.Helper()
	temps := sqliteTempFiles(held)
	if len(temps) == 0 {
		t.Fatalf("no SQLite temporary file was held open while the statement ran (all held: %q)", held)
	}
	for _, p := range temps {
		if !strings.HasPrefix(p, dir+"/") {
			t.Errorf("a temporary file in %s, got %s", dir, p)
		}
	}
}

// sqliteTempFiles are those of paths (as FilesHeldDuring gives them) that
// are SQLite's temporary files: unlinked, named etilqs_ or, made with
// O_TMPFILE, #INODE.
func sqliteTempFiles(paths []string) []string {
	var temps []string
	for _, p := range paths {
		if name, ok := strings.CutSuffix(filepath.Base(p), " (deleted)"); ok && (strings.HasPrefix(name, "etilqs_") || strings.HasPrefix(name, "#")) {
			temps = append(temps, p)
		}
	}
	return temps
}
