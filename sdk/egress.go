package sdk

import (
	"fmt"
	"net/http"

	"github.com/wharfhq/wharf/abi"
)

var outboundHandlers = map[string]http.Handler{}

// HandleOutbound registers h as the outbound handler named name. Requests a
// container sends that an interception rule routes to name reach h with
// their original absolute URL in r.URL (scheme and host as the container
// used them). h may answer itself or fetch upstream: its own fetches leave
// from the host and do not pass the container's rules again. Call it before
// Serve, from main or an init function.
func HandleOutbound(name string, h http.Handler) { outboundHandlers[name] = h }

// outboundKey carries an outbound request's source in its context.
type outboundKey struct{}

// outboundSource is whose container sent an intercepted request.
type outboundSource struct{ handler, class, id string }

// OutboundSource tells an outbound handler which Durable Object's container
// sent r: its class and id. ok is false for any other request.
func OutboundSource(r *http.Request) (class, objectID string, ok bool) {
	src, ok := r.Context().Value(outboundKey{}).(*outboundSource)
	if !ok {
		return "", "", false
	}
	return src.class, src.id, true
}

// outboundHandler picks the handler of an EventOutbound request: the one
// its interception rule names.
func outboundHandler(r *http.Request) http.Handler {
	src, _ := r.Context().Value(outboundKey{}).(*outboundSource)
	if src == nil {
		return nil
	}
	return outboundHandlers[src.handler]
}

func checkHandler(name string) error {
	if _, ok := outboundHandlers[name]; !ok {
		return fmt.Errorf("%w: no outbound handler named %q: register it with sdk.HandleOutbound", ErrInvalidArgument, name)
	}
	return nil
}

func (c *Container) intercept(kind uint32, target, handler string) error {
	if err := checkHandler(handler); err != nil {
		return err
	}
	ev, err := c.obj.current()
	if err != nil {
		return err
	}
	return containerError(ev.ContainerIntercept(kind, target, handler), ErrInvalidArgument)
}

// InterceptOutboundHTTP routes the container's plain HTTP requests to target
// through the outbound handler named handler (see HandleOutbound). target
// is a hostname, a glob such as "*.example.com" ('*' matches any run of
// characters), an IP, an IP:port, or a CIDR (IPv4 or IPv6). It may be
// called before or after Start; connections already open use the new rule
// from their next request. A second rule for the same target replaces it.
func (c *Container) InterceptOutboundHTTP(target, handler string) error {
	return c.intercept(abi.InterceptHTTP, target, handler)
}

// InterceptAllOutboundHTTP routes every plain HTTP request of the container
// that no InterceptOutboundHTTP rule claims through handler.
func (c *Container) InterceptAllOutboundHTTP(handler string) error {
	return c.intercept(abi.InterceptAllHTTP, "", handler)
}

// InterceptOutboundHTTPS terminates the container's TLS connections to
// names matching target (a hostname or glob; "*" is every name) with a
// certificate from wharf's CA, and routes their requests through handler.
// The container must trust the CA, mounted at
// /etc/cloudflare/certs/cloudflare-containers-ca.crt and /etc/wharf/ca.crt.
// TLS to other names is never terminated.
func (c *Container) InterceptOutboundHTTPS(target, handler string) error {
	return c.intercept(abi.InterceptHTTPS, target, handler)
}

// Egress edits the container's allowedHosts and deniedHosts (reference
// 004): host globs that may be reached even without internet, and that may
// never be reached, whatever else allows them. They start from wharf.toml's
// allowed_hosts and denied_hosts.
type Egress struct{ container *Container }

// Egress returns the container's egress lists.
func (c *Container) Egress() Egress { return Egress{container: c} }

func (e Egress) edit(list, edit uint32, hosts []string) error {
	opts := abi.EgressOptions{Hosts: hosts}.Encode(nil)
	ev, err := e.container.obj.current()
	if err != nil {
		return err
	}
	return containerError(ev.ContainerEgress(list, edit, opts), ErrInvalidArgument)
}

// Allow adds hosts to allowedHosts.
func (e Egress) Allow(hosts ...string) error { return e.edit(abi.EgressAllowed, abi.EgressAdd, hosts) }

// Deny adds hosts to deniedHosts.
func (e Egress) Deny(hosts ...string) error { return e.edit(abi.EgressDenied, abi.EgressAdd, hosts) }

// RemoveAllowed drops hosts from allowedHosts.
func (e Egress) RemoveAllowed(hosts ...string) error {
	return e.edit(abi.EgressAllowed, abi.EgressRemove, hosts)
}

// RemoveDenied drops hosts from deniedHosts.
func (e Egress) RemoveDenied(hosts ...string) error {
	return e.edit(abi.EgressDenied, abi.EgressRemove, hosts)
}

// SetAllowed replaces allowedHosts.
func (e Egress) SetAllowed(hosts []string) error {
	return e.edit(abi.EgressAllowed, abi.EgressReplace, hosts)
}

// SetDenied replaces deniedHosts.
func (e Egress) SetDenied(hosts []string) error {
	return e.edit(abi.EgressDenied, abi.EgressReplace, hosts)
}
