package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/internal/testetcd"
)

// TestEtcdTLSErrorsNameTheFlag: a --cluster-etcd-cacert, -cert or -key
// whose file cannot be read or used, or that is missing from a client
// certificate and its key, is named, the one flag: the error said
// "--cluster-etcd-*: ", for any of the three. Good files still load.
func TestEtcdTLSErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, cluster.InitCA(dir))
	require.NoError(t, cluster.IssueHost(dir, "h1"))
	require.NoError(t, cluster.IssueHost(dir, "h2"))
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "h1.pem"), filepath.Join(dir, "h1-key.pem")
	gone := filepath.Join(dir, "gone.pem")
	empty := filepath.Join(dir, "empty.pem")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err := cluster.EtcdTLS(ca, cert, key)
	require.NoError(t, err, "the good files")

	for _, c := range []struct {
		cacert, cert, key string
		says              string
	}{
		{gone, "", "", "--cluster-etcd-cacert: etcd's CA certificate: open " + gone + ": no such file or directory"},
		{key, "", "", "--cluster-etcd-cacert: etcd's CA certificate: " + key + " holds no PEM certificate"},
		{ca, gone, key, "--cluster-etcd-cert: etcd's client certificate: open " + gone + ": no such file or directory"},
		{ca, cert, gone, "--cluster-etcd-key: etcd's client key: open " + gone + ": no such file or directory"},
		{"", gone, gone, "--cluster-etcd-cert: etcd's client certificate: open " + gone + ": no such file or directory"},
		{ca, dir, key, "--cluster-etcd-cert: etcd's client certificate: " + dir + " is a directory, not a PEM file"},
		{ca, cert, dir, "--cluster-etcd-key: etcd's client key: " + dir + " is a directory, not a PEM file"},
		{ca, cert, "", "--cluster-etcd-key: etcd's client certificate and its key go together: give both or neither"},
		{ca, "", key, "--cluster-etcd-cert: etcd's client certificate and its key go together: give both or neither"},
		{ca, key, key, "--cluster-etcd-cert: etcd's client certificate: tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched"},
		{ca, empty, key, "--cluster-etcd-cert: etcd's client certificate: tls: failed to find any PEM data in certificate input"},
		{ca, cert, cert, "--cluster-etcd-key: etcd's client key: tls: found a certificate rather than a key in the PEM for the private key"},
		{ca, cert, empty, "--cluster-etcd-key: etcd's client key: tls: failed to find any PEM data in key input"},
		{ca, cert, filepath.Join(dir, "h2-key.pem"), "--cluster-etcd-key: etcd's client key: tls: private key does not match public key"},
	} {
		args := []string{"cluster", "status", "--cluster", "etcd=https://127.0.0.1:1"}
		for flag, file := range map[string]string{"--cluster-etcd-cacert": c.cacert, "--cluster-etcd-cert": c.cert, "--cluster-etcd-key": c.key} {
			if file != "" {
				args = append(args, flag, file)
			}
		}
		_, err := run(t, args...)
		assert.EqualError(t, err, c.says, "%q", args)
	}
}

// TestClusterStatusSaysWhenNoHostIsIn: wharf cluster status on a cluster
// no host has joined says so, and how one joins; it printed the table's
// header alone.
func TestClusterStatusSaysWhenNoHostIsIn(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	out, err := run(t, "cluster", "status", "--cluster", "etcd="+etcd)
	require.NoError(t, err)
	assert.Equal(t, "no host is in the cluster: a host joins it with wharf serve <plugin> --cluster etcd="+etcd+"\n", out)

	etcd, files := testetcd.StartTLS(t)
	out, err = run(t, "cluster", "status", "--cluster", "etcd="+etcd,
		"--cluster-etcd-cacert", files.CA, "--cluster-etcd-cert", files.Cert, "--cluster-etcd-key", files.Key)
	require.NoError(t, err)
	assert.Equal(t, "no host is in the cluster: a host joins it with wharf serve <plugin> --cluster etcd="+etcd+" and the --cluster-etcd-* flags of that host\n", out)
}
