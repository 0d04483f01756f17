package egress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCALeafAndClientHello mints a leaf, verifies it against the CA as a
// container would, and reads the SNI of a real ClientHello.
func TestCALeafAndClientHello(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadCA(dir)
	require.NoError(t, err)
	again, err := LoadCA(dir)
	require.NoError(t, err)
	assert.Equal(t, ca.CertPEM, again.CertPEM, "the CA is kept in the data dir")

	leaf, err := ca.Leaf("api.example.com")
	require.NoError(t, err)
	same, _ := ca.Leaf("api.example.com")
	assert.Same(t, leaf, same, "leaves are cached")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.example.com", Roots: pool})
	assert.NoError(t, err)
	_, err = leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: pool})
	assert.Error(t, err)

	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "sni.example.com", RootCAs: pool})
		if err == nil {
			c.Close()
		}
	}()
	c, err := ln.AcceptTCP()
	require.NoError(t, err)
	defer c.Close()
	pc := &peekedConn{TCPConn: c, r: bufio.NewReader(c)}
	hello, replay := readClientHello(pc)
	require.NotNil(t, hello)
	assert.Equal(t, "sni.example.com", hello.ServerName)
	assert.Equal(t, byte(0x16), replay[0], "the bytes read are kept to replay")
}
