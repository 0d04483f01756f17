package cluster

import (
	"os"
	"path/filepath"
	"testing"

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
