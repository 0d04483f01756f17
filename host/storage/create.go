package storage

import (
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// A new object's database starts as a copy of an empty one made once per
// process, renamed into place. Creating it through SQLite (the WAL switch,
// the schema's commit and checkpoint) cost nine fsyncs, most of a new
// object's activation; the copy is made durable (two fsyncs) only before
// its first commit, so an object that never writes never waits for the
// disk, and nothing acknowledged depends on a file that was not synced.
var emptyDB struct {
	once sync.Once
	data []byte
	err  error
}

// emptyDatabase returns the bytes of a database in WAL mode holding only
// the schema, checkpointed (no WAL beside it).
func emptyDatabase() ([]byte, error) {
	emptyDB.once.Do(func() {
		dir, err := os.MkdirTemp("", "wharf-empty-db-")
		if err != nil {
			emptyDB.err = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "empty.db")
		db, err := sql.Open(driverName, "file:"+path+"?_journal_mode=WAL")
		if err != nil {
			emptyDB.err = err
			return
		}
		_, err = db.Exec(schema)
		if cerr := db.Close(); err == nil { // the last connection's close checkpoints
			err = cerr
		}
		if err == nil {
			emptyDB.data, err = os.ReadFile(path)
		}
		emptyDB.err = err
	})
	return emptyDB.data, emptyDB.err
}

// create puts an empty database at path if no file is there, and reports
// whether it did. The new file is not synced yet (see syncNew). A WAL or
// shared-memory file left beside a missing database belongs to an earlier
// one and is removed first: SQLite would replay it into the new file.
func create(path string) (bool, error) {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return false, err // there (nil), or not knowable
	}
	data, err := emptyDatabase()
	if err != nil {
		return false, err
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// syncNew makes a database create made durable, with its name in its
// directory: SQLite's commits sync only the WAL, which without the file
// would be thrown away at the next open.
func syncNew(path string) error {
	if err := syncPath(path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}
