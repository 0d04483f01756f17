// Package egress governs what leaves a container: one nft table in the host
// namespace redirects the containers' outbound TCP and DNS to a proxy and a
// resolver inside the wharf process, which enforce each container's
// egresspolicy.Policy (deny list, interception rules, allow list, then
// enableInternet) and terminate HTTPS only for names a rule intercepts,
// with leaf certificates minted from wharf's own CA.
package egress

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/egresspolicy"
)

// Where containers find the CA: the path the hosted system uses (images
// built for it trust it already) and wharf's own.
const (
	ReferenceCAPath = "/etc/cloudflare/certs/cloudflare-containers-ca.crt"
	WharfCAPath     = "/etc/wharf/ca.crt"
)

// ResolverAddr is the nameserver in containers' resolv.conf. Any DNS
// packet a container sends is answered by wharf; this address only gives
// the stub resolver somewhere to send it.
var ResolverAddr = netip.MustParseAddr("198.18.0.1")

// Interceptor answers intercepted requests: handler is the name a rule
// gave, r.URL the original absolute URL.
type Interceptor interface {
	ServeOutbound(w http.ResponseWriter, r *http.Request, src egresspolicy.Source, handler string)
}

// Config configures a Gateway.
type Config struct {
	// Dir holds the CA and the containers' resolv.conf.
	Dir string
	// Scope names the nft table (see containerd.Scope).
	Scope string
	// LinkPrefix is the name prefix of the host ends of container links.
	LinkPrefix string
	// ListenAddr is the container-facing address the proxy and resolver
	// listen on, and only there: every container link carries it, and
	// the firewall sends containers' TCP and DNS to it.
	ListenAddr netip.Addr
	// Internal are addresses no container may reach (other containers,
	// for one): the proxy never dials them and the firewall forwards
	// nothing to them; loopback and SyntheticRange always are.
	Internal []netip.Prefix
	// Upstream are the DNS servers ("ip:port") permitted names are
	// resolved with; empty means those of /etc/resolv.conf.
	Upstream []string
	// Interceptor answers intercepted requests.
	Interceptor Interceptor
	// MaxConns is how many connections one container may have open
	// through the proxy at once; 0 means MaxConnsPerContainer.
	MaxConns int
	// MaxConnsTotal is how many connections all containers together may
	// have open through the proxy; 0 means a quarter of the process's
	// open-file limit (each costs two descriptors once dialled out), so
	// containers together cannot use up the descriptors ingress, object
	// databases and containerd need.
	MaxConnsTotal int
	// Logger gets refused connections and errors; nil means slog.Default().
	Logger *slog.Logger
}

// Gateway is the egress path of every container of one wharf: the nft
// table, the resolver, the proxy and the CA.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	fw       *firewall
	ca       *CA
	resolv   string // resolv.conf for containers
	dnsUDP   *dns.Server
	dnsTCP   *dns.Server
	proxyLn  *net.TCPListener
	http     *http.Server
	httpConn chan net.Conn
	upstream *http.Transport
	resolver *net.Resolver
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closing  sync.Once

	mu       sync.RWMutex
	attached map[netip.Addr]*attachment
	synth    map[string]netip.Addr
	synthIP  map[netip.Addr]string
	nextIP   netip.Addr // the next synthetic address to hand out
	meta     sync.Map   // net.Conn → *connMeta, for the HTTP server
	// conns counts all connections open through the proxy, at most
	// maxConns (Config.MaxConnsTotal).
	conns    connCount
	maxConns int32
}

// attachment is one container known to the gateway.
type attachment struct {
	src      egresspolicy.Source
	policy   *egresspolicy.Policy
	internet bool // in the forward set
	mu       sync.Mutex
	names    map[netip.Addr]string // addresses its DNS answers gave, by name
	refused  map[string]time.Time  // when a refused lookup of a name was last logged
	// conns counts its connections open through the proxy
	// (MaxConnsPerContainer).
	conns connCount
}

// Start installs the nft table and starts the resolver and proxy.
func Start(cfg Config) (g *Gateway, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Upstream) == 0 {
		cfg.Upstream = systemResolvers()
	} else if cfg.Upstream, err = UpstreamAddrs(cfg.Upstream); err != nil {
		return nil, err
	}
	ca, err := LoadCA(cfg.Dir)
	if err != nil {
		return nil, err
	}
	resolv := filepath.Join(cfg.Dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+ResolverAddr.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g = &Gateway{cfg: cfg, log: cfg.Logger, ca: ca, resolv: resolv, ctx: ctx, cancel: cancel,
		attached: map[netip.Addr]*attachment{}, synth: map[string]netip.Addr{}, synthIP: map[netip.Addr]string{},
		httpConn: make(chan net.Conn), maxConns: int32(cmp.Or(cfg.MaxConnsTotal, maxConnsTotal()))}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if err := g.startResolver(); err != nil {
		return nil, err
	}
	if err := g.startProxy(); err != nil {
		return nil, err
	}
	proxyPort, dnsPort := g.Ports()
	g.fw, err = installFirewall(cfg.Scope, cfg.LinkPrefix, cfg.ListenAddr, dnsPort, proxyPort, cfg.Internal)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// listenConfig binds with IP_FREEBIND: the listen address lives on the
// container links, which come and go with the containers.
var listenConfig = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) })
	return errors.Join(err, serr)
}}

// systemResolvers are the host's nameservers.
func systemResolvers() []string {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out
}

// Mounts are the files every container gets: resolv.conf pointing at
// wharf's resolver, and the CA certificate at both paths.
func (g *Gateway) Mounts() []specs.Mount {
	ro := []string{"rbind", "ro"}
	return []specs.Mount{
		{Destination: "/etc/resolv.conf", Type: "bind", Source: g.resolv, Options: ro},
		{Destination: ReferenceCAPath, Type: "bind", Source: g.ca.CertPath, Options: ro},
		{Destination: WharfCAPath, Type: "bind", Source: g.ca.CertPath, Options: ro},
	}
}

// CA is the gateway's certificate authority.
func (g *Gateway) CA() *CA { return g.ca }

// Attach starts applying policy to traffic from src.Addr.
func (g *Gateway) Attach(src egresspolicy.Source, policy *egresspolicy.Policy) error {
	a := &attachment{src: src, policy: policy, names: map[netip.Addr]string{}, refused: map[string]time.Time{}}
	if policy.Internet() {
		if changed, err := enableForwarding(); err != nil {
			return err
		} else if changed {
			g.log.Info("enabled net.ipv4.ip_forward for containers with internet")
		}
		if err := g.fw.allowForward(src.Addr, true); err != nil {
			return fmt.Errorf("nft: letting %s out: %w", src.Addr, err)
		}
		a.internet = true
	}
	g.mu.Lock()
	g.attached[src.Addr] = a
	g.mu.Unlock()
	return nil
}

// Detach stops traffic from addr and removes its firewall entry.
func (g *Gateway) Detach(addr netip.Addr) error {
	g.mu.Lock()
	a := g.attached[addr]
	delete(g.attached, addr)
	g.mu.Unlock()
	if a != nil && a.internet {
		if err := g.fw.allowForward(addr, false); err != nil {
			return fmt.Errorf("nft: no longer letting %s out (removing it from set %s of table %s): %w", addr, internetSet, g.fw.table.Name, err)
		}
	}
	return nil
}

func (g *Gateway) attachment(addr netip.Addr) *attachment {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.attached[addr.Unmap()]
}

// synthetic returns the synthetic address of name, allocating one.
func (g *Gateway) synthetic(name string) (netip.Addr, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ip, ok := g.synth[name]; ok {
		return ip, nil
	}
	if !g.nextIP.IsValid() {
		g.nextIP = ResolverAddr.Next() // .0.0 and .0.1 (the resolver) are skipped
	}
	ip := g.nextIP
	if !SyntheticRange.Contains(ip) {
		return netip.Addr{}, errors.New("no synthetic addresses left")
	}
	g.nextIP = ip.Next()
	g.synth[name], g.synthIP[ip] = ip, name
	return ip, nil
}

// nameOf is the name behind a destination address, as the container's DNS
// answers gave it, or "".
func (g *Gateway) nameOf(a *attachment, ip netip.Addr) string {
	g.mu.RLock()
	name, ok := g.synthIP[ip]
	g.mu.RUnlock()
	if ok {
		return name
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.names[ip]
}

// remember records that a DNS answer gave ip for name.
func (a *attachment) remember(ip netip.Addr, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.names) >= 4096 {
		clear(a.names)
	}
	a.names[ip] = name
}

// newRefusal reports whether a refused lookup of name at now is news: none
// was logged in the second before.
func (a *attachment) newRefusal(name string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.refused[name]; ok && now.Sub(last) < time.Second {
		return false
	}
	if len(a.refused) >= 4096 {
		clear(a.refused)
	}
	a.refused[name] = now
	return true
}

// Close removes the nft table and stops the resolver and proxy, closing
// every connection they hold.
//
// Only the first Close or CloseKeepingFirewall does anything; later ones
// return nil and remove nothing: the table, by then, is gone or kept on
// purpose, and one of the same name may be the next gateway's of the same
// scope.
func (g *Gateway) Close() error { return g.close(true) }

// CloseKeepingFirewall is Close for containers that run on after wharf:
// the nft table stays, so they still reach nothing of the host but the
// (now closed) proxy and resolver ports, as after a crash; the next
// gateway of the same scope replaces it.
func (g *Gateway) CloseKeepingFirewall() error { return g.close(false) }

func (g *Gateway) close(removeFirewall bool) (err error) {
	g.closing.Do(func() { err = g.closeOnce(removeFirewall) })
	return err
}

func (g *Gateway) closeOnce(removeFirewall bool) error {
	g.cancel()
	var errs []error
	if g.fw != nil && removeFirewall {
		errs = append(errs, g.fw.remove())
	}
	if g.proxyLn != nil {
		g.proxyLn.Close()
	}
	if g.http != nil {
		g.http.Close()
	}
	for _, s := range []*dns.Server{g.dnsUDP, g.dnsTCP} {
		if s != nil {
			s.Shutdown()
		}
	}
	g.wg.Wait()
	if g.upstream != nil {
		g.upstream.CloseIdleConnections()
	}
	return errors.Join(errs...)
}

// Ports are the proxy's and the resolver's listening ports.
func (g *Gateway) Ports() (proxy, resolver uint16) {
	return uint16(g.proxyLn.Addr().(*net.TCPAddr).Port), g.dnsPort()
}

// maxConnsTotal is the default Config.MaxConnsTotal: a quarter of the
// open-file limit (at least 64, at most what an int32 counts).
func maxConnsTotal() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return MaxConnsPerContainer
	}
	return int(max(min(lim.Cur/4, math.MaxInt32), 64))
}
