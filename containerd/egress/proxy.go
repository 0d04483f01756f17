package egress

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// MaxConnsPerContainer is how many connections one container may have
// open through the proxy at once: each costs wharf a descriptor (two once
// dialled out), and a client that never finishes its request keeps one a
// minute (ReadHeaderTimeout), so one container could otherwise use up
// wharf's descriptors and fail every other container's and object's.
const MaxConnsPerContainer = 1024

// peekWait bounds how long the proxy waits for a new connection's first
// bytes to tell HTTP and TLS from other protocols. A protocol where the
// server speaks first (SSH, SMTP) is passed on after this wait.
const peekWait = 300 * time.Millisecond

// clientFirstWait is peekWait for a connection that could not go out as
// other TCP (no internet, and its name is not allowed): only HTTP or TLS
// can be served there, whose clients speak first, so a slow client (in a
// container short of CPU) gets its time instead of being refused.
const clientFirstWait = 10 * time.Second

// connMeta is what the proxy knows about one intercepted connection.
type connMeta struct {
	from *attachment
	dst  netip.AddrPort // the original destination
	// resolved is the name the container's own DNS answer gave for dst
	// (or "" ): the only name that can let traffic out by allowedHosts,
	// since a Host header or an SNI is whatever the client says.
	resolved string
	sni      string // the TLS ClientHello's server name, or ""
	tls      bool   // TLS terminated by the proxy
}

// normName lower-cases a host name and drops a trailing dot.
func normName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// tlsName is the name a TLS connection is for: its SNI, else the name
// behind its address.
func (m *connMeta) tlsName() string {
	if m.sni != "" {
		return m.sni
	}
	return m.resolved
}

// denied reports whether any name the connection or request goes by is on
// the deny list.
func (m *connMeta) denied(names ...string) (string, bool) {
	for _, n := range append(names, m.resolved, m.sni) {
		if n != "" && m.from.policy.Denies(n) {
			return n, true
		}
	}
	return "", false
}

// permitted reports whether the connection may go out to its destination:
// with internet, or when the name its address was resolved from is allowed.
func (m *connMeta) permitted() bool { return m.from.policy.Permits(m.resolved) }

type metaKey struct{}

func (g *Gateway) startProxy() error {
	ln, err := listenConfig.Listen(context.Background(), "tcp4", net.JoinHostPort(g.cfg.ListenAddr.String(), "0"))
	if err != nil {
		return err
	}
	g.proxyLn = ln.(*net.TCPListener)
	g.upstream = &http.Transport{
		DialContext:         g.dialUpstream,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	forward := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			m := pr.In.Context().Value(metaKey{}).(*connMeta)
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", m.dst.String()
			switch { // the dial goes to dst (or the name behind a synthetic address) either way
			case m.tls: // the name the certificate must be for
				pr.Out.URL.Scheme, pr.Out.URL.Host = "https", net.JoinHostPort(m.tlsName(), strconv.Itoa(int(m.dst.Port())))
			case SyntheticRange.Contains(m.dst.Addr()):
				pr.Out.URL.Host = net.JoinHostPort(m.resolved, strconv.Itoa(int(m.dst.Port())))
			}
			pr.Out.Host = pr.In.Host
		},
		Transport:     g.upstream,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "wharf egress: upstream "+r.Host+": "+err.Error(), http.StatusBadGateway)
		},
	}
	g.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serveHTTP(w, r, forward) }),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			m, _ := g.meta.Load(c)
			return context.WithValue(ctx, metaKey{}, m)
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				g.meta.Delete(c)
			}
		},
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.http.Serve(chanListener{g})
	}()
	go func() {
		defer g.wg.Done()
		for {
			c, err := g.proxyLn.AcceptTCP()
			if err != nil {
				return
			}
			go g.handle(c)
		}
	}()
	return nil
}

// chanListener hands the HTTP server the connections the proxy decided are
// HTTP (or TLS it terminated).
type chanListener struct{ g *Gateway }

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.g.httpConn:
		return c, nil
	case <-l.g.ctx.Done():
		return nil, net.ErrClosed
	}
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.g.proxyLn.Addr() }

// serveHTTP passes one HTTP request from a container on its way: the policy
// is read per request, so a rule changed while a keep-alive connection is
// open applies to its next request.
func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request, forward http.Handler) {
	m := r.Context().Value(metaKey{}).(*connMeta)
	p := m.from.policy
	host := normName(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil {
		host = "" // an address says nothing about the name
	}
	var handler string
	var claimed bool
	if m.tls {
		handler, claimed = p.HTTPSHandler(cmp.Or(host, m.tlsName()))
	} else {
		handler, claimed = p.HTTPHandler(cmp.Or(host, m.resolved), m.dst)
	}
	denied, isDenied := m.denied(host)
	switch {
	case isDenied:
		g.refuse(m, denied, "it is in deniedHosts")
		http.Error(w, "wharf egress: "+denied+" is in deniedHosts", http.StatusForbidden)
	case claimed:
		r.URL.Scheme, r.URL.Host = "http", r.Host
		if m.tls {
			r.URL.Scheme = "https"
		}
		g.cfg.Interceptor.ServeOutbound(w, r, m.from.src, handler)
	case m.permitted():
		forward.ServeHTTP(w, r)
	default:
		to := describe(m, cmp.Or(host, m.resolved))
		g.refuse(m, to, "enableInternet is false and it is not in allowedHosts")
		http.Error(w, "wharf egress: "+to+" is not allowed: enableInternet is false and it is not in allowedHosts", http.StatusForbidden)
	}
}

func describe(m *connMeta, host string) string {
	if host != "" {
		return host
	}
	return m.dst.String()
}

func (g *Gateway) refuse(m *connMeta, host, why string) {
	g.log.Info("egress refused", "class", m.from.src.Class, "object", m.from.src.Object, "to", describe(m, host), "dst", m.dst.String(), "why", why)
}

// handle sorts a new connection into TLS, HTTP and anything else.
func (g *Gateway) handle(c *net.TCPConn) {
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	a := g.attachment(src.Addr())
	dst, err := originalDst(c)
	if a == nil || err != nil {
		c.Close() // not a container of ours
		return
	}
	if limit := int32(cmp.Or(g.cfg.MaxConns, MaxConnsPerContainer)); !a.conns.take(limit) {
		c.Close()
		if a.conns.firstRefusal() {
			g.log.Warn("egress refused", "class", a.src.Class, "object", a.src.Object, "why", fmt.Sprintf("the container has %d connections open through wharf, the limit", limit))
		}
		return
	}
	if !g.conns.take(g.maxConns) {
		a.conns.give()
		c.Close()
		if g.conns.firstRefusal() {
			g.log.Warn("egress refused", "class", a.src.Class, "object", a.src.Object, "why",
				fmt.Sprintf("wharf has %d connections of containers open through its egress proxy, the limit for all containers (a quarter of its open-file limit)", g.maxConns))
		}
		return
	}
	m := &connMeta{from: a, dst: dst, resolved: g.nameOf(a, dst.Addr())}
	br := bufio.NewReader(c)
	wait := peekWait
	if !m.permitted() {
		wait = clientFirstWait
	}
	c.SetReadDeadline(time.Now().Add(wait))
	first, err := br.Peek(1)
	if err == nil && first[0] != 0x16 {
		br.Peek(8) // a method and its space; a short request line ends at the deadline
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{TCPConn: c, r: br, counts: []*connCount{&a.conns, &g.conns}}
	switch {
	case err == nil && first[0] == 0x16:
		g.handleTLS(pc, m)
	case err == nil && looksLikeHTTP(br):
		g.serveConn(pc, m)
	default:
		g.handleOpaque(pc, m)
	}
}

// serveConn gives a connection to the HTTP server.
func (g *Gateway) serveConn(c net.Conn, m *connMeta) {
	g.meta.Store(c, m)
	select {
	case g.httpConn <- c:
	case <-g.ctx.Done():
		g.meta.Delete(c)
		c.Close()
	}
}

var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

func looksLikeHTTP(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	method, _, ok := bytes.Cut(b, []byte(" "))
	if !ok {
		return false
	}
	for _, m := range methods {
		if string(method) == m {
			return true
		}
	}
	return false
}

// handleTLS reads the ClientHello for its name, then terminates the
// connection if a rule intercepts that name, passes it through unchanged
// if the policy lets it out, or closes it.
func (g *Gateway) handleTLS(c *peekedConn, m *connMeta) {
	hello, replay := readClientHello(c)
	rc := &replayConn{peekedConn: c, r: io.MultiReader(bytes.NewReader(replay), c.r)}
	if hello == nil {
		g.handleOpaque(rc, m)
		return
	}
	m.sni = normName(hello.ServerName)
	name := m.tlsName()
	_, claimed := m.from.policy.HTTPSHandler(name)
	denied, isDenied := m.denied()
	switch {
	case isDenied:
		g.refuse(m, denied, "it is in deniedHosts")
		c.Close()
	case claimed:
		m.tls = true
		cfg := &tls.Config{NextProtos: []string{"http/1.1"}, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return g.ca.Leaf(name)
		}}
		g.serveConn(tls.Server(rc, cfg), m)
	case m.permitted():
		g.splice(rc, m)
	default:
		g.refuse(m, name, "enableInternet is false and it is not in allowedHosts")
		c.Close()
	}
}

// handleOpaque passes a connection that is neither HTTP nor TLS through if
// the policy lets its destination out.
func (g *Gateway) handleOpaque(c net.Conn, m *connMeta) {
	denied, isDenied := m.denied()
	switch {
	case isDenied:
		g.refuse(m, denied, "it is in deniedHosts")
		c.Close()
	case m.permitted():
		g.splice(c, m)
	default:
		g.refuse(m, m.resolved, "enableInternet is false and it is not in allowedHosts")
		c.Close()
	}
}

// splice connects c to its original destination and copies both ways.
func (g *Gateway) splice(c net.Conn, m *connMeta) {
	ctx, cancel := context.WithTimeout(context.WithValue(g.ctx, metaKey{}, m), 10*time.Second)
	up, err := g.dialUpstream(ctx, "tcp", m.dst.String())
	cancel()
	if err != nil {
		g.log.Info("egress dial failed", "class", m.from.src.Class, "object", m.from.src.Object, "to", describe(m, m.resolved), "err", err)
		c.Close()
		return
	}
	stop := context.AfterFunc(g.ctx, func() { c.Close(); up.Close() })
	defer stop()
	// A direction that ends cleanly half-closes the other side; one that
	// fails closes both, so neither copy can outlive the other's error.
	pipe := func(dst, src net.Conn, r io.Reader) {
		if _, err := io.Copy(dst, r); err != nil {
			c.Close()
			up.Close()
			return
		}
		closeWrite(dst)
	}
	done := make(chan struct{})
	go func() {
		pipe(up, c, onlyReader{c}) // not c's WriteTo, which would skip bytes already peeked
		close(done)
	}()
	pipe(c, up, up)
	<-done
	c.Close()
	up.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// dialUpstream dials a container's original destination from the host; a
// synthetic address is dialled by its name. Loopback, the synthetic range
// and internal addresses are never dialled.
func (g *Gateway) dialUpstream(ctx context.Context, network, _ string) (net.Conn, error) {
	m := ctx.Value(metaKey{}).(*connMeta)
	dst := m.dst
	if SyntheticRange.Contains(dst.Addr()) {
		ips, err := g.resolver.LookupNetIP(ctx, "ip4", m.resolved)
		if err != nil {
			return nil, err
		}
		dst = netip.AddrPortFrom(ips[0], dst.Port())
	}
	if err := g.checkDial(dst.Addr()); err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, dst.String())
}

func (g *Gateway) checkDial(ip netip.Addr) error {
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || SyntheticRange.Contains(ip) || hostAddress(ip) {
		return fmt.Errorf("%s is not an outside address", ip)
	}
	for _, p := range g.cfg.Internal {
		if p.Contains(ip) {
			return fmt.Errorf("%s is a wharf-internal address", ip)
		}
	}
	return nil
}

// originalDst is the destination a redirected connection was sent to.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := raw.Control(func(fd uintptr) {
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, serr
	}
	// A struct sockaddr_in: family, port (big-endian), address.
	b := mreq.Multiaddr
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
}

// onlyReader hides everything but Read.
type onlyReader struct{ io.Reader }

// peekedConn is a connection whose first bytes sit in a bufio.Reader.
type peekedConn struct {
	*net.TCPConn
	r *bufio.Reader
	// counts are its container's count of connections and the proxy's,
	// which it is among until it is closed (closed tells the first Close).
	counts []*connCount
	closed atomic.Bool
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close closes the connection and counts it off its container's and the
// proxy's.
func (c *peekedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		for _, n := range c.counts {
			n.give()
		}
	}
	return c.TCPConn.Close()
}

// connCount counts connections open through the proxy against a limit;
// a refusal is logged once while the count stays above half the limit.
type connCount struct {
	n    atomic.Int32
	said atomic.Bool // a refusal was logged
}

// take counts one more connection if that keeps within limit.
func (c *connCount) take(limit int32) bool {
	if c.n.Add(1) > limit {
		c.n.Add(-1)
		return false
	}
	if c.n.Load() <= limit/2 {
		c.said.Store(false)
	}
	return true
}

// give counts one connection off.
func (c *connCount) give() { c.n.Add(-1) }

// firstRefusal tells whether a refusal is the first since the count was
// last at half its limit or below (the one to log).
func (c *connCount) firstRefusal() bool { return c.said.CompareAndSwap(false, true) }

// replayConn reads the bytes a ClientHello parse consumed, then the rest.
type replayConn struct {
	*peekedConn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var errHelloRead = errors.New("hello read")

// readClientHello parses a TLS ClientHello from c with crypto/tls itself,
// recording the bytes it reads so they can be replayed to whichever side
// gets the connection. It returns nil if c does not start with one.
func readClientHello(c *peekedConn) (*tls.ClientHelloInfo, []byte) {
	var rec bytes.Buffer
	var hello *tls.ClientHelloInfo
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	tls.Server(readOnlyConn{r: io.TeeReader(c.r, &rec)}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = &tls.ClientHelloInfo{ServerName: h.ServerName}
			return nil, errHelloRead
		},
	}).Handshake()
	return hello, rec.Bytes()
}

// readOnlyConn lets crypto/tls read a ClientHello; it never gets to write.
type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c readOnlyConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (readOnlyConn) Write(p []byte) (int, error)      { return 0, io.ErrClosedPipe }
func (readOnlyConn) Close() error                     { return nil }
func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
func (readOnlyConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (readOnlyConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// hostAddress reports whether ip is one of the host's own addresses (its
// services are not the internet).
func hostAddress(ip netip.Addr) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if h, ok := netip.AddrFromSlice(n.IP); ok && h.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
