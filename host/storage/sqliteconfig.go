package storage

/*
#include <stdint.h>
#include <stdlib.h>

// SQLite's own functions, compiled into github.com/mattn/go-sqlite3.
extern int sqlite3_config(int, ...);
extern int64_t sqlite3_soft_heap_limit64(int64_t);
extern int64_t sqlite3_memory_used(void);

// noBulkPageCache stops each connection from allocating its page cache's
// first 20 pages (about 80 KiB) at once: an object's database is a few
// pages, and a host keeps thousands open. Pages are still allocated as
// they are read.
static int noBulkPageCache(void) {
	return sqlite3_config(7, (void *)0, 0, 0); // SQLITE_CONFIG_PAGECACHE
}

// noLookaside stops each connection from reserving its lookaside
// allocator (about 36 KiB of slots for small objects) when it opens: with
// thousands of connections that is most of what an idle one holds, and
// its small allocations come from malloc instead at no measured cost.
static int noLookaside(void) {
	return sqlite3_config(13, 0, 0); // SQLITE_CONFIG_LOOKASIDE
}

extern char *sqlite3_temp_directory;
extern char *sqlite3_mprintf(const char *, ...);
extern void sqlite3_free(void *);
extern void *sqlite3_mutex_alloc(int);
extern void sqlite3_mutex_enter(void *);
extern void sqlite3_mutex_leave(void *);

// setTempDir makes dir (NULL: none) where SQLite writes temporary files.
// The unix VFS reads sqlite3_temp_directory under this static mutex each
// time it names a temporary file, so changing it there is safe while
// databases are open.
static int setTempDir(const char *dir) {
	char *copy = 0;
	if (dir) {
		copy = sqlite3_mprintf("%s", dir);
		if (!copy) {
			return 7; // SQLITE_NOMEM
		}
	}
	void *mu = sqlite3_mutex_alloc(11); // SQLITE_MUTEX_STATIC_TEMPDIR (VFS1)
	sqlite3_mutex_enter(mu);
	char *old = sqlite3_temp_directory;
	sqlite3_temp_directory = copy;
	sqlite3_mutex_leave(mu);
	sqlite3_free(old);
	return 0;
}
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// DefaultMemoryLimit is the memory SQLite may hold for all the databases of
// a host together (see SetMemoryLimit): each open database may cache up to
// 2 MiB of pages, and a host keeps thousands open.
const DefaultMemoryLimit = 256 << 20

// configError is what configuring SQLite returned: nil unless a connection
// was opened before this package was initialised (SQLITE_MISUSE), which
// costs memory, not correctness.
var configError = configure()

func configure() error {
	// sqlite3_config works only before SQLite initialises, which setting
	// the memory limit does.
	defer SetMemoryLimit(DefaultMemoryLimit)
	if rc := C.noBulkPageCache(); rc != 0 {
		return fmt.Errorf("sqlite3_config(SQLITE_CONFIG_PAGECACHE): error %d", rc)
	}
	if rc := C.noLookaside(); rc != 0 {
		return fmt.Errorf("sqlite3_config(SQLITE_CONFIG_LOOKASIDE): error %d", rc)
	}
	return nil
}

// SetMemoryLimit sets how much memory SQLite aims to hold for all open
// databases together; 0 removes the limit. Past it, each database's page
// cache stops growing and reuses its own pages (reads go to the file, which
// the kernel caches), so the total stays near the limit however many
// databases are open. It is SQLite's soft heap limit: never an error.
func SetMemoryLimit(bytes int64) {
	C.sqlite3_soft_heap_limit64(C.int64_t(bytes))
}

// MemoryUsed is the memory SQLite holds now, for all databases.
func MemoryUsed() int64 { return int64(C.sqlite3_memory_used()) }

// TempDirName is the directory under a data directory where wharf serve
// has SQLite write its temporary files (SetTempDir).
const TempDirName = "sqlite-tmp"

// SetTempDir makes dir the directory where SQLite writes the temporary
// files of every database of the process: the sorts, DISTINCTs, GROUP BYs
// and temporary tables of a statement that outgrow its cache, and its
// statement journals. By default they go to $SQLITE_TMPDIR, $TMPDIR,
// /var/tmp or /tmp, so an object's SQL could fill the host's root
// filesystem; wharf serve gives SQLite a directory under its data
// directory, whose disk object data fills anyway. SetTempDir empties dir
// of what an earlier process left (SQLite unlinks a temporary file as it
// opens it, so that is only what a crash left between the two) and creates
// it, readable by its owner only: the files hold object data. "" gives
// SQLite back its default. One directory serves the whole process at a
// time: wharf serve calls it once, at start.
func SetTempDir(dir string) error {
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("SQLite's temporary directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("SQLite's temporary directory: %w", err)
		}
	}
	return UseTempDir(dir)
}

// UseTempDir makes dir, which SetTempDir made earlier, the directory where
// SQLite writes its temporary files again, as it is: a process that moved
// them elsewhere since (wharftest, one plugin's data directory after
// another's) goes back without emptying it, where a statement may be
// writing. "" gives SQLite back its default.
func UseTempDir(dir string) error {
	if dir == "" {
		C.setTempDir(nil)
		return nil
	}
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	if rc := C.setTempDir(cdir); rc != 0 {
		return fmt.Errorf("SQLite's temporary directory %s: error %d", dir, rc)
	}
	return nil
}
