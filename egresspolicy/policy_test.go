package egresspolicy

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTargets(t *testing.T) {
	for in, want := range map[string]string{
		"API.Example.com.":   "api.example.com",
		"*.example.com":      "*.example.com",
		"15.0.0.1":           "15.0.0.1",
		"15.0.0.1:80":        "15.0.0.1:80",
		"123.123.123.123/23": "123.123.122.0/23",
		"2001:db8::/32":      "2001:db8::/32",
		"[2001:db8::1]:443":  "[2001:db8::1]:443",
	} {
		tg, err := ParseHTTPTarget(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, tg.String(), in)
	}
	for _, bad := range []string{"", "a b", "http://x", "1.2.3.4:0", "x/y", "a..b", ".x", "*..x"} {
		_, err := ParseHTTPTarget(bad)
		assert.ErrorIs(t, err, ErrInvalidTarget, bad)
	}
	_, err := ParseHTTPSTarget("10.0.0.0/8")
	assert.ErrorContains(t, err, "HTTPS is matched by name")
	tg, err := ParseHTTPSTarget("*")
	require.NoError(t, err)
	assert.True(t, tg.matchesHost("anything.at.all"))
}

func TestPolicyMatching(t *testing.T) {
	p, err := New(false, []string{"*.stripe.com"}, []string{"*.evil.com"})
	require.NoError(t, err)
	dst := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	require.NoError(t, p.InterceptHTTP("api.example.com", "a"))
	require.NoError(t, p.InterceptHTTP("*.glob.test", "g"))
	require.NoError(t, p.InterceptHTTP("10.1.2.3:8080", "ipport"))
	require.NoError(t, p.InterceptHTTP("2001:db8::/32", "v6"))
	require.NoError(t, p.InterceptHTTPS("secrets.test", "s"))

	for _, tc := range []struct {
		host, dst, want string
	}{
		{"api.example.com", "1.1.1.1:80", "a"},
		{"x.y.glob.test", "1.1.1.1:80", "g"},
		{"", "10.1.2.3:8080", "ipport"},
		{"", "[2001:db8::5]:80", "v6"},
		{"", "10.1.2.3:80", ""},
		{"glob.test", "1.1.1.1:80", ""},
	} {
		h, ok := p.HTTPHandler(tc.host, dst(tc.dst))
		assert.Equal(t, tc.want, h, "%s %s", tc.host, tc.dst)
		assert.Equal(t, tc.want != "", ok)
	}
	p.InterceptAllHTTP("all")
	h, _ := p.HTTPHandler("other.test", dst("1.1.1.1:80"))
	assert.Equal(t, "all", h)
	require.NoError(t, p.InterceptHTTP("api.example.com", "a2"))
	h, _ = p.HTTPHandler("api.example.com", dst("1.1.1.1:80"))
	assert.Equal(t, "a2", h, "a second rule for a target replaces the first")

	assert.True(t, p.Permits("api.stripe.com"))
	assert.False(t, p.Permits("stripe.com"), "*.stripe.com needs a label before it")
	assert.False(t, p.Permits("example.org"))
	assert.True(t, p.Denies("x.evil.com"))
	require.NoError(t, p.EditHosts(Denied, Replace, nil))
	assert.False(t, p.Denies("x.evil.com"))
	require.NoError(t, p.EditHosts(Allowed, Add, []string{"example.org", "example.org"}))
	assert.Equal(t, []string{"*.stripe.com", "example.org"}, p.Hosts(Allowed))
	require.NoError(t, p.EditHosts(Allowed, Remove, []string{"*.stripe.com"}))
	assert.Equal(t, []string{"example.org"}, p.Hosts(Allowed))
	assert.ErrorIs(t, p.EditHosts(Allowed, Add, []string{"bad host"}), ErrInvalidTarget)
	p.SetInternet(true)
	assert.True(t, p.Permits("anything.test"))

	assert.True(t, p.ClaimsName("secrets.test"))
	assert.True(t, p.ClaimsName("a.glob.test"))
	assert.False(t, p.ClaimsName("nothing.test"))
	assert.True(t, p.ClaimsAll())
}
