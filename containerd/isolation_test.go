package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/fakenet"
)

// TestContainerReachesNothingOfWharfOrHost sends UDP and ICMP from an
// internet-enabled container (with NET_RAW, so it can ping) to wharf's own
// ranges and to the host's addresses, and counts, with a table of the
// test's own placed after wharf's, every such packet the host accepted or
// forwarded: none. The same container still reaches the fake internet.
func TestContainerReachesNothingOfWharfOrHost(t *testing.T) {
	inet := fakenet.Start(t)
	m, image := testManager(t)
	policy := func(internet bool) *egresspolicy.Policy { p, _ := egresspolicy.New(internet, nil, nil); return p }
	spec := ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}, Capabilities: []string{"CAP_NET_RAW"}}
	open, err := m.Start(context.Background(), "Box", "open", spec, policy(true), 0)
	require.NoError(t, err)
	other, err := m.Start(context.Background(), "Box", "other", spec, policy(false), 0)
	require.NoError(t, err)
	count := countFrom(t, open.Endpoint.hostLink, inet.Addr)

	run := func(args ...string) (uint32, string) {
		code, out, errOut := execOut(t, open.Container, ExecSpec{Args: args})
		return code, out + errOut
	}
	unused := netip.MustParseAddr("10.209.255.253") // in wharf's range, no container's
	targets := map[string]netip.Addr{
		"an unused address of the container range": unused,
		"another container":                        other.Endpoint.ContainerIP,
		"another container's host end":             other.Endpoint.HostIP,
		"the container's own gateway":              open.Endpoint.HostIP,
		"a host address on another link":           inet.HostAddr,
		"the synthetic DNS range":                  netip.MustParseAddr("198.18.0.77"),
	}
	for what, ip := range targets {
		code, out := run("probe", "udp", ip.String()+":7", "hello")
		assert.NotEqual(t, uint32(0), code, "UDP to %s (%s): %s", what, ip, out)
		code, out = run("ping", "-c", "1", "-W", "1", ip.String())
		assert.NotEqual(t, uint32(0), code, "ICMP to %s (%s): %s", what, ip, out)
	}
	accepted, forwarded := count()
	assert.Zero(t, accepted, "UDP or ICMP packets the host accepted from the container")
	assert.Zero(t, forwarded, "packets the host forwarded to somewhere other than the fake internet")

	code, out := run("probe", "udp", inet.Addr.String()+":7", "over udp")
	assert.Equal(t, uint32(0), code, out)
	assert.Equal(t, "echo: over udp\n", out, "the internet is still reachable")
	code, out = run("ping", "-c", "1", "-W", "2", inet.Addr.String())
	assert.Equal(t, uint32(0), code, "ICMP to the internet: %s", out)
}

// TestProxyAndResolverListenForContainersOnly reaches for the egress proxy
// and resolver at the host's other addresses: they are not there, while
// containers use both.
func TestProxyAndResolverListenForContainersOnly(t *testing.T) {
	inet := fakenet.Start(t)
	m, image := testManager(t)
	proxy, resolver := m.Gateway().Ports()
	for _, ip := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), inet.HostAddr} {
		_, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, proxy).String(), time.Second)
		assert.ErrorIs(t, err, unix.ECONNREFUSED, "the proxy at %s", ip)
		_, err = net.DialTimeout("tcp", netip.AddrPortFrom(ip, resolver).String(), time.Second)
		assert.ErrorIs(t, err, unix.ECONNREFUSED, "the resolver (TCP) at %s", ip)
		q := new(dns.Msg).SetQuestion("example.test.", dns.TypeA)
		_, _, err = (&dns.Client{Timeout: 500 * time.Millisecond}).Exchange(q, netip.AddrPortFrom(ip, resolver).String())
		assert.Error(t, err, "the resolver (UDP) at %s", ip)
	}
	p, _ := egresspolicy.New(false, nil, nil)
	require.NoError(t, p.InterceptHTTP("api.test", "h"))
	mc, err := m.Start(context.Background(), "Box", "a", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, p, 0)
	require.NoError(t, err)
	// Each container link carries the listen address: it stays when
	// another link goes.
	gone, err := m.Start(context.Background(), "Box", "b", ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}, p, 0)
	require.NoError(t, err)
	_, out, _ := execOut(t, gone.Container, ExecSpec{Args: []string{"probe", "resolve", "api.test"}})
	assert.Contains(t, out, "198.18.")
	require.NoError(t, m.Destroy(context.Background(), "Box", "b"))
	code, out, errOut := execOut(t, mc.Container, ExecSpec{Args: []string{"probe", "resolve", "api.test"}})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Contains(t, out, "198.18.", "the resolver answers the container")
	code, out, _ = execOut(t, mc.Container, ExecSpec{Args: []string{"probe", "get", "http://" + inet.Addr.String() + "/"}})
	assert.Equal(t, uint32(0), code)
	assert.Contains(t, out, "status=403", "the proxy answers the container")
}

// countFrom installs a table of the test's own that, after wharf's table
// has decided, counts the UDP and ICMP packets from link the host accepts
// for itself and counts and drops every packet from link it would forward
// anywhere but to allowed. It returns a function reading the two counts;
// the table is removed at cleanup.
func countFrom(t *testing.T, link string, allowed netip.Addr) func() (accepted, forwarded uint64) {
	c, err := nftables.New()
	require.NoError(t, err)
	var tag [3]byte
	rand.Read(tag[:])
	table := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "wharftest-" + hex.EncodeToString(tag[:])})
	t.Cleanup(func() {
		c.DelTable(table)
		assert.NoError(t, c.Flush())
	})
	late := nftables.ChainPriority(100) // after wharf's filter chains
	input := c.AddChain(&nftables.Chain{Name: "input", Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: &late})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: &late})
	fromLink := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(link + "\x00")},
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: append(fromLink,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Counter{})})
	c.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: append(fromLink,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: allowed.AsSlice()},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop})}) // nothing leaves the machine, even on failure
	require.NoError(t, c.Flush())
	packets := func(ch *nftables.Chain) uint64 {
		rules, err := c.GetRules(table, ch)
		require.NoError(t, err)
		for _, r := range rules {
			for _, e := range r.Exprs {
				if n, ok := e.(*expr.Counter); ok {
					return n.Packets
				}
			}
		}
		t.Fatal("no counter in chain " + ch.Name)
		return 0
	}
	return func() (uint64, uint64) { return packets(input), packets(fwd) }
}
