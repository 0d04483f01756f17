package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/testetcd"
)

// TestEtcdUserErrorsNameTheFlag: a --cluster-etcd-user without
// --cluster-etcd-password-file, the reverse, and a password file that
// cannot be read or is empty (a newline alone is empty: the trailing
// newline is not the password's) are refused, naming the flag, before
// etcd is dialled (its endpoint has nothing listening).
func TestEtcdUserErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	gone := filepath.Join(dir, "gone")
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	newline := filepath.Join(dir, "newline")
	require.NoError(t, os.WriteFile(newline, []byte("\n"), 0o600))
	pipe := filepath.Join(dir, "pipe")
	require.NoError(t, unix.Mkfifo(pipe, 0o600))
	large := filepath.Join(dir, "large")
	require.NoError(t, os.WriteFile(large, make([]byte, 1<<20), 0o600))
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--cluster-etcd-user", "wharf"}, "--cluster-etcd-user needs --cluster-etcd-password-file, a file holding the user's password (a password is not given on the command line, where ps shows it)"},
		{[]string{"--cluster-etcd-password-file", empty}, "--cluster-etcd-password-file needs --cluster-etcd-user, the etcd user whose password the file holds"},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", gone}, `--cluster-etcd-password-file: the password of etcd user "wharf": open ` + gone + ": no such file or directory"},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", dir}, `--cluster-etcd-password-file: the password of etcd user "wharf": ` + dir + " is a directory, not a password file"},
		// Not read: a named pipe would hang the command, /dev/zero fill
		// its memory.
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", pipe}, `--cluster-etcd-password-file: the password of etcd user "wharf": ` + pipe + " is a named pipe, not a password file"},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", "/dev/zero"}, `--cluster-etcd-password-file: the password of etcd user "wharf": /dev/zero is a device, not a password file`},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", large}, `--cluster-etcd-password-file: the password of etcd user "wharf": ` + large + " is larger (1048576 bytes) than a password file would be (at most 4096)"},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", empty}, `--cluster-etcd-password-file: the password of etcd user "wharf": ` + empty + " is empty"},
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", newline}, `--cluster-etcd-password-file: the password of etcd user "wharf": ` + newline + " is empty"},
	} {
		args := append([]string{"cluster", "status", "--cluster", "etcd=http://127.0.0.1:1"}, c.args...)
		_, err := run(t, args...)
		assert.EqualError(t, err, c.says, "%q", args)
	}
}

// TestEtcdUserOnAnEtcdWithoutAuthentication: an etcd with authentication
// disabled accepts any user and password, as etcdctl --user does there
// (the client's authentication is told it is not enabled and goes on
// without): the flags are not refused, so hosts given them before etcd's
// authentication is enabled keep working after.
func TestEtcdUserOnAnEtcdWithoutAuthentication(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	password := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(password, []byte("anything\n"), 0o600))
	out, err := run(t, "cluster", "status", "--cluster", "etcd="+etcd, "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", password)
	require.NoError(t, err)
	assert.Equal(t, "no host is in the cluster: a host joins it with wharf serve <plugin> --cluster etcd="+etcd+" and the --cluster-etcd-* flags of that host\n", out)
}
