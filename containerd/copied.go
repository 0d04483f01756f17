package containerd

import (
	"errors"
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
// (discardForeignRuntimeState), and the containers its metadata has of the
// original's (labelled with the original's data directory, recorded in
// the copy's journal) are removed by Recover, unless the original may
// still run them on the copy's network scope (see Recover).

// configuredFrom is the daemon directory (see daemonDir) whose state the
// config in the daemon directory dir names, the one its containerd was
// last started with, if not dir's own: a copy of a data directory, or one
// moved, has it. "" if dir has no config or the config is dir's.
func configuredFrom(dir string) string {
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
	if from := filepath.Dir(config.State); !sameDir(from, dir) {
		return from
	}
	return ""
}

// copiedFrom is the daemon directory whose containerd's runtime state the
// daemon directory dir holds as a copy of it (see configuredFrom); "" if
// it is dir's own, or if the directory the config names is gone (dir was
// moved there, not copied).
func copiedFrom(dir string) string {
	original := configuredFrom(dir)
	if original == "" {
		return ""
	}
	if _, err := os.Stat(original); err != nil {
		return ""
	}
	return original
}

// movedShims are the shims of the containerd of the daemon directory from
// that work in the daemon directory dir: dir was moved (mv) from there
// while they ran (a process's working directory moves with it), after its
// wharf was killed. They still name from, which no longer holds their
// containerd's socket and runc's state: their containers can be neither
// adopted nor stopped through them.
func movedShims(procs []process, from, dir string) []shim {
	var moved []shim
	for _, sh := range shimsAmong(procs, SocketPath(from, "containerd.sock")) {
		if strings.HasPrefix(workDir(sh.pid), dir+"/") {
			moved = append(moved, sh)
		}
	}
	return moved
}

// discardForeignRuntimeState removes, before the containerd of the daemon
// directory dir starts, runtime state dir holds of another directory's
// containerd: as a copy of another data directory's (see copiedFrom), it
// names the processes of the original's containers, not any of dir's; as
// a data directory moved while the containers of its killed wharf ran
// (see movedShims), it names them by a path that is gone, and they are
// stopped first, with their shims (the objects start afresh). Nothing
// mounted is removed from a copy: its runtime state is plain files (what
// was mounted in the original was copied through); if something is
// mounted under it, it is left as it is, and said.
func discardForeignRuntimeState(dir string, logger *slog.Logger) error {
	if err := stopShimsMovedAway(dir, logger); err != nil {
		return err
	}
	from := configuredFrom(dir)
	if from == "" {
		return nil
	}
	if procs := processes(); len(movedShims(procs, from, dir)) > 0 {
		removed, errs := removeLeftProcesses(procs, filepath.Dir(from), filepath.Dir(dir))
		logger.Warn("this data directory was moved from "+filepath.Dir(from)+" while the containers of the wharf killed there ran: "+
			"they named the old path, so they could be neither adopted nor stopped, and were stopped now; their objects start afresh",
			"moved_from", filepath.Dir(from), "removed", strings.Join(removed, ", "))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("stopping the containers of the wharf killed before this data directory was moved from %s: %w", filepath.Dir(from), err)
		}
		return removeRuntimeState(dir, from)
	}
	original := copiedFrom(dir)
	if original == "" {
		return nil
	}
	for _, state := range []string{filepath.Join(dir, "state"), runcRoot(dir)} {
		if mounted := MountsUnder(state); len(mounted) > 0 {
			return fmt.Errorf("this data directory is a copy of %s, whose containerd's runtime state it holds in %s, but something is mounted there (%s): "+
				"unmount it, or remove %s, and start wharf again", filepath.Dir(original), state, strings.Join(mounted, ", "), state)
		}
	}
	if err := removeRuntimeState(dir, original); err != nil {
		return err
	}
	logger.Info("this data directory is a copy of another: the state of that one's running containers, which came with the copy, was removed "+
		"(their containers are that one's, not this one's)", "copied_from", filepath.Dir(original))
	return nil
}

// removeRuntimeState removes the runtime state of the daemon directory
// dir, which is that of the containerd of the daemon directory from.
func removeRuntimeState(dir, from string) error {
	for _, state := range []string{filepath.Join(dir, "state"), runcRoot(dir)} {
		if err := os.RemoveAll(state); err != nil {
			return fmt.Errorf("removing the containerd runtime state that came from %s: %w", filepath.Dir(from), err)
		}
	}
	return nil
}

// shimsMovedAway are the shims of the containerd of the daemon directory
// dir that work in another directory, and the daemon directory they work
// in: the data directory that was at dir's was moved (mv) while they ran,
// and one was made anew at its path. They still name dir's containerd's
// socket and runc's state, and so do the names they give on the host: the
// socket of each shim (a hash of containerd's socket and the container's
// id) and its container's cgroup (a hash of runc's state). The containers
// of dir's containerd take those names, object by object: a start in dir
// found the moved container's shim serving its socket and its cgroup
// running, and the stop of its own container (runc kill --all, which
// signals the whole cgroup) killed the moved one's processes, leaving
// their mounts in the moved directory, which its next run then refused.
func shimsMovedAway(procs []process, dir string) (moved []shim, to string) {
	for _, sh := range shimsAmong(procs, SocketPath(dir, "containerd.sock")) {
		cwd := workDir(sh.pid)
		if cwd == "" || strings.HasPrefix(cwd, dir+"/") {
			continue
		}
		moved = append(moved, sh)
		if at, _, ok := strings.Cut(cwd, "/state/io.containerd.runtime.v2.task/"); ok && to == "" {
			to = at
		}
	}
	return moved, to
}

// stopShimsMovedAway stops, before the containerd of the daemon directory
// dir starts, the shims of a data directory moved from dir's path while
// the containers of its killed wharf ran (see shimsMovedAway), with their
// containers, and unmounts what they left mounted where they work: they
// take names dir's containers need, and neither wharf could adopt or stop
// them through its containerd (their objects start afresh when the moved
// directory is served). While a containerd of the moved data directory
// still runs (a running wharf's data directory was moved) they are its
// containers: dir is refused.
func stopShimsMovedAway(dir string, logger *slog.Logger) error {
	procs := processes()
	moved, to := shimsMovedAway(procs, dir)
	if len(moved) == 0 {
		return nil
	}
	data, movedData := filepath.Dir(dir), filepath.Dir(to)
	if to == "" {
		movedData = "another directory (it may have been removed since)"
	}
	if daemonRuns(procs, data) {
		return fmt.Errorf("the data directory that was at %s was moved to %s while its wharf ran, which still runs its containers under this path's names "+
			"(its containerd's socket, its containers' shims and cgroups), which this one's containers would take: stop that wharf first", data, movedData)
	}
	at := movedData
	if to == "" {
		at = data // nothing of it is mounted anywhere found
	}
	removed, errs := removeLeftProcesses(procs, data, at)
	logger.Warn("the data directory that was at "+data+" was moved to "+movedData+" while the containers of the wharf killed there ran: "+
		"they still used this path's names (its containerd's socket, its containers' shims and cgroups), which this wharf's containers take, "+
		"and were stopped now; their objects start afresh when "+movedData+" is served",
		"moved_to", movedData, "removed", strings.Join(removed, ", "))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping the containers of the wharf killed before its data directory was moved from %s to %s: %w", data, movedData, err)
	}
	return nil
}
