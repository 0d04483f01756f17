// Package fakenet runs a stand-in for the internet in a network namespace
// a test creates: HTTP, HTTPS, TCP and UDP echo and DNS servers at one
// address behind a veth pair, so egress tests never send a packet to any
// real address. Everything is removed when the test ends.
package fakenet

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wharfhq/wharf/containerd/egress"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wharfhq/wharf/internal/testnet"
)

// Domain is the zone the fake internet's DNS answers: every name in it
// resolves to the fake internet's address.
const Domain = "inet.test"

// Internet is a running fake internet.
type Internet struct {
	// Addr is the servers' address; HostAddr is the host's end of the link.
	Addr, HostAddr netip.Addr
	// DNS is the resolver's "ip:port".
	DNS string
	// CACertPEM is the certificate HTTPS clients must trust.
	CACertPEM []byte
	hits      atomic.Int64
	// name names its namespace and the host's end of its link.
	name string
}

// Hits is how many HTTP(S) requests reached the fake internet.
func (in *Internet) Hits() int64 { return in.hits.Load() }

// Name is a host name in Domain.
func Name(label string) string { return label + "." + Domain }

// Start creates the namespace, its link to the host and its servers.
// It needs root.
func Start(t testing.TB) *Internet {
	name := testnet.Name("fn") // the host's end of the link has the same name
	hostAddr, addr := freeSubnet(t)
	in := &Internet{Addr: addr, HostAddr: hostAddr, DNS: net.JoinHostPort(addr.String(), "53"), name: name}

	ns := testnet.InNamespace(t, name, func() {})
	t.Cleanup(func() {
		ns.Close()
		netns.DeleteNamed(name)
	})
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	require.NoError(t, netlink.LinkAdd(veth))
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	host, err := netlink.LinkByName(name)
	require.NoError(t, err)
	require.NoError(t, netlink.AddrAdd(host, &netlink.Addr{IPNet: ipNet(hostAddr)}))
	require.NoError(t, netlink.LinkSetUp(host))
	peer, err := netlink.LinkByName(name + "p")
	require.NoError(t, err)
	require.NoError(t, netlink.LinkSetNsFd(peer, int(ns)))
	h, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	defer h.Close()
	inner, err := h.LinkByName(name + "p")
	require.NoError(t, err)
	require.NoError(t, h.AddrAdd(inner, &netlink.Addr{IPNet: ipNet(addr)}))
	require.NoError(t, h.LinkSetUp(inner))
	lo, _ := h.LinkByName("lo")
	h.LinkSetUp(lo)
	// Replies to masqueraded traffic go back to the host's end.
	require.NoError(t, h.RouteAdd(&netlink.Route{LinkIndex: inner.Attrs().Index, Gw: net.IP(hostAddr.AsSlice())}))

	in.serve(t, name)
	return in
}

// AlsoAt has the fake internet's servers answer at a as well, routed from
// the host through its link, as a cloud's metadata server answers at a
// link-local address (169.254.169.254). a must be an address the host has
// no route of its own to; address and route go when the test ends.
func (in *Internet) AlsoAt(t testing.TB, a netip.Addr) {
	ns, err := netns.GetFromName(in.name)
	require.NoError(t, err)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	require.NoError(t, err)
	defer h.Close()
	inner, err := h.LinkByName(in.name + "p")
	require.NoError(t, err)
	single := &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}
	require.NoError(t, h.AddrAdd(inner, &netlink.Addr{IPNet: single}))
	host, err := netlink.LinkByName(in.name)
	require.NoError(t, err)
	route := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: single, Gw: net.IP(in.Addr.AsSlice())}
	require.NoError(t, netlink.RouteAdd(route), "a route to %s on the host", a)
	t.Cleanup(func() { netlink.RouteDel(route) })
}

func ipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(30, 32)}
}

// freeSubnet picks a /30 in 10.210.0.0/16 no link on the host uses.
func freeSubnet(t testing.TB) (host, inside netip.Addr) {
	used := map[byte]bool{}
	addrs, _ := netlink.AddrList(nil, netlink.FAMILY_V4)
	for _, a := range addrs {
		if ip := a.IP.To4(); ip[0] == 10 && ip[1] == 210 {
			used[ip[2]] = true
		}
	}
	var b [1]byte
	for range 1000 {
		rand.Read(b[:])
		if b[0] > 0 && b[0] < 255 && !used[b[0]] {
			return netip.AddrFrom4([4]byte{10, 210, b[0], 1}), netip.AddrFrom4([4]byte{10, 210, b[0], 2})
		}
	}
	t.Fatal("no free /30 in 10.210.0.0/16")
	return
}

// serve starts the servers inside the namespace.
func (in *Internet) serve(t testing.TB, name string) {
	var httpLn, tlsLn, tcpEcho net.Listener
	var udpEcho, dnsPC net.PacketConn
	var dnsTCP net.Listener
	var err error
	listen := func() {
		if httpLn, err = net.Listen("tcp4", ":80"); err != nil {
			return
		}
		if tlsLn, err = net.Listen("tcp4", ":443"); err != nil {
			return
		}
		if tcpEcho, err = net.Listen("tcp4", ":7"); err != nil {
			return
		}
		if udpEcho, err = net.ListenPacket("udp4", ":7"); err != nil {
			return
		}
		if dnsPC, err = net.ListenPacket("udp4", ":53"); err != nil {
			return
		}
		dnsTCP, err = net.Listen("tcp4", ":53")
	}
	ns := testnet.InNamespace(t, name, listen)
	ns.Close()
	require.NoError(t, err)

	web := httptest.NewUnstartedServer(http.HandlerFunc(in.handle))
	web.Listener.Close()
	web.Listener = httpLn
	web.Start()
	t.Cleanup(web.Close)
	secure := httptest.NewUnstartedServer(http.HandlerFunc(in.handle))
	secure.Listener.Close()
	secure.Listener = tlsLn
	ca, err := egress.LoadCA(t.TempDir()) // any CA will do; this one is at hand
	require.NoError(t, err)
	leaf, err := ca.Leaf("*." + Domain)
	require.NoError(t, err)
	secure.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	secure.StartTLS()
	t.Cleanup(secure.Close)
	in.CACertPEM = ca.CertPEM

	go echoTCP(tcpEcho)
	go echoUDP(udpEcho)
	t.Cleanup(func() { tcpEcho.Close(); udpEcho.Close() })

	addr := in.Addr
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		qn := strings.ToLower(q.Question[0].Name)
		switch {
		case !strings.HasSuffix(qn, Domain+"."):
			m.Rcode = dns.RcodeNameError
		case q.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: addr.AsSlice()})
		}
		w.WriteMsg(m)
	})
	for _, s := range []*dns.Server{{PacketConn: dnsPC, Handler: handler}, {Listener: dnsTCP, Handler: handler}} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
}

// handle answers every HTTP(S) request: "hello from the internet", the
// X-Secret it received echoed as X-Seen-Secret, or /bytes?n= zeros.
func (in *Internet) handle(w http.ResponseWriter, r *http.Request) {
	in.hits.Add(1)
	w.Header().Set("X-Seen-Secret", r.Header.Get("X-Secret"))
	if n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64); err == nil && r.URL.Path == "/bytes" {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.CopyN(w, zeros{}, n)
		return
	}
	fmt.Fprintf(w, "hello from the internet: %s %s", r.Host, r.URL.Path)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func echoTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, _ := bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "echo: "+line)
		}()
	}
}

func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(append([]byte("echo: "), buf[:n]...), from)
	}
}

// Get makes an HTTP request to the fake internet from the host, as a
// baseline.
func (in *Internet) Get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+in.Addr.String()+path, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

// Client is an HTTP client that resolves names with the fake internet's
// DNS, never the host's: what a host's outbound fetches use in a test.
func (in *Internet) Client() *http.Client {
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, in.DNS)
	}}
	dialer := &net.Dialer{Resolver: resolver}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
}
