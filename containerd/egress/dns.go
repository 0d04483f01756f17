package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// syntheticTTL keeps answers for intercepted names short, so a rule
// removed is noticed soon.
const syntheticTTL = 5

// startResolver listens for DNS on one port, UDP and TCP, at the listen
// address (where the firewall sends containers' queries).
func (g *Gateway) startResolver() error {
	var pc net.PacketConn
	var ln net.Listener
	for range 20 { // the same free port for both protocols
		u, err := listenConfig.ListenPacket(context.Background(), "udp4", net.JoinHostPort(g.cfg.ListenAddr.String(), "0"))
		if err != nil {
			return err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := listenConfig.Listen(context.Background(), "tcp4", net.JoinHostPort(g.cfg.ListenAddr.String(), strconv.Itoa(port)))
		if err != nil {
			u.Close()
			continue
		}
		pc, ln = u, t
		break
	}
	if pc == nil {
		return errDNSPort
	}
	g.dnsUDP = &dns.Server{PacketConn: pc, Handler: g}
	g.dnsTCP = &dns.Server{Listener: ln, Handler: g}
	for _, s := range []*dns.Server{g.dnsUDP, g.dnsTCP} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			s.ActivateAndServe()
		}()
		<-started
	}
	g.resolver = &net.Resolver{PreferGo: true, Dial: g.dialUpstreamDNS}
	return nil
}

var errDNSPort = &net.AddrError{Err: "no port free for both UDP and TCP", Addr: "resolver"}

func (g *Gateway) dnsPort() uint16 {
	return uint16(g.dnsUDP.PacketConn.LocalAddr().(*net.UDPAddr).Port)
}

// UpstreamAddrs checks DNS servers given as "ip:port" or a bare IP (port
// 53), and returns them as "ip:port". A host name, a missing IP or port 0
// is an error: such a server cannot be dialled, and every name the
// containers may reach would fail to resolve, with nothing said.
func UpstreamAddrs(servers []string) ([]string, error) {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			ip, ipErr := netip.ParseAddr(s)
			if ipErr != nil || ip.Zone() != "" {
				return nil, fmt.Errorf("DNS server %q is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)", s)
			}
			ap = netip.AddrPortFrom(ip, 53)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("DNS server %q: port 0 is no server's", s)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// dialUpstreamDNS sends the host-side resolver's queries to the upstream
// servers.
func (g *Gateway) dialUpstreamDNS(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	var err error
	for _, s := range g.cfg.Upstream {
		var c net.Conn
		if c, err = d.DialContext(ctx, network, s); err == nil {
			return c, nil
		}
	}
	if err == nil {
		err = &net.DNSError{Err: "no upstream DNS server configured", IsNotFound: true}
	}
	return nil, err
}

// ServeDNS answers a container's query by its policy: a denied name does
// not exist; a name a rule claims gets a synthetic address; a permitted
// name is resolved upstream; with a catch-all rule any other name gets a
// synthetic address; anything else does not exist.
func (g *Gateway) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	src, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	a := g.attachment(src.Addr())
	switch {
	case a == nil:
		m.Rcode = dns.RcodeRefused
	case len(q.Question) != 1:
		m.Rcode = dns.RcodeFormatError
	default:
		g.answer(a, q, m, w.RemoteAddr().Network())
	}
	w.WriteMsg(m)
}

func (g *Gateway) answer(a *attachment, q *dns.Msg, m *dns.Msg, network string) {
	question := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	p := a.policy
	switch {
	case p.Denies(name):
		g.refuseLookup(a, name, "it is in deniedHosts")
		m.Rcode = dns.RcodeNameError
	case p.ClaimsName(name):
		g.answerSynthetic(m, question, name)
	case p.Permits(name):
		if g.forward(a, q, m, name, network) {
			return
		}
		if p.ClaimsAll() {
			g.answerSynthetic(m, question, name)
			return
		}
		m.Rcode = dns.RcodeServerFailure
	case p.ClaimsAll():
		g.answerSynthetic(m, question, name)
	default:
		g.refuseLookup(a, name, "enableInternet is false and it is not in allowedHosts")
		m.Rcode = dns.RcodeNameError
	}
}

// refuseLookup logs that a's lookup of name was refused, once a second at
// most: a resolver asks for A and AAAA at once, and asks again.
func (g *Gateway) refuseLookup(a *attachment, name, why string) {
	if a.newRefusal(name, time.Now()) {
		g.log.Info("egress refused", "class", a.src.Class, "object", a.src.Object, "to", name, "why", why+" (DNS)")
	}
}

// answerSynthetic answers A with name's synthetic address and any other
// type with no records.
func (g *Gateway) answerSynthetic(m *dns.Msg, q dns.Question, name string) {
	if q.Qtype != dns.TypeA {
		return
	}
	ip, err := g.synthetic(name)
	if err != nil {
		m.Rcode = dns.RcodeServerFailure
		return
	}
	m.Answer = append(m.Answer, &dns.A{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: syntheticTTL},
		A:   ip.AsSlice(),
	})
}

// forward asks the upstream servers over the protocol the query came by
// (and TCP again for an answer truncated over UDP), copies their answer
// into m and remembers the addresses for the proxy. It reports whether one
// answered.
func (g *Gateway) forward(a *attachment, q *dns.Msg, m *dns.Msg, name, network string) bool {
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	for _, s := range g.cfg.Upstream {
		r, _, err := c.ExchangeContext(g.ctx, q, s)
		if err == nil && r.Truncated && network == "udp" {
			r, _, err = (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).ExchangeContext(g.ctx, q, s)
		}
		if err != nil {
			continue
		}
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(v.A.To4()); ok {
					a.remember(ip, name)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(v.AAAA); ok {
					a.remember(ip, name)
				}
			}
		}
		r.Id = q.Id
		*m = *r
		return true
	}
	return false
}
