package containerd

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
)

// TestAnAddressAnotherWharfTookIsNotShared: two wharfs on one host that
// reserve the same /30 would route to each other's containers. Here
// another wharf puts the address on its link after this one reserved it;
// creating the endpoint notices, and claim moves to the next /30.
func TestAnAddressAnotherWharfTookIsNotShared(t *testing.T) {
	n := NewNetwork(netip.MustParsePrefix("10.213.0.0/24"), t.Name())
	ep, err := n.reserve("taken")
	require.NoError(t, err)
	other := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wharftestother"}, PeerName: "wharftestotherp"}
	require.NoError(t, netlink.LinkAdd(other))
	defer netlink.LinkDel(other)
	require.NoError(t, netlink.AddrAdd(other, &netlink.Addr{IPNet: &net.IPNet{IP: ep.HostIP.AsSlice(), Mask: net.CIDRMask(30, 32)}}))

	taken := ep.HostIP
	var moved []netip.Addr
	ep, err = n.claim("taken", ep, func(next *Endpoint) error { moved = append(moved, next.HostIP); return nil })
	require.NoError(t, err)
	assert.NotEqual(t, taken, ep.HostIP, "a free /30, not the other wharf's")
	assert.Equal(t, []netip.Addr{ep.HostIP}, moved, "the caller heard of the new reservation")
	assert.Len(t, NetworkLeftovers(t.Name()), 2, "one namespace and one link: the first attempt left nothing")
	require.NoError(t, ep.Teardown())
	assert.Empty(t, NetworkLeftovers(t.Name()))
}
