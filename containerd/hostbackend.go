package containerd

import (
	"context"

	"github.com/wharfhq/wharf/containerd/egress"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
)

// Containers is the manager as the host's container service runs
// containers through it.
func (m *Manager) Containers() hostcontainers.Backend { return hostBackend{m} }

// hostBackend is a Manager whose containers are hostcontainers.Container.
type hostBackend struct{ *Manager }

var (
	_ hostcontainers.Backend   = hostBackend{}
	_ hostcontainers.Container = (*Managed)(nil)
)

func (b hostBackend) Start(ctx context.Context, class, object string, spec hostcontainers.Spec, policy *egress.Policy, maxPerClass int) (hostcontainers.Container, error) {
	mc, err := b.Manager.Start(ctx, class, object, ContainerSpec{Image: spec.Image, Labels: spec.Labels, Env: spec.Env,
		Entrypoint: spec.Entrypoint, Resources: spec.Resources, Capabilities: spec.Capabilities, DiskMB: spec.DiskMB,
		Persistent: spec.Persistent, NoInit: spec.NoInit}, policy, maxPerClass)
	if err != nil {
		return nil, err
	}
	return mc, nil
}

func (b hostBackend) Get(class, object string) (hostcontainers.Container, bool) {
	mc, ok := b.Manager.Get(class, object)
	if !ok {
		return nil, false
	}
	return mc, true
}

func (b hostBackend) List() []hostcontainers.Container {
	var out []hostcontainers.Container
	for _, mc := range b.Manager.List() {
		out = append(out, mc)
	}
	return out
}

// Info describes the container to the host.
func (m *Managed) Info() hostcontainers.Info {
	return hostcontainers.Info{Class: m.Class, Object: m.Object, ID: m.ID(), Address: m.Endpoint.ContainerIP,
		Started: m.Started, Policy: m.Policy}
}
