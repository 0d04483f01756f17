package containerd

import (
	"context"
	"fmt"
	"github.com/wharfhq/wharf/containerd/egress"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
)

// Leftovers lists what wharf created that still exists: containers, tasks,
// snapshots, shim processes serving the daemon at address, and the network
// namespaces, veth links, mounts and loop devices of the wharf whose data
// is at scope (see NewNetwork). An empty list means nothing leaked.
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
	out = append(out, shimProcesses(address)...)
	out = append(out, egress.FirewallLeftovers(Scope(scope))...)
	policies, _ := filepath.Glob(filepath.Join(scope, "egress", "policies", "*.json"))
	for _, p := range policies {
		out = append(out, "egress policy "+p)
	}
	for _, m := range mountsUnder(scope) {
		out = append(out, "mount "+m)
	}
	for _, l := range loopDevicesOf(scope) {
		out = append(out, "loop device "+l)
	}
	return append(out, NetworkLeftovers(scope)...), nil
}

// shimProcesses finds containerd shims started for the daemon at address.
func shimProcesses(address string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, address) {
			out = append(out, "shim process "+filepath.Base(filepath.Dir(f))+": "+cmd)
		}
	}
	return out
}
