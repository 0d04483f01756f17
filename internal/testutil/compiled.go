package testutil

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// compiled is the compile cache the data directories of CompiledDataDir
// share within a test process: a scratch directory, made at first use.
var compiled struct {
	sync.Mutex
	dir string
}

// CompiledDataDir returns a new data directory (in t.TempDir()) for a wharf
// serve whose compile cache (its cache directory) already holds the code
// that the wharf serves of earlier CompiledDataDir tests of this process
// compiled; at t's cleanup, once the wharf serves t started have stopped,
// what this one's added is kept for the later ones. A cold compile of an
// example plugin takes 10-25 s on a 2-core machine, each engine once: a
// test whose subject is not the compile (or the empty cache) uses this
// instead of t.TempDir() for its --data-dir. The files are hard links:
// wharf replaces cache files (write and rename) and never writes into one.
func CompiledDataDir(t testing.TB) string {
	t.Helper()
	data := t.TempDir()
	compiled.Lock()
	if compiled.dir == "" {
		dir, err := ScratchDir("compiled")
		if err != nil {
			compiled.Unlock()
			t.Fatal(err)
		}
		compiled.dir = dir
	}
	shared := compiled.dir
	err := linkTree(shared, filepath.Join(data, "cache"))
	compiled.Unlock()
	if err != nil {
		t.Fatalf("seeding the compile cache: %v", err)
	}
	// Registered after t.TempDir's removal and before any serve's stop,
	// this runs after the stop and before the removal.
	t.Cleanup(func() {
		compiled.Lock()
		defer compiled.Unlock()
		if err := linkTree(filepath.Join(data, "cache"), shared); err != nil {
			t.Logf("keeping the compile cache: %v", err)
		}
	})
	return data
}

// linkTree links every regular file under from to the same path under to,
// replacing a different file there (a record rewritten since), and makes
// the directories; a missing from is an empty tree. A file that cannot be
// linked (another filesystem) is copied.
func linkTree(from, to string) error {
	if _, err := os.Stat(from); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.Stat(path)
		if err != nil {
			return err
		}
		if have, err := os.Stat(dst); err == nil {
			if os.SameFile(src, have) {
				return nil
			}
			if err := os.Remove(dst); err != nil {
				return err
			}
		}
		if os.Link(path, dst) == nil {
			return nil
		}
		return copyFile(path, dst, src.Mode())
	})
}

// copyFile copies the file at from to a new file to.
func copyFile(from, to string, mode fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
