package host

import (
	"context"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/plugins"
)

// egressImports are the wharf functions behind the container's outbound
// interception and its allow and deny lists.
func (s *services) egressImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportContainerIntercept, params(i32, i32, i32, i32, i32), s.importContainerIntercept),
		hostFunc(abi.ImportContainerEgress, params(i32, i32, i32, i32), s.importContainerEgress),
	}
}

// policyOf is the calling object's egress policy: its running container's,
// or a new one from the class's configuration.
func (s *services) policyOf(g *guest) (*containers.Policy, error) {
	if _, err := s.containerOf(g); err != nil {
		return nil, err
	}
	o := g.object.obj
	if o.Egress() == nil {
		p, err := s.containers.Policy(o.Class(), o.ID())
		if err != nil {
			return nil, err
		}
		o.SetEgress(p)
	}
	return o.Egress(), nil
}

func (s *services) importContainerIntercept(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	p, err := s.policyOf(g)
	if err != nil {
		return err
	}
	target, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	handler, err := readMem(mem, u32(a[3]), u32(a[4]))
	if err != nil {
		return err
	}
	return containers.Intercept(p, u32(a[0]), string(target), string(handler))
}

func (s *services) importContainerEgress(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	p, err := s.policyOf(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[2]), u32(a[3]))
	if err != nil {
		return err
	}
	return containers.EditHosts(p, u32(a[0]), u32(a[1]), raw)
}
