package containerd

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// journal is wharf's own record of the containers it is starting, running
// or destroying: one small file per container under the data directory,
// written before any of the container's resources (its network namespace
// and veth, nft elements, disks, snapshot, container and task) is created,
// and removed after the last of them is gone. A wharf killed at any moment
// leaves a record of everything it may have created, so the next one can
// adopt what is complete and remove the rest (Manager.Recover).
type journal struct{ dir string }

// record is what the journal keeps of one container.
type record struct {
	Class, Object       string
	Slot                int
	HostIP, ContainerIP netip.Addr
	// Started is set once the container runs and its start was reported
	// as a success: only a started container can be adopted.
	Started bool `json:",omitempty"`
	// Destroying is set before the container's resources are removed.
	Destroying bool `json:",omitempty"`
	// Released is set once the exited container's network (and its task,
	// cgroup and disks) are gone and its slot may go to another
	// container: what is left is its containerd container, snapshot and
	// log (see Manager.release).
	Released bool `json:",omitempty"`
}

// journalAt is the journal of the wharf whose data is at dataDir.
func journalAt(dataDir string) journal {
	return journal{dir: filepath.Join(dataDir, "containerd", "journal")}
}

func (j journal) path(id string) string { return filepath.Join(j.dir, id+".json") }

// put writes container id's record; a crash leaves either the old record
// or the new one, never a torn one.
func (j journal) put(id string, r record) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return err
	}
	tmp := j.path(id) + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, j.path(id))
}

func (j journal) remove(id string) error { return removeIfExists(j.path(id)) }

// all returns every record by container id; an unreadable one (which
// put never leaves) is reported as an error.
func (j journal) all() (map[string]record, error) {
	entries, err := os.ReadDir(j.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]record{}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			errs = append(errs, os.Remove(filepath.Join(j.dir, e.Name()))) // a put cut short
			continue
		}
		raw, err := os.ReadFile(filepath.Join(j.dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			errs = append(errs, err)
			continue
		}
		out[id] = r
	}
	return out, errors.Join(errs...)
}

// leftovers lists the records left (none once every container is gone).
func (j journal) leftovers() []string {
	entries, _ := os.ReadDir(j.dir)
	var out []string
	for _, e := range entries {
		out = append(out, "journal record "+filepath.Join(j.dir, e.Name()))
	}
	return out
}
