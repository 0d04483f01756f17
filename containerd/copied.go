package containerd

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// A copy (cp -a) of a data directory has, under containerd/, the state of
// the containerd of the data directory it was copied from: its metadata
// (containers, snapshots, images), which the copy's containerd serves as
// its own, and its runtime state (task bundles under state/, runc's
// containers under runc/), which names the original's processes: each
// bundle the socket of the original's shim and the original's runc root,
// each runc state the pid and cgroup of the original's container. The
// copy's containerd, started on that, connected to the original's running
// shims and listed their tasks as its own (any removal through it would
// have killed the original's container), and for a shim that had gone
// containerd's cleanup runs the shim's delete, runc delete --force, in the
// runc root the bundle names: the original's. So the runtime state a copy
// came with is removed before its containerd starts
// (discardCopiedRuntimeState), and the containers its metadata has of the
// original's (labelled with the original's data directory, recorded in
// the copy's journal) are removed by Recover, unless the original may
// still run them on the copy's network scope (see Recover).

// copiedFrom is the daemon directory (see daemonDir) whose containerd's
// runtime state the daemon directory dir holds, if not dir's own: the one
// the config containerd was last started with names, as a copy of a data
// directory has it. It is "" if dir has no config, if the config is dir's,
// or if the directory it names is gone (dir was moved there, not copied:
// its runtime state is its own).
func copiedFrom(dir string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "config.toml"))
	if err != nil {
		return ""
	}
	var config struct {
		State string `toml:"state"`
	}
	if toml.Unmarshal(raw, &config) != nil || config.State == "" || config.State == filepath.Join(dir, "state") {
		return ""
	}
	original := filepath.Dir(config.State)
	if _, err := os.Stat(original); err != nil || sameDir(original, dir) {
		return ""
	}
	return original
}

// discardCopiedRuntimeState removes, before the containerd of the daemon
// directory dir starts, the runtime state dir came with as a copy of
// another data directory's (see copiedFrom): it names the processes of
// the original's containers, not any of dir's. Nothing mounted is removed:
// a copy's runtime state is plain files (what was mounted in the
// original was copied through); if something is mounted under it, it is
// left as it is, and said.
func discardCopiedRuntimeState(dir string, logger *slog.Logger) error {
	original := copiedFrom(dir)
	if original == "" {
		return nil
	}
	// A copy whose kept scope its running original holds is refused that
	// scope later on (NewManager): refused now, it keeps what it came with.
	if err := checkKeptScopeFree(filepath.Dir(dir)); err != nil {
		return err
	}
	for _, state := range []string{filepath.Join(dir, "state"), runcRoot(dir)} {
		if mounted := MountsUnder(state); len(mounted) > 0 {
			return fmt.Errorf("this data directory is a copy of %s, whose containerd's runtime state it holds in %s, but something is mounted there (%s): "+
				"unmount it, or remove %s, and start wharf again", filepath.Dir(original), state, strings.Join(mounted, ", "), state)
		}
	}
	for _, state := range []string{filepath.Join(dir, "state"), runcRoot(dir)} {
		if err := os.RemoveAll(state); err != nil {
			return fmt.Errorf("removing the containerd runtime state copied from %s: %w", filepath.Dir(original), err)
		}
	}
	logger.Info("this data directory is a copy of another: the state of that one's running containers, which came with the copy, was removed "+
		"(their containers are that one's, not this one's)", "copied_from", filepath.Dir(original))
	return nil
}
