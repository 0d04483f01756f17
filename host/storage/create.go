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
// object's activation; the copy is made durable (two fsyncs) as it is
// first opened, before SQLite takes its lock (see connect), so nothing
// acknowledged depends on a file that was not synced: the file before it
// is renamed into place, so that a crash never leaves a short file at an
// object's path (an empty one is refused as damaged, see ErrEmptyFile),
// and its name after. An object that never uses its storage makes no file.
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
// whether it did; a file there that is empty is ErrEmptyFile. The new file
// is synced, but not its name yet (see syncNew, which connect calls before
// SQLite opens it). A WAL or shared-memory file left beside a missing
// database belongs to an earlier one and is removed first: SQLite would
// replay it into the new file.
func create(path string) (bool, error) {
	if err := notEmpty(path); !errors.Is(err, fs.ErrNotExist) {
		return false, err // there (nil), empty, or not knowable
	}
	data, err := emptyDatabase()
	if err != nil {
		return false, err
	}
	if err := Remove(path); err != nil {
		return false, err
	}
	return true, place(path, data, true)
}

// notEmpty returns ErrEmptyFile if the file at path is a regular file of
// 0 bytes, and Lstat's error.
func notEmpty(path string) error {
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return ErrEmptyFile
	}
	return err
}

// syncNew makes the name of a database create made durable, in its
// directory: SQLite's commits sync only the WAL, which without the file
// would be thrown away at the next open.
func syncNew(path string) error { return syncPath(filepath.Dir(path)) }

// Remove removes the closed database at path with its WAL and shared
// memory: a WAL left beside a database made there later would be replayed
// into it.
func Remove(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Install puts data, a database file made elsewhere (a snapshot), at path
// in place of the database there, which must be closed, and of its WAL,
// durably. The file gets an incarnation of its own (see place): a snapshot
// carries the one of the file it was copied from, which can be the
// replaced one (this host held the object before).
func Install(path string, data []byte) error {
	if err := Remove(path); err != nil {
		return err
	}
	if len(data) < 100 {
		return errors.New("install: not a database file")
	}
	if err := place(path, data, true); err != nil {
		return err
	}
	return syncPath(filepath.Dir(path))
}

// place writes data, a database file, at path, where there is none, by a
// rename; synced before the rename if durable. The file gets an
// incarnation of its own in its header's application_id (bytes 68–71):
// random, non-zero and not data's, so the commit log replays a commit only
// into the file it was made in, never into another database at the same
// path.
func place(path string, data []byte, durable bool) error {
	data = bytes.Clone(data)
	at := data[fileIncarnationAt : fileIncarnationAt+4]
	binary.BigEndian.PutUint32(at, otherIncarnation(binary.BigEndian.Uint32(at)))
	tmp := path + ".new"
	err := os.WriteFile(tmp, data, 0o644)
	if err == nil && durable {
		err = syncPath(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// fileIncarnationAt is where a database file's header holds its incarnation:
// its application_id, 4 bytes, big-endian.
const fileIncarnationAt = 68

// otherIncarnation is a random incarnation, non-zero and not old.
func otherIncarnation(old uint32) uint32 {
	id := old
	for id == 0 || id == old {
		id = rand.Uint32()
	}
	return id
}
