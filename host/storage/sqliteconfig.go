package storage

/*
#include <stdint.h>

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
*/
import "C"

import "fmt"

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
