package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/internal/keptlog"
)

// Leftovers lists what wharf created that still exists: containers, tasks,
// snapshots, what a build left in BuildNamespace, shim processes serving the daemon at address, and the
// HostLeftovers of the wharf whose data is at scope (see NewNetwork). An
// empty list means nothing leaked.
func Leftovers(ctx context.Context, c *client.Client, address, scope string) ([]string, error) {
	ctx = WithNamespace(ctx)
	var out []string
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return nil, err
	}
	for _, ctr := range ctrs {
		out = append(out, "container "+ctr.ID())
		if t, err := ctr.Task(ctx, nil); err == nil {
			out = append(out, fmt.Sprintf("task %s (pid %d)", ctr.ID(), t.Pid()))
		}
	}
	err = c.SnapshotService(Snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if !strings.HasPrefix(info.Name, "sha256:") { // image layers are not leaks
			out = append(out, "snapshot "+info.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	build, err := buildLeftovers(ctx, c)
	if err != nil {
		return nil, err
	}
	out = append(out, build...)
	out = append(out, shimProcesses(address)...)
	return append(out, HostLeftovers(scope)...), nil
}

// HostLeftovers lists what the wharf with data at scope created outside
// containerd that still exists: its nft tables (its containers' and its
// builds'), egress policies, journal
// records, task bundles and runc containers (of the containerd it started),
// the cgroups of its containers and builds, mounts, loop devices, log
// keepers, network namespaces and veth links. It needs no containerd, so
// it can check a host after wharf has stopped.
func HostLeftovers(scope string) []string {
	out := append(egress.FirewallLeftovers(Scope(scope)), egress.FirewallLeftovers(buildTag(runcRoot(daemonDir(scope))))...)
	policies, _ := filepath.Glob(filepath.Join(scope, "egress", "policies", "*.json"))
	for _, p := range policies {
		out = append(out, "egress policy "+p)
	}
	out = append(out, journalAt(scope).leftovers()...)
	for ns, prefix := range map[string]string{Namespace: "", BuildNamespace: "build "} {
		for id := range taskBundles(scope, ns) {
			out = append(out, prefix+"task bundle "+id)
		}
		runc, _ := os.ReadDir(filepath.Join(runcRoot(daemonDir(scope)), ns))
		for _, e := range runc {
			out = append(out, prefix+"runc container "+e.Name())
		}
	}
	for _, c := range cgroupsOf(runcRoot(daemonDir(scope))) {
		out = append(out, "cgroup "+c)
	}
	for _, m := range MountsUnder(scope) {
		out = append(out, "mount "+m)
	}
	for _, l := range loopDevicesOf(scope) {
		out = append(out, "loop device "+l)
	}
	agents, _ := filepath.Glob(filepath.Join(scope, "containerd", "disks", "*", "agent"))
	for _, a := range agents {
		out = append(out, "agent directory "+a)
	}
	out = append(out, logKeepers(scope)...)
	return append(out, NetworkLeftovers(scope)...)
}

// logKeepers finds the keepers of container logs below scope (wharf-init
// run by a shim as its logger, see package keptlog).
func logKeepers(scope string) []string {
	var out []string
	for _, p := range processes() {
		if strings.HasPrefix(argAfter(p.args, keptlog.Flag), scope+"/") {
			out = append(out, "log keeper process "+strconv.Itoa(p.pid)+": "+strings.Join(p.args, " "))
		}
	}
	return out
}

// process is a running process and its arguments.
type process struct {
	pid  int
	args []string
}

// processes lists the host's processes.
func processes() []process {
	var out []process
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		out = append(out, process{pid: pid, args: strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")})
	}
	return out
}

// argAfter is the argument after flag in args, or "".
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// KillProcesses kills (SIGKILL) every process on the host whose arguments
// match, and waits for them to go.
func KillProcesses(match func(args []string) bool) error {
	var errs []error
	for _, p := range processes() {
		if match(p.args) {
			errs = append(errs, killAndWait(p.pid))
		}
	}
	return errors.Join(errs...)
}

// shimProcesses finds containerd shims started for the daemon at address.
func shimProcesses(address string) []string {
	var out []string
	for _, sh := range shims(address) {
		out = append(out, "shim process "+strconv.Itoa(sh.pid)+": "+sh.cmdline)
	}
	return out
}

// taskBundles lists the task bundles (by container id) in namespace ns of
// the containerd that the wharf with data at dataDir started.
func taskBundles(dataDir, ns string) map[string]string {
	dir := filepath.Join(taskStateDir(dataDir), ns)
	entries, _ := os.ReadDir(dir)
	out := map[string]string{}
	for _, e := range entries {
		out[e.Name()] = filepath.Join(dir, e.Name())
	}
	return out
}

// taskStateDir holds, in a directory per namespace, the task bundles of
// the containerd that the wharf with data at dataDir started; a bundle is
// its shim's working directory.
func taskStateDir(dataDir string) string {
	return filepath.Join(daemonDir(dataDir), "state", "io.containerd.runtime.v2.task")
}

// shim is a containerd shim process.
type shim struct {
	pid       int
	id        string // the container it was started for
	namespace string // the container's containerd namespace
	cmdline   string
}

// shims lists the shim processes serving the daemon at address.
func shims(address string) []shim { return shimsAmong(processes(), address) }

// shimsAmong lists those of procs that are shims serving the daemon at
// address.
func shimsAmong(procs []process, address string) []shim {
	var out []shim
	for _, p := range procs {
		if !strings.Contains(p.args[0], "containerd-shim") || !slices.Contains(p.args, address) {
			continue
		}
		sh := shim{pid: p.pid, cmdline: strings.Join(p.args, " ")}
		sh.id, sh.namespace = argAfter(p.args, "-id"), argAfter(p.args, "-namespace")
		out = append(out, sh)
	}
	return out
}
