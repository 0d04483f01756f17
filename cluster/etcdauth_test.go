package cluster_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/internal/testetcd"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestClusterOnAnEtcdWithAuthentication: hosts reach an etcd with
// authentication enabled as a user whose role has readwrite on wharf's
// keys (--cluster-etcd-user, --cluster-etcd-password-file, the file
// ending in a newline, as echo writes it): they join, an object's commits
// go through it as it moves between them, and cluster status reads it. A
// host given the flags before etcd's authentication was enabled joined
// (etcd accepts them, as etcdctl's --user) and serves on after. A wrong
// password, no user, or a user whose role lacks the permission a command
// needs is refused, saying which user, flag, prefix and permission; the
// hosts serve on.
func TestClusterOnAnEtcdWithAuthentication(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	dir := t.TempDir()
	password := func(name, text string) string {
		file := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(file, []byte(text), 0o600))
		return file
	}
	wharfPassword := password("wharf", "wharf-secret\n")
	c := newTestClusterOn(t, etcd, nil, "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", wharfPassword)
	early := c.start(t, "h1")
	testetcd.EnableAuth(t, etcd, "root-secret",
		testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix},
		testetcd.User{Name: "reader", Password: "reader-secret", Permission: "read", Prefix: cluster.Prefix},
		testetcd.User{Name: "stranger", Password: "stranger-secret", Permission: "readwrite", Prefix: "other/"})
	c.etcdUser, c.etcdPassword = "wharf", "wharf-secret"
	hosts := []*testHost{c.start(t, "h2"), c.start(t, "h3"), early}
	increments := 0
	incrementThroughEach := func() {
		t.Helper()
		for _, h := range hosts {
			v, err := h.increment("auth")
			require.NoError(t, err, h.name)
			increments++
			require.Equal(t, int64(increments), v)
		}
	}
	incrementThroughEach()
	status := c.status(t)
	for _, h := range hosts {
		assert.Regexp(t, h.name+`\s+counter\s+[0-9a-f]{12}\s+127\.0\.0\.1:\d+\s+serving\s`, status)
	}
	// A user with read only is enough for status.
	status = c.wharf(t, "cluster", "status", "--cluster", "etcd="+etcd, "--cluster-etcd-user", "reader", "--cluster-etcd-password-file", password("reader", "reader-secret"))
	for _, h := range hosts { // with the leases' TTLs: reading a lease's keys needs read too
		assert.Regexp(t, h.name+`\s+counter\s+[0-9a-f]{12}\s+127\.0\.0\.1:\d+\s+serving\s+[0-9a-f]+\s+[1-9]\d*s\s`, status)
	}

	wrong := password("wrong", "not-the-password\n")
	for _, refused := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", wrong},
			`etcd ` + etcd + `: etcd user "wharf": etcdserver: authentication failed, invalid user ID or password: check --cluster-etcd-user and the password in --cluster-etcd-password-file ` + wrong},
		{[]string{"--cluster-etcd-user", "nobody", "--cluster-etcd-password-file", wrong},
			`etcd user "nobody": etcdserver: authentication failed, invalid user ID or password: check --cluster-etcd-user`},
		{nil, `etcd ` + etcd + `: etcd has authentication enabled (etcdserver: user name is empty): give its user with --cluster-etcd-user and the file of its password with --cluster-etcd-password-file`},
		{[]string{"--cluster-etcd-user", "stranger", "--cluster-etcd-password-file", password("stranger", "stranger-secret")},
			`etcd ` + etcd + `: etcd user "stranger" may not read the keys under wharf/ (etcdserver: permission denied): its role needs read permission on the prefix wharf/: etcdctl role grant-permission ROLE --prefix=true read wharf/`},
	} {
		out, err := exec.Command(testutil.BuildWharf(t), append([]string{"cluster", "status", "--cluster", "etcd=" + etcd}, refused.args...)...).CombinedOutput()
		assert.Error(t, err, "cluster status %q: %s", refused.args, out)
		assert.Contains(t, string(out), refused.want, "cluster status %q", refused.args)
	}

	// wharf serve: refused at once (etcd refusing the user is not waited
	// out as an etcd that is not up yet is), and a user that may read
	// only cannot join: a host writes.
	for _, refused := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", wrong},
			`joining the cluster through etcd ` + etcd + `: etcd user "wharf": etcdserver: authentication failed, invalid user ID or password: check --cluster-etcd-user and the password in --cluster-etcd-password-file ` + wrong},
		{[]string{"--cluster-etcd-user", "reader", "--cluster-etcd-password-file", password("reader", "reader-secret")},
			`joining the cluster through etcd ` + etcd + `: etcd user "reader" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/: etcdctl role grant-permission ROLE --prefix=true readwrite wharf/`},
		{nil, `joining the cluster through etcd ` + etcd + `: etcd has authentication enabled (etcdserver: user name is empty): give its user with --cluster-etcd-user and the file of its password with --cluster-etcd-password-file`},
	} {
		h4 := *c
		h4.etcdArgs = refused.args
		_, args := h4.serveArgs(t, "h4", c.wasm, counterManifest)
		start := time.Now()
		out, err := exec.Command(testutil.BuildWharf(t), append([]string{"serve"}, args...)...).CombinedOutput()
		assert.Error(t, err, "%s", out)
		assert.Contains(t, string(out), refused.want)
		assert.Less(t, time.Since(start), 10*time.Second, "not waited out")
	}
	incrementThroughEach()
}

// TestClusterHostWhoseEtcdPasswordChanges: a running host whose etcd
// user's password is changed under it (its token goes with the old one)
// keeps running: its lease renewals fail, logged with the user and etcd's
// reason, it serves no object once its lease may have run out, and once
// the password it was started with works again it rejoins and its object
// serves the value it had acknowledged. (A new password is read only at
// start: the host is restarted to take it.)
func TestClusterHostWhoseEtcdPasswordChanges(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	file := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(file, []byte("wharf-secret\n"), 0o600))
	c := newTestClusterOn(t, etcd, nil, "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", file)
	c.etcdUser, c.etcdPassword = "wharf", "wharf-secret"
	h1 := c.start(t, "h1")
	for range 3 {
		_, err := h1.increment("k")
		require.NoError(t, err)
	}
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { root.Close() })
	setPassword := func(password string) {
		_, err := root.UserChangePassword(context.Background(), "wharf", password)
		require.NoError(t, err)
	}
	setPassword("changed")
	t.Cleanup(func() { setPassword("wharf-secret") }) // for the check that the host left etcd, even after a failure
	failed := `msg="renewing the cluster lease" etcd=` + etcd + ` err="etcd user \"wharf\": etcdserver: authentication failed, invalid user ID or password"`
	require.True(t, h1.serve.WaitLog(failed, 10*ttl), h1.serve.Logs())
	before := strings.Count(h1.serve.Logs(), failed)
	time.Sleep(2 * ttl) // the lease runs out
	// Renewals that fail at once are tried no more often than renewals
	// (every third of the TTL), not four times as often as for an etcd
	// that does not answer: each costs etcd a password hash.
	assert.LessOrEqual(t, strings.Count(h1.serve.Logs(), failed)-before, 2*3+1, "failed renewals in 2 TTLs")
	_, err = h1.increment("k")
	assert.Error(t, err, "served without a lease")
	setPassword("wharf-secret")
	require.True(t, h1.serve.WaitLog(`msg="rejoined the cluster" host=h1 cluster=`, 10*ttl), h1.serve.Logs())
	var v int64
	assert.Eventually(t, func() bool {
		v, err = h1.increment("k")
		return err == nil
	}, 10*ttl, 100*time.Millisecond)
	assert.Equal(t, int64(4), v, "the acknowledged increments were kept")
}

// TestJoinAsAUserWaitsForEtcd: a host given an etcd user waits for an
// etcd that is not up yet, as one without does (up to 10 s and a TTL):
// the client authenticates when it is made, and gave up after its dial
// timeout, 5 s.
func TestJoinAsAUserWaitsForEtcd(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	proxy := startEtcdProxy(t, strings.TrimPrefix(etcd, "http://"))
	proxy.stop()
	up := time.AfterFunc(7*time.Second, func() { // etcd is up: Join fails if its port is not
		if ln, err := net.Listen("tcp", proxy.addr); err == nil {
			proxy.serve(ln)
		}
	})
	defer up.Stop()
	m, err := cluster.Join(context.Background(), cluster.Config{Name: "h1", Plugin: "counter", Advertise: "127.0.0.1:1", TTL: ttl,
		Etcd: cluster.Etcd{Endpoints: []string{"http://" + proxy.addr}, User: "wharf", Password: "wharf-secret"}})
	require.NoError(t, err)
	m.Close()
}

// TestPasswordInClear: a user's password crosses a network unencrypted
// over an http:// endpoint (or a bare host:port) to a host that is not
// loopback; wharf serve warns of those at its join. Nothing is dialled.
func TestPasswordInClear(t *testing.T) {
	endpoints := []string{"http://etcd-a:2379", "etcd-b:2379", "https://etcd-c:2379", "http://127.0.0.1:2379", "localhost:2379", "http://[::1]:2379/", "http://192.0.2.1:2379"}
	assert.Equal(t, []string{"http://etcd-a:2379", "etcd-b:2379", "http://192.0.2.1:2379"}, cluster.Etcd{Endpoints: endpoints, User: "wharf"}.InClear())
	assert.Empty(t, cluster.Etcd{Endpoints: endpoints}.InClear(), "no user, no password")
}
