package storage

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"io/fs"
	"math/rand/v2"
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
	data = withIncarnation(data)
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

// withIncarnation returns a copy of the database file data with a random
// non-zero incarnation in its header's application_id (bytes 68–71): the
// commit log replays a commit only into the file it was made in, never
// into a new database later created at the same path.
func withIncarnation(data []byte) []byte {
	data = bytes.Clone(data)
	for binary.BigEndian.Uint32(data[68:72]) == 0 {
		binary.BigEndian.PutUint32(data[68:72], rand.Uint32())
	}
	return data
}

// Install puts data, a database file made elsewhere (a snapshot), at path
// in place of the database there, which must be closed, and of its WAL,
// durably. The file gets an incarnation of its own: a snapshot carries
// the one of the file it was copied from, which can be the replaced one
// (this host held the object before), and the commit log must not replay
// the replaced file's commits into it.
func Install(path string, data []byte) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} { // a stale WAL would be replayed into the new file
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if len(data) < 100 {
		return errors.New("install: not a database file")
	}
	data = bytes.Clone(data)
	old := binary.BigEndian.Uint32(data[68:72])
	id := old
	for id == 0 || id == old {
		id = rand.Uint32()
	}
	binary.BigEndian.PutUint32(data[68:72], id)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncPath(tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}
