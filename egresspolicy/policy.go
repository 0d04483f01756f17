// Package egresspolicy is what a container may reach and which of its
// requests the Worker answers: each container's Policy (deny list,
// interception rules, allow list, then enableInternet) with its host
// patterns and interception targets, kept as data across restarts. It is
// the model only: the host edits a Policy as the guest asks
// (host/containers), and containerd/egress enforces it on the wire.
package egresspolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
)

// ErrInvalidTarget is an interception target or host pattern that cannot be
// parsed.
var ErrInvalidTarget = errors.New("invalid egress target")

// Target is what an interception rule matches: a hostname glob, an address
// prefix (a single IP is a /32 or /128), optionally with a port.
type Target struct {
	host   string       // lower-case glob; empty for an address target
	prefix netip.Prefix // valid for an address target
	port   uint16       // 0 matches any port
}

// String gives the target as the user wrote it (normalised).
func (t Target) String() string {
	switch {
	case t.host != "":
		return t.host
	case t.port != 0:
		return netip.AddrPortFrom(t.prefix.Addr(), t.port).String()
	case t.prefix.IsSingleIP():
		return t.prefix.Addr().String()
	}
	return t.prefix.String()
}

// ParseHTTPTarget parses an interceptOutboundHttp target: a hostname, a glob
// such as *.example.com, an IP, IP:port or a CIDR (IPv4 or IPv6).
func ParseHTTPTarget(s string) (Target, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return Target{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Target{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return Target{}, fmt.Errorf("%w %q: port 0", ErrInvalidTarget, s)
		}
		a := ap.Addr()
		return Target{prefix: netip.PrefixFrom(a, a.BitLen()), port: ap.Port()}, nil
	}
	host, err := ParseHostPattern(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: want a hostname, a glob such as *.example.com, an IP, IP:port or a CIDR", ErrInvalidTarget, s)
	}
	return Target{host: host}, nil
}

// ParseHTTPSTarget parses an interceptOutboundHttps target: a hostname or a
// glob; "*" matches every name.
func ParseHTTPSTarget(s string) (Target, error) {
	host, err := ParseHostPattern(s)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: HTTPS is matched by name: want a hostname, a glob such as *.example.com, or *", ErrInvalidTarget, s)
	}
	return Target{host: host}, nil
}

// ParseHostPattern checks a hostname or glob (letters, digits, '-', '_',
// '.' and '*', where '*' matches any run of characters) and lower-cases it.
func ParseHostPattern(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("%w %q: a host pattern must be 1 to 253 characters", ErrInvalidTarget, s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.*", c)) {
			return "", fmt.Errorf("%w %q: %q is not allowed in a host pattern", ErrInvalidTarget, s, c)
		}
	}
	if slices.Contains(strings.Split(s, "."), "") { // a..b, .x: no name has an empty label
		return "", fmt.Errorf("%w %q: a host pattern has no empty label", ErrInvalidTarget, s)
	}
	return s, nil
}

// hostMatches reports whether name matches the glob pattern.
func hostMatches(pattern, name string) bool {
	ok, _ := path.Match(pattern, name) // patterns are checked: no '/', '[' or '\\'
	return ok
}

func anyHostMatches(patterns []string, name string) bool {
	return name != "" && slices.ContainsFunc(patterns, func(p string) bool { return hostMatches(p, name) })
}

// matchesHost reports whether a name target matches name.
func (t Target) matchesHost(name string) bool { return t.host != "" && hostMatches(t.host, name) }

// matchesAddr reports whether an address target matches dst.
func (t Target) matchesAddr(dst netip.AddrPort) bool {
	return t.host == "" && t.prefix.Contains(dst.Addr().Unmap()) && (t.port == 0 || t.port == dst.Port())
}

// Source is the container a connection or query came from.
type Source struct {
	Class, Object string
	Addr          netip.Addr
}

type rule struct {
	target  Target
	handler string
}

// List names one of a policy's host lists.
type List int

// The host lists of reference 004.
const (
	Allowed List = iota + 1 // allowedHosts: reachable even without internet
	Denied                  // deniedHosts: never reachable, whatever else says
)

// Edit is how EditHosts changes a list.
type Edit int

// The list edits (egress.allow/deny, removeAllowed/removeDenied,
// setAllowed/setDenied).
const (
	Add Edit = iota + 1
	Remove
	Replace
)

// Policy is one container's egress rules. It is safe for concurrent use;
// the proxy reads it per request, so a change applies to connections that
// are already open.
type Policy struct {
	mu       sync.RWMutex
	onChange func(State) // called (outside mu) after every change
	internet bool
	allowed  []string
	denied   []string
	http     []rule
	httpAll  string
	https    []rule
}

// New makes a policy from a class's configured host lists.
func New(internet bool, allowed, denied []string) (*Policy, error) {
	p := &Policy{internet: internet}
	if err := p.EditHosts(Allowed, Replace, allowed); err != nil {
		return nil, err
	}
	if err := p.EditHosts(Denied, Replace, denied); err != nil {
		return nil, err
	}
	return p, nil
}

// Internet reports whether traffic no rule claims may leave.
func (p *Policy) Internet() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.internet
}

// SetInternet sets enableInternet (at container start).
func (p *Policy) SetInternet(on bool) {
	p.mu.Lock()
	p.internet = on
	p.mu.Unlock()
	p.changed()
}

// MaxRules bounds the interceptions of a kind (HTTP, HTTPS) a policy
// holds: each request the container makes is matched against them.
const MaxRules = 4096

// ErrTooManyRules is an interception beyond MaxRules of its kind.
var ErrTooManyRules = errors.New("too many interceptions")

// setRule replaces the rule for r's target in rules, or adds r unless
// rules (of kind, as an error names it) already has MaxRules.
func setRule(rules []rule, r rule, kind string) ([]rule, error) {
	if i := slices.IndexFunc(rules, func(x rule) bool { return x.target == r.target }); i >= 0 {
		rules[i] = r
		return rules, nil
	}
	if len(rules) >= MaxRules {
		return rules, fmt.Errorf("%w: the %s interceptions would be %d, the limit is %d", ErrTooManyRules, kind, len(rules)+1, MaxRules)
	}
	return append(rules, r), nil
}

// InterceptHTTP routes plain HTTP requests to target through handler; a
// second call for the same target replaces its handler.
func (p *Policy) InterceptHTTP(target, handler string) error {
	t, err := ParseHTTPTarget(target)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.http, err = setRule(p.http, rule{t, handler}, "HTTP")
	p.mu.Unlock()
	p.changed()
	return err
}

// InterceptAllHTTP routes every plain HTTP request no other rule claims
// through handler.
func (p *Policy) InterceptAllHTTP(handler string) {
	p.mu.Lock()
	p.httpAll = handler
	p.mu.Unlock()
	p.changed()
}

// InterceptHTTPS terminates TLS for names matching target and routes their
// requests through handler.
func (p *Policy) InterceptHTTPS(target, handler string) error {
	t, err := ParseHTTPSTarget(target)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.https, err = setRule(p.https, rule{t, handler}, "HTTPS")
	p.mu.Unlock()
	p.changed()
	return err
}

// MaxHosts bounds the entries of an allow or deny list: each connection
// the container opens is matched against them.
const MaxHosts = 4096

// ErrTooManyHosts is an edit that would put more than MaxHosts entries in
// a list.
var ErrTooManyHosts = errors.New("too many hosts")

// EditHosts changes the allow or deny list.
func (p *Policy) EditHosts(list List, edit Edit, hosts []string) error {
	name := map[List]string{Allowed: "allowed", Denied: "denied"}[list]
	tooMany := func(n int) error {
		return fmt.Errorf("%w: the %s hosts would have %d entries, the limit is %d", ErrTooManyHosts, name, n, MaxHosts)
	}
	if edit != Remove && len(hosts) > MaxHosts {
		return tooMany(len(hosts))
	}
	clean := make([]string, 0, len(hosts))
	for _, h := range hosts {
		c, err := ParseHostPattern(h)
		if err != nil {
			return err
		}
		clean = append(clean, c)
	}
	defer p.changed()
	p.mu.Lock()
	defer p.mu.Unlock()
	l := &p.allowed
	if list == Denied {
		l = &p.denied
	}
	switch edit {
	case Add:
		have := make(map[string]bool, len(*l)+len(clean))
		for _, h := range *l {
			have[h] = true
		}
		added := slices.Clone(*l)
		for _, h := range clean {
			if !have[h] {
				have[h] = true
				added = append(added, h)
			}
		}
		if len(added) > MaxHosts {
			return tooMany(len(added))
		}
		*l = added
	case Remove:
		gone := make(map[string]bool, len(clean))
		for _, h := range clean {
			gone[h] = true
		}
		*l = slices.DeleteFunc(*l, func(h string) bool { return gone[h] })
	case Replace:
		*l = clean
	default:
		return fmt.Errorf("unknown host list edit %d", edit)
	}
	return nil
}

// Hosts returns a copy of the allow or deny list.
func (p *Policy) Hosts(list List) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if list == Denied {
		return slices.Clone(p.denied)
	}
	return slices.Clone(p.allowed)
}

// Denies reports whether name is on the deny list.
func (p *Policy) Denies(name string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return anyHostMatches(p.denied, name)
}

// Permits reports whether traffic to name that no rule claims may leave.
func (p *Policy) Permits(name string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.internet || anyHostMatches(p.allowed, name)
}

// HTTPHandler is the handler of a plain HTTP request for host sent to dst.
func (p *Policy) HTTPHandler(host string, dst netip.AddrPort) (string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, r := range p.http {
		if r.target.matchesHost(host) || r.target.matchesAddr(dst) {
			return r.handler, true
		}
	}
	return p.httpAll, p.httpAll != ""
}

// HTTPSHandler is the handler of HTTPS to name (the SNI).
func (p *Policy) HTTPSHandler(name string) (string, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, r := range p.https {
		if name != "" && r.target.matchesHost(name) {
			return r.handler, true
		}
	}
	return "", false
}

// ClaimsName reports whether a name rule (HTTP or HTTPS) matches name, so
// its DNS answer is a synthetic address the proxy recognises.
func (p *Policy) ClaimsName(name string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, rs := range [][]rule{p.http, p.https} {
		for _, r := range rs {
			if r.target.host != "*" && r.target.matchesHost(name) {
				return true
			}
		}
	}
	return false
}

// ClaimsAll reports whether a catch-all rule would take a request to any
// name, so a name that cannot be resolved still gets a synthetic address.
func (p *Policy) ClaimsAll() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.httpAll != "" || slices.ContainsFunc(p.https, func(r rule) bool { return r.target.host == "*" })
}

// State is a Policy as data, to keep it across restarts.
type State struct {
	Internet bool        `json:"internet"`
	Allowed  []string    `json:"allowed,omitempty"`
	Denied   []string    `json:"denied,omitempty"`
	HTTP     []RuleState `json:"http,omitempty"`
	HTTPAll  string      `json:"http_all,omitempty"`
	HTTPS    []RuleState `json:"https,omitempty"`
}

// RuleState is one interception rule as data.
type RuleState struct {
	Target  string `json:"target"`
	Handler string `json:"handler"`
}

// State returns the policy as data.
func (p *Policy) State() State {
	p.mu.RLock()
	defer p.mu.RUnlock()
	st := State{Internet: p.internet, Allowed: slices.Clone(p.allowed), Denied: slices.Clone(p.denied), HTTPAll: p.httpAll}
	for _, r := range p.http {
		st.HTTP = append(st.HTTP, RuleState{r.target.String(), r.handler})
	}
	for _, r := range p.https {
		st.HTTPS = append(st.HTTPS, RuleState{r.target.String(), r.handler})
	}
	return st
}

// FromState rebuilds a policy saved with State.
func FromState(st State) (*Policy, error) {
	p, err := New(st.Internet, st.Allowed, st.Denied)
	if err != nil {
		return nil, err
	}
	for _, r := range st.HTTP {
		if err := p.InterceptHTTP(r.Target, r.Handler); err != nil {
			return nil, err
		}
	}
	for _, r := range st.HTTPS {
		if err := p.InterceptHTTPS(r.Target, r.Handler); err != nil {
			return nil, err
		}
	}
	p.httpAll = st.HTTPAll
	return p, nil
}

// OnChange makes f receive the policy's state after every change (and
// once now); nil stops it.
func (p *Policy) OnChange(f func(State)) {
	p.mu.Lock()
	p.onChange = f
	p.mu.Unlock()
	p.changed()
}

func (p *Policy) changed() {
	p.mu.RLock()
	f := p.onChange
	p.mu.RUnlock()
	if f != nil {
		f(p.State())
	}
}
