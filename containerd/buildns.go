package containerd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// BuildNamespace is the containerd namespace the build engine (package
// build) keeps its build cache and build containers in, apart from
// wharf's containers.
const BuildNamespace = "wharf-build"

// BuildDir is where the build engine (package containerd/build) keeps its
// state, buildkitd's, under the data directory dataDir.
func BuildDir(dataDir string) string { return filepath.Join(dataDir, "buildkit") }

// BuildDiskFull reports whether a file system the builds write to is full
// (less than 64 MiB free): the build engine's state (BuildDir)
// and, on the containerd wharf started, its snapshots. It returns the
// directory on that file system.
func (b *Backend) BuildDiskFull() (string, bool) {
	dirs := []string{BuildDir(b.DataDir)}
	if b.daemon != nil {
		dirs = append(dirs, daemonDir(b.DataDir))
	}
	for _, dir := range dirs {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			continue
		}
		if st.Bavail*uint64(st.Bsize) < 64<<20 {
			return dir, true
		}
	}
	return "", false
}

// buildLeaseFilter selects the leases BuildKit holds only while it builds
// (it deletes them itself when it starts).
const buildLeaseFilter = `labels."buildkit/lease.temporary"`

// RemoveBuildLeftovers removes what a build cut short (wharf killed while
// building) left in BuildNamespace: build containers with their tasks,
// shims, bundles and runc state, BuildKit's temporary leases, whose
// snapshots containerd then collects, the build cgroups (under
// BuildCgroupParent) left empty, and the build steps' nft table (see
// OpenBuildNetwork). The build cache stays. No build may
// be running. On a containerd wharf did not start, which other builders
// may share, it removes only the empty build cgroups: they are named after
// this data directory, and runc removes only each step's own, which left
// its parents after every build.
func (b *Backend) RemoveBuildLeftovers(ctx context.Context) error {
	cgroups := "/" + b.BuildCgroupParent()
	if b.daemon == nil {
		return errors.Join(removeCgroupTree(cgroups), b.removeBuildFirewall())
	}
	ctx = namespaces.WithNamespace(ctx, BuildNamespace)
	ctrs, err := b.Client.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, ctr := range ctrs {
		errs = append(errs, removeContainer(ctx, ctr))
	}
	errs = append(errs, b.removeOrphanTasksIn(BuildNamespace, func(string) bool { return false }))
	errs = append(errs, killCgroupProcs(cgroupDirs(cgroups)))
	ls := b.Client.LeasesService()
	held, err := ls.List(ctx, buildLeaseFilter)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, l := range held {
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, removeCgroupTree(cgroups), b.removeBuildFirewall())...)
}

// killCgroupProcs kills every process in the cgroup directories dirs and
// the cgroups below them, and waits until none is left (a process that
// forked meanwhile leaves its child there). In the build cgroups these are
// RUN steps that no container or runc state names any more (the data
// directory removed, in part, after wharf was killed while building: its
// shim went, the step ran on), so only their cgroup reaches them.
func killCgroupProcs(dirs []string) error {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var left []int
		for _, pid := range cgroupProcs(dirs) {
			if !exited(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("build step processes %v did not exit after SIGKILL", left)
		}
	}
}

// removeContainer kills a container's task, if it has one, and deletes
// both.
func removeContainer(ctx context.Context, ctr client.Container) error {
	var errs []error
	if task, err := ctr.Task(ctx, nil); err == nil {
		if exited, err := task.Wait(ctx); err == nil {
			if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err == nil {
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					errs = append(errs, errors.New("build container "+ctr.ID()+" did not exit after SIGKILL"))
				}
			}
		}
		if _, err := task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// buildLeftovers lists the build containers, tasks and temporary leases in
// BuildNamespace.
func buildLeftovers(ctx context.Context, c *client.Client) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, BuildNamespace)
	var out []string
	ctrs, err := c.Containers(ctx)
	if err != nil {
		return nil, err
	}
	for _, ctr := range ctrs {
		out = append(out, "build container "+ctr.ID())
		if _, err := ctr.Task(ctx, nil); err == nil {
			out = append(out, "build task "+ctr.ID())
		}
	}
	held, err := c.LeasesService().List(ctx, buildLeaseFilter)
	if err != nil {
		return nil, err
	}
	for _, l := range held {
		out = append(out, "build lease "+l.ID)
	}
	return out, nil
}
