package plugins

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/atomicfile"
)

// DefaultCacheLimitBytes is the size a compile cache is kept under when
// Config.CacheLimitBytes is zero. Every build adds its code (examples/hello:
// 70 MB on wazero, 44 MB on wasmtime), and wharf dev makes a build per save.
const DefaultCacheLimitBytes = 2 << 30

// Directories of a compile cache that hold no compiled code, only small
// files about it.
const (
	recordsDir = "compiled" // per engine and module: the files holding its code
	digestsDir = "digests"  // per module path: its digest (OpenModule)
)

// codeFiles lists the files of cacheDir that hold compiled code (and the
// checksums beside it), by path relative to cacheDir, without the
// temporary files of writers.
func codeFiles(cacheDir string) map[string]fs.FileInfo {
	files := map[string]fs.FileInfo{}
	dirs, _ := os.ReadDir(cacheDir)
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == recordsDir || d.Name() == digestsDir {
			continue
		}
		entries, _ := os.ReadDir(filepath.Join(cacheDir, d.Name()))
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, atomicfile.TempPrefix) || strings.HasSuffix(name, ".tmp") || e.IsDir() {
				continue
			}
			if info, err := e.Info(); err == nil {
				files[filepath.Join(d.Name(), name)] = info
			}
		}
	}
	return files
}

// codeKey names the code an engine looks for in the cache for the module
// of digest, for the module's record: what changes the engine's own key
// changes it. A new build of wharf may bring another wazero, whose code is
// kept apart, or other instrumentation (so another key), and another
// wasmtime likewise: a record of the old build's code, whose files are all
// there, said the code was cached, and the module compiled again without
// 'compiling…' (half a minute for examples/hello).
func codeKey(engine, digest string) string {
	if engine == EngineWasmtime {
		return wasmtimeCacheKey(digest)
	}
	if exe, err := executableIdentity(); err == nil {
		return digest + "-" + exe
	}
	return digest
}

// readRecord lists the files that held a module's code when it was last
// loaded, from its record; ok is false when there is no record, it lists
// no file (an older wharf's record, which was empty) or one of them is
// gone (the code must be compiled).
func readRecord(cacheDir, record string) (files []string, ok bool) {
	data, err := os.ReadFile(record)
	if err != nil {
		return nil, false
	}
	files = strings.Fields(string(data))
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(cacheDir, f)); err != nil {
			return nil, false
		}
	}
	return files, len(files) > 0
}

// watchOpens starts noting which files of cacheDir's code directories are
// opened, by this process or another, and returns the function that stops
// and lists them (relative to cacheDir), or says it could not watch. A
// load that finds its code in the cache writes nothing, and this is how
// its record learns where that code is when the record is gone or was
// left by an older wharf.
func watchOpens(cacheDir string) func() (opened []string, ok bool) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return func() ([]string, bool) { return nil, false }
	}
	dirs := map[int32]string{}
	entries, _ := os.ReadDir(cacheDir)
	for _, d := range entries {
		if d.IsDir() && d.Name() != recordsDir && d.Name() != digestsDir {
			wd, err := unix.InotifyAddWatch(fd, filepath.Join(cacheDir, d.Name()), unix.IN_OPEN)
			if err != nil {
				unix.Close(fd)
				return func() ([]string, bool) { return nil, false }
			}
			dirs[int32(wd)] = d.Name()
		}
	}
	return func() ([]string, bool) {
		defer unix.Close(fd)
		var opened []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				return opened, err == unix.EAGAIN
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				wd := int32(binary.NativeEndian.Uint32(buf[off:]))
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				size := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+size]), "\x00")
				if mask&unix.IN_Q_OVERFLOW != 0 {
					return nil, false
				}
				if dir, ok := dirs[wd]; ok && name != "" && mask&unix.IN_ISDIR == 0 {
					opened = append(opened, filepath.Join(dir, name))
				}
				off += unix.SizeofInotifyEvent + size
			}
		}
	}
}

// noteUse records the files that hold a module's code (listed: those its
// load opened, or else those its record listed; and those its load just
// wrote), marks them and the record used now, and trims the cache to limit
// bytes. Without any, the record goes: an empty one would say the code is
// cached.
func noteUse(cacheDir, record string, listed []string, before, after map[string]fs.FileInfo, limit int64) {
	var files []string
	for _, f := range listed {
		if _, ok := after[f]; ok && !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	for f := range after {
		if _, old := before[f]; !old && !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	data := []byte(strings.Join(files, "\n") + "\n")
	if len(files) == 0 {
		os.Remove(record)
	} else if old, err := os.ReadFile(record); err != nil || !bytes.Equal(old, data) {
		atomicfile.Write(record, data, 0o600, false) // best effort: without it the files age and go first
	}
	now := time.Now()
	for _, f := range append(files, filepath.Join(recordsDir, filepath.Base(record))) {
		os.Chtimes(filepath.Join(cacheDir, f), now, now)
	}
	trimCache(cacheDir, limit)
}

// codeSize is the total size of compiled code files.
func codeSize(files map[string]fs.FileInfo) (total int64) {
	for _, info := range files {
		total += info.Size()
	}
	return total
}

// makeRoom removes the older half of cacheDir's compiled code, by last
// use, after storing code failed for lack of space, and returns how many
// bytes went. Without it a cache on a full disk stayed as it was, and
// every start compiled again.
func makeRoom(cacheDir string) int64 {
	return trimCache(cacheDir, codeSize(codeFiles(cacheDir))/2)
}

// trimCache removes the least recently used compiled code of cacheDir
// until its code files take at most limit bytes, and returns how many
// bytes went: a module's files (as its record lists them) and its record
// go together, as of when the record was last used (a file two records
// list, as of the later); files no record lists go by their own age. The
// records of modules whose code is all gone go too.
func trimCache(cacheDir string, limit int64) (freed int64) {
	files := codeFiles(cacheDir)
	total := codeSize(files)
	type unit struct {
		record string   // path, empty for a file no record lists
		files  []string // relative to cacheDir
		used   time.Time
	}
	var units []unit
	listed := map[string]bool{}
	records, _ := os.ReadDir(filepath.Join(cacheDir, recordsDir))
	for _, r := range records {
		path := filepath.Join(cacheDir, recordsDir, r.Name())
		data, err := os.ReadFile(path)
		info, statErr := r.Info()
		if err != nil || statErr != nil {
			continue
		}
		u := unit{record: path, used: info.ModTime()}
		names := strings.Fields(string(data))
		for _, f := range names {
			if _, ok := files[f]; ok {
				u.files = append(u.files, f)
				listed[f] = true
			}
		}
		if len(names) > 0 && len(u.files) == 0 {
			os.Remove(path) // its code is gone
			continue
		}
		units = append(units, u)
	}
	for f, info := range files {
		if !listed[f] {
			units = append(units, unit{files: []string{f}, used: info.ModTime()})
		}
	}
	lastUse := map[string]time.Time{} // a file two records list goes with the later
	for _, u := range units {
		for _, f := range u.files {
			if u.used.After(lastUse[f]) {
				lastUse[f] = u.used
			}
		}
	}
	slices.SortFunc(units, func(a, b unit) int { return a.used.Compare(b.used) })
	for _, u := range units {
		if total <= limit {
			break
		}
		for _, f := range u.files {
			if lastUse[f].After(u.used) {
				continue
			}
			if os.Remove(filepath.Join(cacheDir, f)) == nil {
				total -= files[f].Size()
				freed += files[f].Size()
			}
		}
		if u.record != "" {
			os.Remove(u.record)
		}
	}
	return freed
}
