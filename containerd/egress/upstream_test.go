package egress

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpstreamAddrs: a DNS server is an IP with a port, or a bare IP that
// gets port 53; anything else is refused, where it used to be taken as it
// was and make every lookup of a permitted name fail without a word.
func TestUpstreamAddrs(t *testing.T) {
	got, err := UpstreamAddrs([]string{"127.0.0.53", "127.0.0.1:5353", "::1", "[::1]:53"})
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.53:53", "127.0.0.1:5353", "[::1]:53", "[::1]:53"}, got)
	for in, want := range map[string]string{
		"notanip":           `DNS server "notanip" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
		"dns.google:53":     `DNS server "dns.google:53" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
		"127.0.0.1:":        `DNS server "127.0.0.1:" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
		"127.0.0.1:9999999": `DNS server "127.0.0.1:9999999" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
		"fe80::1%eth0":      `DNS server "fe80::1%eth0" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
		"127.0.0.1:0":       `DNS server "127.0.0.1:0": port 0 is no server's`,
		"":                  `DNS server "" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`,
	} {
		_, err := UpstreamAddrs([]string{"127.0.0.53", in})
		assert.EqualError(t, err, want, in)
	}
}
