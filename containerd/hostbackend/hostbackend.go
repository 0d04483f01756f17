// Package hostbackend opens what a plugin's [[containers]] run on and hands
// it to the host as its container service (package host/containers over
// package containerd): containerd (wharf's own under the data directory,
// or the operator's), the Dockerfile images built, every image checked and
// marked in use, the manager with its egress gateway, and the containers a
// previous run left adopted or removed. `wharf serve` and the tests that
// run containers open it the same way.
package hostbackend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/manifest"
)

// testImage is the busybox image wharf's examples and `wharf init
// --container` name (internal/testimages.BusyboxRef).
const testImage = "wharf.test/busybox:latest"

// testImageHint says how to make wharf's test image, which no registry
// serves (so `wharf images pull` cannot fetch it), for the error of a
// missing image; "" for any other image.
func testImageHint(image string) string {
	if image != testImage {
		return ""
	}
	return "; it is wharf's test image, which no registry serves: `go run github.com/wharfhq/wharf/internal/testimages/mkimage DIR` " +
		"(in wharf's checkout, or a plugin that wharf init made) writes DIR/busybox.tar to import"
}

// Options configure Open.
type Options struct {
	// DataDir is the plugin's data directory (wharf's containerd, disks,
	// egress CA and journal live under it).
	DataDir string
	// Address names an existing containerd socket; empty starts wharf's
	// own under DataDir.
	Address string
	// Logger receives the lifecycle lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics registers the lifecycle metrics; nil registers none.
	Metrics prometheus.Registerer
	// DNSUpstream are the DNS servers ("ip:port") containers' permitted
	// names are resolved with; empty means the host's /etc/resolv.conf.
	DNSUpstream []string
	// EgressMaxConns is how many connections one container may have open
	// through the egress proxy; 0 means egress.MaxConnsPerContainer.
	EgressMaxConns int
	// EgressMaxConnsTotal is how many connections all containers may
	// have open through it; 0 means egress.Config's default.
	EgressMaxConnsTotal int
	// Registries are the credentials and plain-HTTP registries for
	// builds of Dockerfile images.
	Registries containerd.Registries
	// BuildOutput receives the progress of image builds; nil discards it.
	BuildOutput io.Writer
}

// StartsContainerd reports whether Open, for m and a --containerd-address
// of address, starts wharf's own containerd in the data directory: it
// does for [[containers]], unless given another's address.
func StartsContainerd(m *manifest.Manifest, address string) bool {
	return len(m.Containers) > 0 && address == ""
}

// Open connects to containerd (starting wharf's own unless an address is
// given), starts the manager (which claims the data directory's network
// scope), builds the images of Dockerfile classes, checks every image is
// there and adopts or removes the containers a previous run left. It
// returns nil for a manifest without [[containers]]. The service's Close
// (the host's, once given it) releases it all.
func Open(ctx context.Context, m *manifest.Manifest, o Options) (_ *containers.Service, err error) {
	if len(m.Containers) == 0 {
		return nil, nil
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	specs := map[string]manifest.Container{}
	for i, c := range m.Containers {
		specs[c.ClassName] = c
		if _, err := containers.NewPolicy(c, false); err != nil {
			return nil, fmt.Errorf("%s: containers[%d] (class %s): %w", m.Path, i, c.ClassName, err)
		}
	}
	b, err := containerd.OpenBackend(ctx, o.DataDir, o.Address, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	hooks := &containers.Hooks{}
	mgr, err := containerd.NewManager(b, containerd.ManagerOptions{
		Egress: egress.Config{Upstream: o.DNSUpstream, Interceptor: hooks, MaxConns: o.EgressMaxConns, MaxConnsTotal: o.EgressMaxConnsTotal}, Logger: logger, Metrics: o.Metrics,
		OnExit: hooks.Exited})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			mgr.Close(context.WithoutCancel(ctx))
		}
	}()
	// Built once the manager has claimed the data directory's network
	// scope, whose lock file names the directory: a wharf killed while
	// building whose data directory is then removed leaves its build (the
	// RUN step, its shim, mounts and network) to the next wharf of the
	// host, which sweeps a dead scope whose directory is gone.
	if err := buildImages(ctx, m, b, o, specs, logger); err != nil {
		return nil, err
	}
	be := &backend{b: b, plugin: m.Name, importWith: "--data-dir " + o.DataDir} // the command run elsewhere would use ./.wharf
	if o.Address != "" {
		be.importWith = "--containerd-address " + o.Address
	}
	for i, c := range m.Containers {
		image := specs[c.ClassName].Image
		if _, err := b.Client.GetImage(containerd.WithNamespace(ctx), image); err != nil {
			return nil, fmt.Errorf("%s: containers[%d] (class %s): %w, with %s%s", m.Path, i, c.ClassName, containerd.MissingImage(image), be.importWith, testImageHint(image))
		}
		if err := containerd.MarkInUse(ctx, b.Client, image, m.Name); err != nil {
			return nil, err
		}
		be.images = append(be.images, image)
	}
	for class := range specs {
		mgr.Track(class)
	}
	adopted, removed, err := mgr.Recover(ctx, func(class string, internet bool) *egresspolicy.Policy {
		c, ok := specs[class]
		if !ok {
			return nil
		}
		p, _ := containers.NewPolicy(c, internet) // checked above
		return p
	})
	if containerd.OnlyUnexamined(err) && containerd.OnlyCopied(err) {
		// A copy of a data directory whose wharf was killed with them
		// running: they are that one's.
		logger.Warn("containers of the data directory this one is a copy of, which may still run them, are left to it: "+
			"their objects are not started here until this copy has a network scope of its own (stop this wharf, remove its containerd/network-scope, start it again)", "err", err)
	} else if containerd.OnlyUnexamined(err) {
		// The containers that could not be looked at run on untouched.
		logger.Warn("containers from a previous run could not be looked at: left as they are for the next run", "err", err)
	} else if err != nil {
		// An interrupt (Ctrl-C) stops recovery between containers: the
		// ones adopted are destroyed whole (the manager closes), the
		// others left for the next run.
		return nil, fmt.Errorf("recovering containers: %w", err)
	}
	if adopted+removed > 0 {
		logger.Info("containers from a previous run", "adopted", adopted, "removed", removed)
	}
	be.mgr = mgr
	return containers.New(be, specs, hooks), nil
}

// buildImages builds the images of classes whose image is a Dockerfile
// when their context changed (see build.Options.Hash) and points their
// specs at the tags built.
func buildImages(ctx context.Context, m *manifest.Manifest, b *containerd.Backend, o Options, specs map[string]manifest.Container, logger *slog.Logger) error {
	var targets []build.Options
	for i, c := range m.Containers {
		bo, ok, err := ImageBuild(m, c, b.DataDir)
		if err != nil {
			return fmt.Errorf("%s: containers[%d] (class %s): %w", m.Path, i, c.ClassName, err)
		}
		if !ok {
			continue
		}
		bo.Auth, bo.Progress = o.Registries.Auth, o.BuildOutput
		hash, err := bo.Hash(ctx)
		if err != nil {
			return err
		}
		bo.Tag = build.Tag(m.Name, c.ClassName, hash)
		targets = append(targets, bo)
		c.Image = bo.Tag
		specs[c.ClassName] = c
	}
	return build.EnsureBuilt(ctx, b, targets, build.EngineOptions{InsecureRegistries: o.Registries.Insecure, Logger: logger})
}

// ImageBuild is the build of class c's image if the manifest m builds it
// from a Dockerfile (ok): its context and Dockerfile, its build
// arguments, and the data directory dataDir left out of the context.
func ImageBuild(m *manifest.Manifest, c manifest.Container, dataDir string) (o build.Options, ok bool, err error) {
	src, ok := c.BuildSource(m.Dir)
	if !ok {
		return build.Options{}, false, nil
	}
	contextDir, dockerfile, err := build.Source(src, "")
	if err != nil {
		return build.Options{}, false, err
	}
	return build.Options{Context: contextDir, Dockerfile: dockerfile, BuildArgs: c.BuildArgs,
		Exclude: build.ExcludeInside(contextDir, dataDir)}, true, nil
}

// Parts returns the manager and the containerd connection behind s, a
// service Open returned, for tests that look under it.
func Parts(s *containers.Service) (*containerd.Manager, *containerd.Backend) {
	be := s.Backend().(*backend)
	return be.mgr, be.b
}

// backend is a containerd.Manager as a containers.Backend, with the
// containerd it runs on and the images the plugin marked in use.
type backend struct {
	mgr    *containerd.Manager
	b      *containerd.Backend
	images []string
	plugin string
	// importWith is the option that points `wharf images import` at this
	// containerd, for the error of a missing image.
	importWith string
}

var _ containers.Backend = (*backend)(nil)

func (be *backend) Start(ctx context.Context, class, object string, spec containers.Spec, policy *containers.Policy, maxPerClass int) (containers.Container, error) {
	mc, err := be.mgr.Start(ctx, class, object, containerd.ContainerSpec{Image: spec.Image, Labels: spec.Labels, Env: spec.Env,
		Entrypoint: spec.Entrypoint, Resources: spec.Resources, Capabilities: spec.Capabilities, DiskMB: spec.DiskMB,
		Persistent: spec.Persistent, NoInit: spec.NoInit}, policy, maxPerClass)
	if errors.Is(err, containerd.ErrImageMissing) {
		return nil, fmt.Errorf("%w, with %s", err, be.importWith)
	}
	if err != nil {
		return nil, err
	}
	return container{mc}, nil
}

func (be *backend) Get(class, object string) (containers.Container, bool) {
	mc, ok := be.mgr.Get(class, object)
	if !ok {
		return nil, false
	}
	return container{mc}, true
}

func (be *backend) List() []containers.Container {
	var out []containers.Container
	for _, mc := range be.mgr.List() {
		out = append(out, container{mc})
	}
	return out
}

func (be *backend) Stop(ctx context.Context, class, object string, grace time.Duration, reason string) error {
	return be.mgr.Stop(ctx, class, object, grace, reason)
}

func (be *backend) Destroy(ctx context.Context, class, object, reason string) error {
	return be.mgr.DestroyBecause(ctx, class, object, reason)
}

func (be *backend) LogPath(class, object string) string { return be.mgr.LogPath(class, object) }

func (be *backend) CountExec(class string) { be.mgr.CountExec(class) }

func (be *backend) StopAll(ctx context.Context, grace time.Duration) error {
	if grace > 0 {
		be.mgr.StopAll(ctx, grace)
	}
	return be.mgr.DestroyAll(ctx)
}

func (be *backend) Close(ctx context.Context, grace time.Duration) error {
	err := be.StopAll(ctx, grace)
	for _, image := range be.images {
		err = errors.Join(err, containerd.ReleaseInUse(ctx, be.b.Client, image, be.plugin))
	}
	return errors.Join(err, be.mgr.Close(ctx), be.b.Close())
}

// container is a containerd.Managed as a containers.Container.
type container struct{ *containerd.Managed }

func (c container) Info() containers.Info {
	info := containers.Info{Class: c.Class, Object: c.Object, ID: c.ID(), Address: c.Endpoint.ContainerIP,
		Started: c.Started, Policy: c.Policy}
	if c.Released() { // its address went back to the pool
		info.Address = netip.Addr{}
	}
	return info
}

// Pid is 0 for an exited container released: its pid may be another
// process's by now.
func (c container) Pid() uint32 {
	if c.Released() {
		return 0
	}
	return c.Managed.Pid()
}
