package storage

/*
// sqlite3_config is SQLite's own, compiled into github.com/mattn/go-sqlite3.
extern int sqlite3_config(int, ...);

// noBulkPageCache stops each connection from allocating its page cache's
// first 20 pages (about 80 KiB) at once: an object's database is a few
// pages, and a host keeps thousands open. Pages are still allocated as
// they are read.
static int noBulkPageCache(void) {
	return sqlite3_config(7, (void *)0, 0, 0); // SQLITE_CONFIG_PAGECACHE
}
*/
import "C"

import "fmt"

// configError is what configuring SQLite returned: nil unless a connection
// was opened before this package was initialised (SQLITE_MISUSE), which
// costs memory, not correctness.
var configError = configure()

func configure() error {
	if rc := C.noBulkPageCache(); rc != 0 {
		return fmt.Errorf("sqlite3_config(SQLITE_CONFIG_PAGECACHE): error %d", rc)
	}
	return nil
}
