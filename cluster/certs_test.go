package cluster

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHostCertificatesNeedSafeNames(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, InitCA(dir))
	assert.ErrorContains(t, InitCA(dir), "already holds a cluster CA")
	ca, err := os.ReadFile(filepath.Join(dir, caCertFile))
	require.NoError(t, err)
	for _, bad := range []string{"ca", "../evil", "a b", "", "-x", "a/b"} {
		assert.ErrorContains(t, IssueHost(dir, bad), "use letters, digits", bad)
	}
	after, err := os.ReadFile(filepath.Join(dir, caCertFile))
	require.NoError(t, err)
	assert.Equal(t, ca, after, "the CA is untouched")
	assert.NoFileExists(t, filepath.Join(filepath.Dir(dir), "evil.pem"))

	require.NoError(t, IssueHost(dir, "host-a.example"))
	server, client, err := PeerTLS(dir, "host-a.example")
	require.NoError(t, err)
	assert.NotNil(t, server.ClientCAs)
	assert.Empty(t, client.ServerName, "set per peer")
	_, _, err = PeerTLS(dir, "host-b")
	assert.ErrorContains(t, err, "wharf cluster cert host-b")
}

// TestPeerTLSRefusesACertificateThatIsNotTheHosts: a host whose
// certificate names another host, or was signed by another CA, would join
// and take objects that no peer could then reach (each peer refuses its
// certificate): it is refused at start instead.
func TestPeerTLSRefusesACertificateThatIsNotTheHosts(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	require.NoError(t, InitCA(dir))
	require.NoError(t, InitCA(other))
	require.NoError(t, IssueHost(dir, "host-a"))
	require.NoError(t, IssueHost(other, "host-b"))
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, b, 0o600))
	}
	// host-c's files hold host-a's certificate and key.
	copyFile(filepath.Join(dir, "host-a.pem"), filepath.Join(dir, "host-c.pem"))
	copyFile(filepath.Join(dir, "host-a-key.pem"), filepath.Join(dir, "host-c-key.pem"))
	_, _, err := PeerTLS(dir, "host-c")
	assert.ErrorContains(t, err, `cluster certificate of host "host-c"`)
	assert.ErrorContains(t, err, "host-a")
	// host-b's certificate is signed by another cluster's CA.
	copyFile(filepath.Join(other, "host-b.pem"), filepath.Join(dir, "host-b.pem"))
	copyFile(filepath.Join(other, "host-b-key.pem"), filepath.Join(dir, "host-b-key.pem"))
	_, _, err = PeerTLS(dir, "host-b")
	assert.ErrorContains(t, err, "unknown authority")

	_, _, err = PeerTLS(dir, "host-a")
	assert.NoError(t, err, "the host's own certificate")
}

// TestEtcdTLSRefusesWhatIsNotAPEMFile: a --cluster-etcd-* path naming a
// named pipe, a device, a directory or a file far too large for a
// certificate is refused at once, saying what it is: a pipe blocked wharf
// for ever, and /dev/zero filled its memory until it died.
func TestEtcdTLSRefusesWhatIsNotAPEMFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, InitCA(dir))
	require.NoError(t, IssueHost(dir, "h1"))
	ca, cert, key := filepath.Join(dir, caCertFile), filepath.Join(dir, hostCertFile("h1")), filepath.Join(dir, hostKeyFile("h1"))
	_, err := EtcdTLS(ca, cert, key)
	require.NoError(t, err)

	pipe := filepath.Join(dir, "pipe")
	require.NoError(t, syscall.Mkfifo(pipe, 0o600))
	large := filepath.Join(dir, "large.pem")
	require.NoError(t, os.WriteFile(large, nil, 0o600))
	require.NoError(t, os.Truncate(large, 64<<20))
	for _, c := range []struct {
		ca, cert, key string
		want          string
	}{
		{pipe, "", "", "etcd's CA certificate: " + pipe + " is a named pipe, not a PEM file"},
		{ca, pipe, key, "etcd's client certificate: " + pipe + " is a named pipe, not a PEM file"},
		{ca, cert, pipe, "etcd's client key: " + pipe + " is a named pipe, not a PEM file"},
		{os.DevNull, "", "", "etcd's CA certificate: " + os.DevNull + " is a device, not a PEM file"},
		{dir, "", "", "etcd's CA certificate: " + dir + " is a directory, not a PEM file"},
		{large, "", "", "etcd's CA certificate: " + large + " is larger (67108864 bytes) than a PEM file"},
		{ca, large, key, "etcd's client certificate: " + large + " is larger (67108864 bytes) than a PEM file"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := EtcdTLS(c.ca, c.cert, c.key)
			done <- err
		}()
		select {
		case err := <-done:
			assert.ErrorContains(t, err, c.want)
		case <-time.After(5 * time.Second):
			t.Fatalf("EtcdTLS(%q, %q, %q) still reading after 5s", c.ca, c.cert, c.key)
		}
	}
}

// TestCertificateHintsNameTheDirectory: a missing certificate's hint is a
// command that makes it where it is looked for. It said "make it with
// wharf cluster cert host-c" to a host started with --cluster-certs certs:
// that command looked in the default cluster-certs, said "make it with
// wharf cluster init", and that made a second CA, which no host trusts.
func TestCertificateHintsNameTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	_, _, err := PeerTLS(dir, "host-a")
	assert.ErrorContains(t, err, "(make them with wharf cluster init --certs "+dir+", then wharf cluster cert host-a --certs "+dir+")")
	err = IssueHost(dir, "host-a")
	assert.ErrorContains(t, err, "(make it with wharf cluster init --certs "+dir+", once per cluster)")

	require.NoError(t, InitCA(dir))
	_, _, err = PeerTLS(dir, "host-c")
	assert.ErrorContains(t, err, "(make it with wharf cluster cert host-c --certs "+dir+")")

	// A host given only the CA's certificate (as it should be) cannot sign:
	// another cluster init is not the way.
	host := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(dir, caCertFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(host, caCertFile), ca, 0o644))
	err = IssueHost(host, "host-c")
	assert.ErrorContains(t, err, "(only the directory wharf cluster init made holds the CA's key: run wharf cluster cert there)")
	assert.NotContains(t, err.Error(), "make it with wharf cluster init")
}

// TestCertificateHintsQuoteTheDirectory: the command a hint gives works
// as copied when the --certs directory has a space (or a quote) in it: it
// was written bare, "wharf cluster init --certs /tmp/my certs", which makes
// the CA in /tmp/my (or is refused, given a second argument).
func TestCertificateHintsQuoteTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my certs")
	quoted := "'" + dir + "'"
	_, _, err := PeerTLS(dir, "host-a")
	assert.ErrorContains(t, err, "(make them with wharf cluster init --certs "+quoted+", then wharf cluster cert host-a --certs "+quoted+")")
	err = IssueHost(dir, "host-a")
	assert.ErrorContains(t, err, "(make it with wharf cluster init --certs "+quoted+", once per cluster)")
	require.NoError(t, InitCA(dir))
	_, _, err = PeerTLS(dir, "host-c")
	assert.ErrorContains(t, err, "(make it with wharf cluster cert host-c --certs "+quoted+")")

	assert.Equal(t, `'/tmp/it'\''s'`, ShellQuote("/tmp/it's"))
	assert.Equal(t, "/tmp/certs-1", ShellQuote("/tmp/certs-1"), "bare when nothing needs quoting")
}
