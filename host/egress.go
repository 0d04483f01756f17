package host

import (
	"context"
	"fmt"
	"net/http"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/manifest"
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

// newPolicy is a class's egress policy as wharf.toml configures it.
func newPolicy(c manifest.Container, internet bool) (*egress.Policy, error) {
	p, err := egress.NewPolicy(internet, c.AllowedHosts, c.DeniedHosts)
	if err != nil {
		return nil, fmt.Errorf("allowed_hosts/denied_hosts: %w", err)
	}
	return p, nil
}

// policyOf is the calling object's egress policy: its running container's,
// or a new one from the class's configuration.
func (s *services) policyOf(g *guest) (*egress.Policy, error) {
	cfg, err := s.containerOf(g)
	if err != nil {
		return nil, err
	}
	o := g.object
	if o.egress == nil {
		if mc, ok := s.containers.Get(o.ns.class, o.id); ok && mc.Policy != nil {
			o.egress = mc.Policy
		} else if o.egress, err = newPolicy(cfg, false); err != nil {
			return nil, err
		}
	}
	return o.egress, nil
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
	if len(handler) == 0 {
		return fmt.Errorf("%w: an interception needs a handler name", abi.StatusInvalid)
	}
	switch u32(a[0]) {
	case abi.InterceptHTTP:
		err = p.InterceptHTTP(string(target), string(handler))
	case abi.InterceptAllHTTP:
		p.InterceptAllHTTP(string(handler))
	case abi.InterceptHTTPS:
		err = p.InterceptHTTPS(string(target), string(handler))
	default:
		return fmt.Errorf("%w: unknown interception kind %d", abi.StatusInvalid, u32(a[0]))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return nil
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
	opts, err := abi.DecodeEgressOptions(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	list := map[uint32]egress.List{abi.EgressAllowed: egress.Allowed, abi.EgressDenied: egress.Denied}[u32(a[0])]
	edit := map[uint32]egress.Edit{abi.EgressAdd: egress.Add, abi.EgressRemove: egress.Remove, abi.EgressReplace: egress.Replace}[u32(a[1])]
	if list == 0 || edit == 0 {
		return fmt.Errorf("%w: unknown egress list %d or edit %d", abi.StatusInvalid, u32(a[0]), u32(a[1]))
	}
	if err := p.EditHosts(list, edit, opts.Hosts); err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return nil
}

// ServeOutbound answers a container's intercepted request with the
// Worker's outbound handler (an abi.EventOutbound event), telling it the
// handler and the container's object.
func (s *services) ServeOutbound(w http.ResponseWriter, r *http.Request, src egress.Source, handler string) {
	wk := s.worker.Load()
	if wk == nil {
		http.Error(w, "wharf egress: the Worker is still loading", http.StatusServiceUnavailable)
		return
	}
	wk.serve(w, r, abi.EventOutbound, [][2]string{
		{abi.FieldHandler, handler}, {abi.FieldClass, src.Class}, {abi.FieldID, src.Object}})
}
