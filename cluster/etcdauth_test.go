package cluster_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	password := func(name, text string) string { return writePassword(t, dir, name, text) }
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
// reason, it serves no object once its lease may have run out, saying
// why, and it reads its password file again, no more often than it would
// renew: a password etcd refuses too, or a file it cannot read, is logged
// as such; the new password written to the file, it signs in with it,
// rejoins, and its object serves the value it had acknowledged. A
// password changed in etcd after it was written to the file (a rotation)
// is taken within a renewal: the host keeps its lease and serves on.
func TestClusterHostWhoseEtcdPasswordChanges(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	file := filepath.Join(t.TempDir(), "password")
	writeFile := func(text string) { require.NoError(t, os.WriteFile(file, []byte(text), 0o600)) }
	writeFile("wharf-secret\n")
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
	// The log says which flag and file to fix, as the start's errors do.
	hint := `: check --cluster-etcd-user and the password in --cluster-etcd-password-file ` + file
	failed := `msg="renewing the cluster lease" etcd=` + etcd + ` err="etcd user \"wharf\": etcdserver: authentication failed, invalid user ID or password` + hint + `"`
	require.True(t, h1.serve.WaitLog(failed, 10*ttl), h1.serve.Logs())
	before := strings.Count(h1.serve.Logs(), failed)
	time.Sleep(2 * ttl) // the lease runs out
	// Renewals that fail at once are tried no more often than renewals
	// (every third of the TTL), not four times as often as for an etcd
	// that does not answer: each costs etcd a password hash.
	assert.LessOrEqual(t, strings.Count(h1.serve.Logs(), failed)-before, 2*3+1, "failed renewals in 2 TTLs")
	_, err = h1.increment("k")
	require.Error(t, err, "served without a lease")
	assert.Contains(t, err.Error(), "500 Internal Server Error: call Increment: the object's event could not run: this host's cluster lease may have run out (its log says why) (request id")
	assert.True(t, h1.serve.WaitLog(`err="placing the object in the cluster: this host's cluster lease may have run out: renewing it failed: etcd user \"wharf\": etcdserver: authentication failed, invalid user ID or password`+hint+`: it places no object until it rejoins the cluster"`, 5*ttl), h1.serve.Logs())
	assert.NotContains(t, h1.serve.Logs(), "read it again", "the file's password is the one etcd refused: no new client")

	// A password etcd refuses too, then no file: logged, no more often
	// than renewals.
	writeFile("not-it\n")
	refusedToo := `msg="etcd refused the etcd user's password read again too" user=wharf err="etcd user \"wharf\": etcdserver: authentication failed, invalid user ID or password` + hint + `"`
	require.True(t, h1.serve.WaitLog(refusedToo, 10*ttl), h1.serve.Logs())
	before = strings.Count(h1.serve.Logs(), refusedToo)
	time.Sleep(ttl)
	assert.LessOrEqual(t, strings.Count(h1.serve.Logs(), refusedToo)-before, 3+1, "passwords tried in a TTL")
	require.NoError(t, os.Remove(file))
	unreadable := `msg="reading the etcd user's password again, as etcd refused it" user=wharf err="--cluster-etcd-password-file: the password of etcd user \"wharf\": open ` + file + `: no such file or directory"`
	require.True(t, h1.serve.WaitLog(unreadable, 10*ttl), h1.serve.Logs())

	// The new password in the file: the host signs in with it and
	// rejoins, without a restart.
	writeFile("changed\n")
	c.etcdPassword = "changed"
	signedIn := `msg="etcd refused the etcd user's password: read it again and signed in with the new one" user=wharf`
	require.True(t, h1.serve.WaitLog(signedIn, 10*ttl), h1.serve.Logs())
	require.True(t, h1.serve.WaitLog(`msg="rejoined the cluster" host=h1 cluster=`, 10*ttl), h1.serve.Logs())
	assert.Equal(t, int64(4), incrementSoon(t, h1, "k"), "the acknowledged increments were kept")

	// A rotation: the new password written to the file, then set in etcd.
	// The host signs in with it at its next renewal, before its lease
	// runs out.
	writeFile("rotated\n")
	failures := strings.Count(h1.serve.Logs(), failed)
	signIns := strings.Count(h1.serve.Logs(), signedIn)
	setPassword("rotated")
	c.etcdPassword = "rotated"
	require.Eventually(t, func() bool { return strings.Count(h1.serve.Logs(), signedIn) > signIns }, 10*ttl, 50*time.Millisecond, h1.serve.Logs())
	for want := int64(5); want <= 7; want++ {
		assert.Equal(t, want, incrementSoon(t, h1, "k"))
	}
	// The first renewal etcd refused was not logged as failed: it read the
	// file and renewed as the new client.
	assert.Equal(t, failures, strings.Count(h1.serve.Logs(), failed), "renewals failed for the password: %s", h1.serve.Logs())
	// It leaves etcd as the user it is now (the cleanup sets the first
	// password back).
	h1.serve.Stop(30 * time.Second)
	c.etcdPassword = "wharf-secret"
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

// TestClusterHostWhoseEtcdUserLosesItsPermission: a host whose role
// lost readwrite on wharf/ while it ran (etcd 3.7 then refuses to renew
// its lease, whose keys the user may no longer write) logged a failed
// renewal four times a renewal and, once its lease ran out, a lost lease
// and a failed rejoin ("etcdserver: permission denied", naming no user)
// each renewal for as long as it ran, and answered its objects' events
// "failed"; an event sent to another host before the lease ran out was
// forwarded to it and failed. Now it stops serving at once, logs once a
// renewal naming the user and the permission, takes no lease until the
// user may write (checking that without writing), and answers that it
// may not write: another host, whose user may, takes the object with
// every acknowledged write (an event sent there waits for it). Given the
// permission back, it rejoins and serves again. A host whose user is
// deleted fails its renewals, saying etcd refuses the user, and its
// object moves as well.
func TestClusterHostWhoseEtcdUserLosesItsPermission(t *testing.T) {
	etcd, c, h1, h2 := twoUserCluster(t)
	for want := int64(1); want <= 3; want++ {
		v, err := h1.increment("k")
		require.NoError(t, err)
		require.Equal(t, want, v)
	}
	require.Equal(t, "h1", c.owner(t, "k"))
	root := c.client(t)
	ctx := context.Background()
	_, err := root.RoleRevokePermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix))
	require.NoError(t, err)

	denied := `level=ERROR msg="this host's etcd user may not write the cluster's keys: it serves no object and lets its cluster lease run out, so that hosts that may write take its objects; it serves again once the user may" user=wharf ` +
		`err="etcd user \"wharf\" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/: etcdctl role grant-permission ROLE --prefix=true readwrite wharf/"`
	require.True(t, h1.serve.WaitLog(denied, 5*ttl), h1.serve.Logs())
	rejoins := strings.Count(h1.serve.Logs(), "rejoined the cluster")
	_, err = h1.increment("k")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "500 Internal Server Error: call Increment: the object's event could not run: this host may not write the cluster's keys in etcd now (its log says why) (request id")
	assert.True(t, h1.serve.WaitLog(`err="placing the object in the cluster: this host may not write the cluster's keys in etcd (etcd user \"wharf\" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/`, 5*ttl), h1.serve.Logs())
	// Through h2, the event waits for h1's lease to run out and runs
	// there, on the acknowledged value.
	v, err := h2.increment("k")
	require.NoError(t, err)
	assert.Equal(t, int64(4), v)
	assert.Equal(t, "h2", c.owner(t, "k"))
	// Logged once a renewal (a third of the TTL), not once an event.
	before := strings.Count(h1.serve.Logs(), denied)
	for range 20 {
		h1.increment("k")
	}
	time.Sleep(ttl)
	assert.LessOrEqual(t, strings.Count(h1.serve.Logs(), denied)-before, 3+1, "logged in a TTL")
	assert.Equal(t, rejoins, strings.Count(h1.serve.Logs(), "rejoined the cluster"), "no lease taken while the user may not write")

	// The permission back: h1 rejoins and serves (forwarding to h2).
	_, err = root.RoleGrantPermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	require.True(t, h1.serve.WaitLog(`msg="this host's etcd user may write the cluster's keys again" user=wharf`, 5*ttl), h1.serve.Logs())
	require.True(t, h1.serve.WaitLog(`msg="rejoined the cluster" host=h1`, 5*ttl), h1.serve.Logs())
	assert.Equal(t, int64(5), incrementSoon(t, h1, "k"))

	// The user deleted: h1's renewals fail, its object moves to h2.
	for want := int64(1); want <= 2; want++ {
		v, err := h1.increment("j")
		require.NoError(t, err)
		require.Equal(t, want, v)
	}
	_, err = root.UserDelete(ctx, "wharf")
	require.NoError(t, err)
	require.True(t, h1.serve.WaitLog(`msg="renewing the cluster lease" etcd=`+etcd+` err="etcd user \"wharf\": etcdserver: authentication failed, invalid user ID or password: check --cluster-etcd-user and the password in --cluster-etcd-password-file `, 5*ttl), h1.serve.Logs())
	// Until its lease runs out, h1 still owns j, and its commits fail
	// (not acknowledged): as for an etcd it cannot reach.
	time.Sleep(ttl)
	assert.Equal(t, int64(3), incrementSoon(t, h2, "j"))
	_, err = h1.increment("j")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the object's event could not run: this host's cluster lease may have run out (its log says why)")
	assert.Equal(t, int64(6), incrementSoon(t, h2, "k"), "h2 serves on")
}

// incrementSoon increments counter name through h once it serves it (a
// host loaded by other tests may miss a renewal and rejoin) and returns
// the new value: an increment that failed was not acknowledged.
func incrementSoon(t *testing.T, h *testHost, name string) int64 {
	t.Helper()
	var v int64
	var err error
	require.Eventually(t, func() bool {
		v, err = h.increment(name)
		return err == nil
	}, 10*ttl, 100*time.Millisecond, "%v", err)
	return v
}

// TestDrainAsARefusedEtcdUser: a drain etcd refuses (the host's user
// lost its permission on wharf/, or its password was changed) says so,
// naming the user and the permission, as the lease's errors do, and
// leaves the host serving as before: it was left taking no new object
// although etcd still listed it as serving and the drain had failed, and
// the errors were etcd's alone ("etcdserver: permission denied").
func TestDrainAsARefusedEtcdUser(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer root.Close()
	m, err := cluster.Join(context.Background(), cluster.Config{Name: "h1", Plugin: "counter", Advertise: "127.0.0.1:1", TTL: ttl,
		Etcd: cluster.Etcd{Endpoints: []string{etcd}, User: "wharf", Password: "wharf-secret"}})
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Serving(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = root.RoleRevokePermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix))
	require.NoError(t, err)
	err = m.Drain(ctx)
	require.Error(t, err)
	assert.ErrorContains(t, err, `etcd user "wharf" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/: etcdctl role grant-permission ROLE --prefix=true readwrite wharf/`)
	assert.False(t, m.Draining(), "a failed drain changes nothing")
	_, err = m.PickHost(ctx, "k")
	assert.ErrorContains(t, err, `etcd user "wharf" may not read the keys under wharf/ (etcdserver: permission denied): its role needs read permission on the prefix wharf/`)

	_, err = root.RoleGrantPermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	_, err = root.UserChangePassword(ctx, "wharf", "changed")
	require.NoError(t, err)
	err = m.Drain(ctx)
	require.Error(t, err)
	assert.ErrorContains(t, err, `etcd user "wharf": etcdserver: authentication failed, invalid user ID or password`)
	assert.False(t, m.Draining(), "a failed drain changes nothing")
	// Back as it was, for Close to revoke the lease.
	_, err = root.UserChangePassword(ctx, "wharf", "wharf-secret")
	require.NoError(t, err)
	require.NoError(t, m.Drain(ctx))
	assert.True(t, m.Draining())
}

// TestClusterDrainAsARefusedEtcdUser: wharf cluster drain of a host whose
// etcd user lost its permission on wharf/ says which user and permission
// (it said "no host to move the objects to: etcdserver: permission
// denied", or only etcd's words), and once the permission is back the
// host takes new objects again: the drain etcd refused had left it
// draining (forwarding every new object) although it failed.
func TestClusterDrainAsARefusedEtcdUser(t *testing.T) {
	_, c, h1, _ := twoUserCluster(t)
	root := c.client(t)
	ctx := context.Background()
	prefixEnd := clientv3.GetPrefixRangeEnd(cluster.Prefix)
	drain := func() string {
		out, err := exec.Command(testutil.BuildWharf(t), "cluster", "drain", "--data-dir", h1.dataDir).CombinedOutput()
		require.Error(t, err, "%s", out)
		return string(out)
	}

	// Read only: the hosts are listed, the host's record is not written.
	_, err := root.RoleRevokePermission(ctx, "wharf", cluster.Prefix, prefixEnd)
	require.NoError(t, err)
	_, err = root.RoleGrantPermission(ctx, "wharf", cluster.Prefix, prefixEnd, clientv3.PermissionType(clientv3.PermRead))
	require.NoError(t, err)
	assert.Contains(t, drain(), `marking the host as draining: etcd user "wharf" may not read and write the keys under wharf/ (etcdserver: permission denied): its role needs readwrite permission on the prefix wharf/`)
	// No permission: the hosts are not listed.
	_, err = root.RoleRevokePermission(ctx, "wharf", cluster.Prefix, prefixEnd)
	require.NoError(t, err)
	assert.Contains(t, drain(), `listing the hosts to move the objects to: etcd user "wharf" may not read the keys under wharf/ (etcdserver: permission denied): its role needs read permission on the prefix wharf/`)

	// The permission back: h1 takes a new object itself.
	_, err = root.RoleGrantPermission(ctx, "wharf", cluster.Prefix, prefixEnd, clientv3.PermissionType(clientv3.PermReadWrite))
	require.NoError(t, err)
	assert.Equal(t, int64(1), incrementSoon(t, h1, "fresh"))
	assert.Equal(t, "h1", c.owner(t, "fresh"), "h1 is not draining")
}

// TestHostWithoutAUserWhenEtcdEnablesAuthentication: a host given no etcd
// user, running when etcd's authentication is enabled, serves nothing
// (etcd refuses its requests) and says that it has no user: it logged
// "this host's etcd user may not write the cluster's keys" with user="",
// a user it does not have. Once authentication is disabled it serves
// again.
func TestHostWithoutAUserWhenEtcdEnablesAuthentication(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	var logs testutil.LogBuffer
	m, err := cluster.Join(context.Background(), cluster.Config{Name: "h1", Plugin: "counter", Advertise: "127.0.0.1:1", TTL: ttl,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Etcd: cluster.Etcd{Endpoints: []string{etcd}}})
	require.NoError(t, err)
	defer m.Close()
	testetcd.EnableAuth(t, etcd, "root-secret")
	noUser := `level=ERROR msg="etcd has authentication enabled and this host was given no etcd user: it serves no object and lets its cluster lease run out, so that hosts that may write take its objects; it serves again once etcd's authentication is disabled, or restarted with an etcd user" err="etcd has authentication enabled (etcdserver: user name is empty)"`
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), noUser) }, 5*ttl, 50*time.Millisecond, "%s", &logs)
	assert.NotContains(t, logs.String(), `user=""`)
	_, err = m.Place(context.Background(), "k")
	assert.ErrorIs(t, err, cluster.ErrFenced)

	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer root.Close()
	_, err = root.AuthDisable(context.Background())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `msg="etcd takes this host's requests without a user again"`)
	}, 5*ttl, 50*time.Millisecond, "%s", &logs)
	require.Eventually(t, func() bool { _, err := m.Place(context.Background(), "k"); return err == nil }, 5*ttl, 50*time.Millisecond)
}

// twoUserCluster starts an etcd with authentication enabled and two
// hosts: h1 as etcd user wharf, h2 as user other, both with readwrite on
// wharf/; the cluster's own requests to etcd go as root.
func twoUserCluster(t *testing.T) (etcd string, c *testCluster, h1, h2 *testHost) {
	etcd = testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret",
		testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix},
		testetcd.User{Name: "other", Password: "other-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	dir := t.TempDir()
	c = newTestClusterOn(t, etcd, nil, "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", writePassword(t, dir, "wharf", "wharf-secret\n"))
	c.etcdUser, c.etcdPassword = "root", "root-secret"
	h1 = c.start(t, "h1")
	h2 = c.startModule(t, "h2", c.wasm, counterManifest, "--cluster-etcd-user", "other", "--cluster-etcd-password-file", writePassword(t, dir, "other", "other-secret\n"))
	return etcd, c, h1, h2
}

// writePassword writes text to the file name in dir, a password file,
// and returns its path.
func writePassword(t *testing.T, dir, name, text string) string {
	file := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(file, []byte(text), 0o600))
	return file
}

// TestSignInWithAPasswordReadAgainWhileEtcdIsGone: a host whose password
// etcd refused reads it again, and etcd goes right then: its failed sign-in
// with the new password is logged as etcd not reached, not as etcd
// refusing that password too (which sent the operator to a password that
// was right); once etcd is back, the host signs in with it.
func TestSignInWithAPasswordReadAgainWhileEtcdIsGone(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret", testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	proxy := startEtcdProxy(t, strings.TrimPrefix(etcd, "http://"))
	var goOnRead atomic.Bool // etcd goes as the host reads the password again
	goOnRead.Store(true)
	read := func() (string, error) {
		if goOnRead.Load() {
			proxy.stop()
		}
		return "changed", nil
	}
	var logs testutil.LogBuffer
	m, err := cluster.Join(context.Background(), cluster.Config{Name: "h1", Plugin: "counter", Advertise: "127.0.0.1:1", TTL: ttl,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Etcd:   cluster.Etcd{Endpoints: []string{"http://" + proxy.addr}, User: "wharf", Password: "wharf-secret", ReadPassword: read}})
	require.NoError(t, err)
	defer m.Close()
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd}, Username: "root", Password: "root-secret", DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer root.Close()
	_, err = root.UserChangePassword(context.Background(), "wharf", "changed")
	require.NoError(t, err)

	gone := `level=WARN msg="signing in to etcd with the etcd user's password read again failed; tried again once etcd refuses the password again" user=wharf err="context deadline exceeded: http://` + proxy.addr + `: dial tcp ` + proxy.addr + `: connect: connection refused (is etcd running there?)"`
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), gone) }, 10*ttl, 50*time.Millisecond, "%s", &logs)
	assert.NotContains(t, logs.String(), "refused the etcd user's password read again too")

	goOnRead.Store(false)
	proxy.restart(t)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `msg="etcd refused the etcd user's password: read it again and signed in with the new one" user=wharf`)
	}, 10*ttl, 50*time.Millisecond, "%s", &logs)
}
