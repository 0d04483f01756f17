package containers

import (
	"errors"
	"fmt"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/egresspolicy"
)

// Policy returns the object's egress policy: its container's, or a new
// one from the class's configuration.
func (s *Service) Policy(class, object string) (*Policy, error) {
	cfg, err := s.Config(class)
	if err != nil {
		return nil, err
	}
	if c, ok := s.backend.Get(class, object); ok {
		if p := c.Info().Policy; p != nil {
			return p, nil
		}
	}
	return NewPolicy(cfg, false)
}

// Intercept makes the Worker's outbound handler answer the container's
// requests to target, as container_intercept asks (kind is an
// abi.Intercept* constant).
func Intercept(p *Policy, kind uint32, target, handler string) error {
	if handler == "" {
		return fmt.Errorf("%w: an interception needs a handler name", abi.StatusInvalid)
	}
	var err error
	switch kind {
	case abi.InterceptHTTP:
		err = p.InterceptHTTP(target, handler)
	case abi.InterceptAllHTTP:
		p.InterceptAllHTTP(handler)
	case abi.InterceptHTTPS:
		err = p.InterceptHTTPS(target, handler)
	default:
		return fmt.Errorf("%w: unknown interception kind %d", abi.StatusInvalid, kind)
	}
	if errors.Is(err, egresspolicy.ErrTooManyRules) {
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return nil
}

// EditHosts edits the policy's allowed or denied hosts as container_egress
// asks: list and edit are abi.Egress* constants, raw its options.
func EditHosts(p *Policy, list, edit uint32, raw []byte) error {
	opts, err := abi.DecodeEgressOptions(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	l := map[uint32]egresspolicy.List{abi.EgressAllowed: egresspolicy.Allowed, abi.EgressDenied: egresspolicy.Denied}[list]
	e := map[uint32]egresspolicy.Edit{abi.EgressAdd: egresspolicy.Add, abi.EgressRemove: egresspolicy.Remove, abi.EgressReplace: egresspolicy.Replace}[edit]
	if l == 0 || e == 0 {
		return fmt.Errorf("%w: unknown egress list %d or edit %d", abi.StatusInvalid, list, edit)
	}
	if err := p.EditHosts(l, e, opts.Hosts); errors.Is(err, egresspolicy.ErrTooManyHosts) {
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	} else if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return nil
}
