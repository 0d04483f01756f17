package egress

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/testnet"
)

// TestFirewallGoneErrorsSayWhat: when wharf's nft table was removed behind
// its back (`nft flush ruleset`, a firewall service reloading its rules),
// detaching a container with internet and closing the gateway fail saying
// what they were removing, and from which table, not with nftables' words
// alone. In a network namespace of the test's own.
func TestFirewallGoneErrorsSayWhat(t *testing.T) {
	name := testnet.Name("wegr")
	dir := t.TempDir()
	policy, err := egresspolicy.New(true, nil, nil)
	require.NoError(t, err)
	ctr := netip.MustParseAddr("10.250.0.2")
	var startErr, attachErr, delErr, detachErr, closeErr error
	ns := testnet.InNamespace(t, name, func() {
		g, err := Start(Config{Dir: dir, Scope: "t1", LinkPrefix: "wht1", ListenAddr: netip.MustParseAddr("10.250.0.1"),
			Upstream: []string{"127.0.0.1:53"}})
		if startErr = err; err != nil {
			return
		}
		attachErr = g.Attach(egresspolicy.Source{Addr: ctr}, policy)
		c, err := nftables.New()
		if delErr = err; err == nil {
			c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "wharf-t1"})
			delErr = c.Flush()
		}
		detachErr = g.Detach(ctr)
		closeErr = g.Close()
	})
	t.Cleanup(func() {
		ns.Close()
		netns.DeleteNamed(name)
	})
	require.NoError(t, startErr)
	require.NoError(t, attachErr)
	require.NoError(t, delErr, "removing the table as an operator would")
	assert.EqualError(t, detachErr, "nft: no longer letting 10.250.0.2 out (removing it from set internet of table wharf-t1): conn.Receive: netlink receive: no such file or directory")
	assert.EqualError(t, closeErr, "removing the nft table wharf-t1: conn.Receive: netlink receive: no such file or directory")
}
