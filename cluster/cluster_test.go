package cluster_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// TestMain removes what the tests built (testutil.Run).
func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// A cluster of real wharf serve processes on loopback, with an etcd of
// three members in the test process, serving the counter example.

const ttl = 2 * time.Second

type testCluster struct {
	etcd string
	// etcdTLS and etcdArgs are how a client and wharf reach an etcd served
	// over https (nil without).
	etcdTLS  *tls.Config
	etcdArgs []string
	certs    string
	wasm     string
	hosts    map[string]*testHost
	ttl      time.Duration // the hosts' --cluster-ttl

	// etcdUser and etcdPassword are the user the test reaches an etcd
	// with authentication enabled as ("" without).
	etcdUser, etcdPassword string
}

type testHost struct {
	name    string
	dataDir string
	peer    string // its --cluster-listen address
	serve   *testutil.Serve
}

func newTestCluster(t testing.TB) *testCluster {
	t.Helper()
	return newTestClusterOn(t, testetcd.Start(t, 3), nil)
}

// newTestClusterOn is newTestCluster on the etcd at the URLs etcd, reached
// with etcdTLS by the test and with etcdArgs by wharf.
func newTestClusterOn(t testing.TB, etcd string, etcdTLS *tls.Config, etcdArgs ...string) *testCluster {
	t.Helper()
	c := &testCluster{etcd: etcd, etcdTLS: etcdTLS, etcdArgs: etcdArgs, certs: t.TempDir(), hosts: map[string]*testHost{}, ttl: ttl}
	require.NoError(t, cluster.InitCA(c.certs))
	c.wasm = testutil.BuildGuest(t, "examples/counter")
	t.Cleanup(func() { c.checkNoKeysLeft(t) })
	return c
}

// start runs host name serving the counter; the same name again restarts
// it on its data.
func (c *testCluster) start(t testing.TB, name string) *testHost {
	t.Helper()
	return c.startPlugin(t, name, "counter")
}

// startPlugin is start with the counter's module under another plugin name.
func (c *testCluster) startPlugin(t testing.TB, name, plugin string) *testHost {
	t.Helper()
	return c.startModule(t, name, c.wasm, `name = "`+plugin+`"
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
`)
}

// counterManifest is the counter's manifest, without its main.
const counterManifest = `name = "counter"
[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
`

// startModule runs host name serving the module at wasm with the manifest
// (without its main, which names the module).
func (c *testCluster) startModule(t testing.TB, name, wasmPath, manifest string, extra ...string) *testHost {
	t.Helper()
	h, args := c.serveArgs(t, name, wasmPath, manifest, extra...)
	h.serve = testutil.StartServe(t, args...)
	return h
}

// serveArgs writes a plugin directory of the module at wasm with the
// manifest and returns host name and the arguments of wharf serve that
// runs it, extra last.
func (c *testCluster) serveArgs(t testing.TB, name, wasmPath, manifest string, extra ...string) (*testHost, []string) {
	t.Helper()
	h := c.hosts[name]
	if h == nil {
		require.NoError(t, cluster.IssueHost(c.certs, name))
		h = &testHost{name: name, dataDir: testutil.CompiledDataDir(t)}
		c.hosts[name] = h
	}
	dir := t.TempDir()
	wasm, err := os.ReadFile(wasmPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plugin.wasm"), wasm, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("main = \"plugin.wasm\"\n"+manifest), 0o644))
	h.peer = testutil.FreeLoopbackAddr(t)
	return h, append([]string{dir, "--listen", "127.0.0.1:0", "--data-dir", h.dataDir,
		"--cluster", "etcd=" + c.etcd, "--cluster-name", name, "--cluster-listen", h.peer,
		"--cluster-certs", c.certs, "--cluster-ttl", c.ttl.String()}, append(c.etcdArgs, extra...)...)
}

// increment adds one to counter name through host h and returns the new
// value.
func (h *testHost) increment(name string) (int64, error) {
	resp, err := http.Post(h.serve.URL+"/counter/"+name, "", nil)
	if err != nil {
		return 0, err
	}
	return readValue(resp)
}

// call calls method of the objects plugin's STORE object name through h
// with the JSON args: the status and the body, trimmed.
func (h *testHost) call(t testing.TB, name, method, args string) (int, string) {
	resp, err := http.Post(h.serve.URL+"/call/STORE/"+name+"/"+method, "application/json", strings.NewReader(args))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// readValue reads a counter's value from a response.
func readValue(resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
}

func (h *testHost) get(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get(h.serve.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return strings.TrimSpace(string(body))
}

// owner is the host that owns counter name now.
func (c *testCluster) owner(t testing.TB, name string) string {
	t.Helper()
	cli := c.client(t)
	resp, err := cli.Get(context.Background(), "wharf/objects/counter/Counter/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1, "one placed object")
	return string(resp.Kvs[0].Value)
}

func (c *testCluster) client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli := c.newClient(t)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// newClient connects to the cluster's etcd; the caller closes it.
func (c *testCluster) newClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.etcd, ","), TLS: c.etcdTLS, Username: c.etcdUser, Password: c.etcdPassword, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	return cli
}

// status is what wharf cluster status says of the cluster.
func (c *testCluster) status(t testing.TB) string {
	t.Helper()
	return c.wharf(t, append([]string{"cluster", "status", "--cluster", "etcd=" + c.etcd}, c.etcdArgs...)...)
}

func (c *testCluster) wharf(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(testutil.BuildWharf(t), args...).CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

// checkNoKeysLeft stops every host cleanly and checks that no host and no
// placement is left in etcd: their leases were revoked.
func (c *testCluster) checkNoKeysLeft(t testing.TB) {
	for _, h := range c.hosts {
		if h.serve != nil {
			h.serve.Stop(30 * time.Second)
		}
	}
	cli := c.newClient(t)
	defer cli.Close()
	for _, p := range []string{"wharf/hosts/", "wharf/objects/"} {
		resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		assert.Zero(t, resp.Count, "keys left under %s", p)
	}
}

func TestClusterServesEachObjectOnOneHost(t *testing.T) {
	c := newTestCluster(t)
	hosts := []*testHost{c.start(t, "h1"), c.start(t, "h2"), c.start(t, "h3")}

	// Increments through every host reach the one object, in turn.
	for i := range 30 {
		v, err := hosts[i%3].increment("shared")
		require.NoError(t, err)
		require.Equal(t, int64(i+1), v)
	}
	for _, h := range hosts {
		assert.Equal(t, "30", h.get(t, "/counter/shared"))
		assert.Contains(t, h.get(t, "/counter/shared/fetch"), "= 30", "a fetch to the object is forwarded too")
	}
	owner := c.owner(t, "shared")

	status := c.status(t)
	for _, h := range hosts {
		want := "0"
		if h.name == owner {
			want = "1"
		}
		assert.Regexp(t, h.name+`\s+counter\s+[0-9a-f]{12}\s+127\.0\.0\.1:\d+\s+serving\s+[0-9a-f]+\s+\d+s\s+`+want+`\n`, status)
	}
}

// TestClusterOnAnEtcdServedOverTLS: hosts reach an etcd that serves its
// clients over https and accepts only those with a certificate of its CA
// (--client-cert-auth) through the --cluster-etcd-* files: they join, the
// object's commits go through it as it moves between them, and cluster
// status reads it. TLS files that cannot work are refused, saying why
// (wharf serve's, before it builds: TestServeReportsAnAddressInUseBeforeLoading),
// and the hosts serve on.
func TestClusterOnAnEtcdServedOverTLS(t *testing.T) {
	etcd, files := testetcd.StartTLS(t)
	etcdTLS, err := cluster.EtcdTLS(files.CA, files.Cert, files.Key)
	require.NoError(t, err)
	c := newTestClusterOn(t, etcd, etcdTLS, "--cluster-etcd-cacert", files.CA, "--cluster-etcd-cert", files.Cert, "--cluster-etcd-key", files.Key)
	hosts := []*testHost{c.start(t, "h1"), c.start(t, "h2")}
	increments := 0
	incrementThroughEach := func() {
		for _, h := range hosts {
			v, err := h.increment("tls")
			require.NoError(t, err)
			increments++
			require.Equal(t, int64(increments), v)
		}
	}
	incrementThroughEach()
	status := c.status(t)
	for _, h := range hosts {
		assert.Regexp(t, h.name+`\s+counter\s+[0-9a-f]{12}\s+127\.0\.0\.1:\d+\s+serving\s`, status)
	}

	plain := "etcd=" + strings.Replace(etcd, "https://", "http://", 1)
	for _, refused := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "etcd=" + etcd, "--cluster-etcd-cacert", files.CA}, "etcd cannot be reached: " + etcd + ": TLS: remote error: tls: certificate required"},
		{[]string{"--cluster", "etcd=" + etcd}, etcd + ": TLS: tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{[]string{"--cluster", plain, "--cluster-etcd-cacert", files.CA}, "--cluster-etcd-cacert, --cluster-etcd-cert and --cluster-etcd-key are for an etcd served over https: write its endpoints as https://host:port in --cluster"},
		{[]string{"--cluster", "etcd=" + etcd + "," + strings.TrimPrefix(plain, "etcd="), "--cluster-etcd-cacert", files.CA}, "etcd's endpoints are all https:// or none"},
		{[]string{"--cluster", "etcd=" + etcd, "--cluster-etcd-cert", files.Cert}, "etcd's client certificate and its key go together: give both or neither"},
		{[]string{"--cluster", "etcd=" + etcd, "--cluster-etcd-cacert", files.Key}, files.Key + " holds no PEM certificate"},
		{[]string{"--cluster", "etcd=" + etcd, "--cluster-etcd-cacert", files.CA + ".gone"}, "etcd's CA certificate: open " + files.CA + ".gone: no such file or directory"},
	} {
		out, err := exec.Command(testutil.BuildWharf(t), append([]string{"cluster", "status"}, refused.args...)...).CombinedOutput()
		assert.Error(t, err, "cluster status %q: %s", refused.args, out)
		assert.Contains(t, string(out), refused.want, "cluster status %q", refused.args)
	}
	// A host that etcd refuses waits for it as for an etcd that is not up
	// yet, then says why.
	_, args := c.serveArgs(t, "h3", c.wasm, counterManifest, "--cluster-etcd-cert", "", "--cluster-etcd-key", "")
	out, err := exec.Command(testutil.BuildWharf(t), append([]string{"serve"}, args...)...).CombinedOutput()
	assert.Error(t, err, "%s", out)
	assert.Contains(t, string(out), "joining the cluster through etcd "+etcd+": context deadline exceeded: "+etcd+": TLS: remote error: tls: certificate required")
	incrementThroughEach()
}

// TestEtcdUnreachableSaysWhy: an etcd endpoint written with the scheme
// etcd does not serve there, a port that answers neither HTTP nor TLS, or
// a client certificate of a CA etcd does not trust is named as such when
// etcd cannot be read (gRPC says only that its deadline passed, or "EOF",
// and etcd that a certificate is required, as the client sends none it
// knows etcd would refuse), and no probe outlasts its bound.
func TestEtcdUnreachableSaysWhy(t *testing.T) {
	overTLS, files := testetcd.StartTLS(t)
	etcdTLS, err := cluster.EtcdTLS(files.CA, files.Cert, files.Key)
	require.NoError(t, err)
	otherCA := t.TempDir()
	require.NoError(t, cluster.InitCA(otherCA))
	require.NoError(t, cluster.IssueHost(otherCA, "h1"))
	otherCATLS, err := cluster.EtcdTLS(files.CA, filepath.Join(otherCA, "h1.pem"), filepath.Join(otherCA, "h1-key.pem"))
	require.NoError(t, err)
	plain := testetcd.Start(t, 1)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	go func() { // accepts, and never says a word
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	for _, c := range []struct {
		endpoint string
		tls      *tls.Config
		want     string
	}{
		{strings.Replace(overTLS, "https://", "http://", 1), nil, "etcd serves TLS there: write the endpoint as " + overTLS},
		{strings.TrimPrefix(overTLS, "https://"), nil, "etcd serves TLS there: write the endpoint as " + overTLS},
		{strings.Replace(plain, "http://", "https://", 1), etcdTLS, "etcd serves plain HTTP there, not TLS: write the endpoint as " + plain},
		{"https://" + silent.Addr().String(), etcdTLS, "https://" + silent.Addr().String() + ": TLS: no answer to the handshake within 2s (is this etcd's client port?)"},
		{"http://" + silent.Addr().String(), nil, "http://" + silent.Addr().String() + ": no answer to HTTP within 2s (is this etcd's client port?)"},
		{overTLS, otherCATLS, "etcd does not accept the client certificate: chain is not signed by an acceptable CA (it takes those signed by the CA of its --trusted-ca-file)"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		_, err := cluster.ReadStatus(ctx, cluster.Etcd{Endpoints: []string{c.endpoint}, TLS: c.tls})
		cancel()
		assert.ErrorContains(t, err, c.want, c.endpoint)
		assert.Less(t, time.Since(start), 8*time.Second, c.endpoint)
	}
}

func TestClusterKeepsAcknowledgedWritesWhenTheOwnerIsKilled(t *testing.T) {
	c := newTestCluster(t)
	hosts := map[string]*testHost{}
	for _, n := range []string{"h1", "h2", "h3"} {
		hosts[n] = c.start(t, n)
	}
	_, err := hosts["h1"].increment("k")
	require.NoError(t, err)
	owner := c.owner(t, "k")
	var survivors []*testHost
	for n, h := range hosts {
		if n != owner {
			survivors = append(survivors, h)
		}
	}

	load := startLoad(8, []string{"k"}, func(i int, n string) (int64, error) { return survivors[i%2].increment(n) })
	time.Sleep(time.Second)
	hosts[owner].serve.Kill()
	before := load.done()
	// Serving again on a survivor within the lease TTL and a little.
	load.waitForMore(before+50, ttl+10*time.Second)
	load.end()
	acked := load.sortedAcks("k", 1)
	require.Greater(t, len(acked), before+50, "the object serves again after its owner died")
	t.Logf("%d increments acknowledged (%d before the kill), %d failed", len(acked), before, len(load.errs))

	// No acknowledged increment is lost or given twice: each returned a
	// distinct value, and the counter is at least at the highest.
	assert.Equal(t, len(acked), len(slices.Compact(slices.Clone(acked))), "two increments returned the same value: a write was lost or the object ran twice")
	final, err := strconv.ParseInt(survivors[0].get(t, "/counter/k"), 10, 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, final, acked[len(acked)-1])
	assert.NotEqual(t, owner, c.owner(t, "k"))

	// The killed host comes back and serves the same value.
	c.start(t, owner)
	assert.Equal(t, strconv.FormatInt(final, 10), c.hosts[owner].get(t, "/counter/k"))
}

func TestClusterDrainMovesObjectsWithoutFailedRequests(t *testing.T) {
	c := newTestCluster(t)
	names := []string{"a", "b", "c", "d"}
	h1, h2 := c.twoHostsOwnedByTheFirst(t, names)
	load := startLoad(8, names, func(i int, n string) (int64, error) { return []*testHost{h1, h2}[i%2].increment(n) })
	time.Sleep(500 * time.Millisecond)
	out := c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir)
	assert.Contains(t, out, "drained")
	time.Sleep(500 * time.Millisecond)
	load.end()
	assert.Empty(t, load.errs, "no request failed while h1 drained")
	for _, n := range names {
		assert.Equal(t, "h2", c.ownerOf(t, n))
		assert.Equal(t, strconv.Itoa(len(load.acked[n])+1), h1.get(t, "/counter/"+n), "h1 still answers, forwarding")
	}
	assert.Contains(t, c.status(t), "draining")
}

// TestClusterDrainingHostRefusesForwardedEventsQuietly: an event another
// host forwards to a draining host that gives the object up (nobody owns it
// yet) is refused, and its sender places it again; the draining host says
// so as a matter of course. It logged `object event failed ... this host
// does not own the object (it is on "")` at ERROR.
func TestClusterDrainingHostRefusesForwardedEventsQuietly(t *testing.T) {
	c := newTestCluster(t)
	h1, h2 := c.twoHostsOwnedByTheFirst(t, []string{"a"})
	v, err := h2.increment("a") // forwarded to h1, which h2 remembers as the owner
	require.NoError(t, err)
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")
	next, err := h2.increment("a") // forwarded to h1 again: refused, placed again
	require.NoError(t, err)
	assert.Equal(t, v+1, next)
	assert.Equal(t, "h2", c.ownerOf(t, "a"))
	logs := h1.serve.Logs()
	assert.Contains(t, logs, "this host does not own the object (nobody does yet: this host is draining)", "the refusal was logged")
	assert.NotRegexp(t, `it is on \\?"\\?"`, logs, "(quoted in the log line)")
	assert.NotContains(t, logs, "level=ERROR")
}

// TestClusterStoppingHostFailsNoForwardedRequest: a host stopped with
// SIGTERM, as for a restart, without a drain, refuses the events other
// hosts forward to it once it stops taking them, and they place them again
// (the objects move when its lease is revoked): no request through another
// host fails.
func TestClusterStoppingHostFailsNoForwardedRequest(t *testing.T) {
	c := newTestCluster(t)
	names := []string{"a", "b", "c", "d"}
	h1, h2 := c.twoHostsOwnedByTheFirst(t, names)
	load := startLoad(8, names, func(_ int, n string) (int64, error) { return h2.increment(n) })
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, h1.serve.Stop(30*time.Second))
	before := load.done()
	load.waitForMore(before+50, 10*time.Second)
	load.end()
	assert.Empty(t, load.errs, "no request through h2 failed while h1 stopped")
	for _, n := range names {
		assert.Equal(t, strconv.Itoa(len(load.acked[n])+1), h2.get(t, "/counter/"+n))
	}
}

// ownerOf is the host that owns counter name. The fetch of its id comes
// first: it places the object again if, idle, it gave its placement up.
func (c *testCluster) ownerOf(t testing.TB, name string) string {
	t.Helper()
	id := c.hosts["h1"].get(t, "/counter/"+name+"/fetch")
	cli := c.client(t)
	resp, err := cli.Get(context.Background(), "wharf/objects/counter/Counter/", clientv3.WithPrefix())
	require.NoError(t, err)
	for _, kv := range resp.Kvs {
		if strings.Contains(id, string(kv.Key[len("wharf/objects/counter/Counter/"):])[:12]) {
			return string(kv.Value)
		}
	}
	t.Fatalf("counter %s is not placed", name)
	return ""
}

func TestClusterCompactsCommitsIntoSnapshots(t *testing.T) {
	c := newTestCluster(t)
	h1, h2 := c.start(t, "h1"), c.start(t, "h2")
	const n = 1100 // one commit each: more than a snapshot's worth
	for i := range n {
		v, err := h1.increment("s")
		require.NoError(t, err)
		require.Equal(t, int64(i+1), v)
	}
	cli := c.client(t)
	snap, err := cli.Get(context.Background(), "wharf/snapshot/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, snap.Kvs, 1, "the object's commits were compacted")
	commits, err := cli.Get(context.Background(), "wharf/commits/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	assert.Less(t, commits.Count, int64(n-900), "the commits the snapshot holds were deleted")

	// The owner dies; the next owner starts from the snapshot and the
	// commits after it.
	require.Equal(t, "h1", c.owner(t, "s"))
	h1.serve.Kill()
	var v int64
	require.Eventually(t, func() bool {
		v, err = h2.increment("s")
		return err == nil
	}, 10*ttl, 50*time.Millisecond)
	assert.Equal(t, int64(n+1), v)
}

func TestClusterDrainNeedsAHostOfTheSamePlugin(t *testing.T) {
	c := newTestCluster(t)
	h1 := c.start(t, "h1")
	c.startPlugin(t, "h2", "other")
	_, err := h1.increment("x")
	require.NoError(t, err)
	out, err := exec.Command(testutil.BuildWharf(t), "cluster", "drain", "--data-dir", h1.dataDir).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), `no host to move the objects to: no such host in the cluster: no other host serving plugin "counter" takes new objects`)
	v, err := h1.increment("x")
	require.NoError(t, err, "h1 keeps serving")
	assert.Equal(t, int64(2), v)
	assert.Contains(t, c.status(t), "other")
}

// objectsPair is a cluster of two hosts, h1 and h2, serving the objects
// test guest's class Store (binding STORE).
func objectsPair(t *testing.T) (c *testCluster, h1, h2 *testHost) {
	c = newTestCluster(t)
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	const manifest = `name = "objects"
[[durable_objects.bindings]]
name = "STORE"
class_name = "Store"
`
	return c, c.startModule(t, "h1", wasm, manifest), c.startModule(t, "h2", wasm, manifest)
}

// TestClusterStopIsNotHeldByAForwardedEvent: a host stopped while it runs
// a long event forwarded to it by another host stops within the ingress's
// grace (10 s), as it does with a long event of its own client: its peer
// server is shut down with the ingress, and closing it cancels the event.
// The peer server stopped only after the worker had closed, which waited
// for the event to reach its time limit (30 s). The forwarded call ends,
// and the object is served by the other host after.
func TestClusterStopIsNotHeldByAForwardedEvent(t *testing.T) {
	_, h1, h2 := objectsPair(t)
	code, body := h1.call(t, "slow", "Events", "")
	require.Equal(t, http.StatusOK, code, body) // placed on h1
	slept := make(chan string, 1)
	go func() {
		code, body := h2.call(t, "slow", "Sleep", "60000")
		slept <- fmt.Sprint(code, " ", body)
	}()
	time.Sleep(time.Second) // the event runs on h1
	start := time.Now()
	require.NoError(t, h1.serve.Stop(60*time.Second))
	took := time.Since(start)
	assert.Less(t, took, 20*time.Second, "the stop waited for the forwarded event")
	select {
	case got := <-slept:
		t.Logf("the forwarded call ended after %v: %s", time.Since(start), got)
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarded call did not end with its host")
	}
	code, body = h2.call(t, "slow", "Events", "")
	assert.Equal(t, http.StatusOK, code, "the object is served on h2: %s", body)
}

// TestClusterDrainTimeoutSaysWhatIsLeft: a drain given --timeout that
// passes while an object's event runs on (it moves only after it) fails,
// naming the object left, and the host serves on, draining: the event
// ends well, the object moves once it has, a request through the host
// reaches it there, and a drain again returns once it has moved.
func TestClusterDrainTimeoutSaysWhatIsLeft(t *testing.T) {
	c, h1, _ := objectsPair(t)
	code, body := h1.call(t, "slow", "Events", "")
	require.Equal(t, http.StatusOK, code, body)
	id := h1.get(t, "/store-id/slow")
	owner := func() string {
		resp, err := c.client(t).Get(context.Background(), "wharf/objects/objects/Store/"+id)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, "placed")
		return string(resp.Kvs[0].Value)
	}
	require.Equal(t, "h1", owner())
	slept := make(chan string, 1)
	go func() {
		code, body := h1.call(t, "slow", "Sleep", "5000")
		slept <- fmt.Sprint(code, " ", body)
	}()
	time.Sleep(time.Second) // the event runs

	start := time.Now()
	out, err := exec.Command(testutil.BuildWharf(t), "cluster", "drain", "--data-dir", h1.dataDir, "--timeout", "1s").CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Less(t, time.Since(start), 3*time.Second, "it gave up at its timeout")
	assert.Equal(t, "wharf: not drained within 1s; this host drains on (it takes no object, and forwards their requests), and wharf cluster drain again waits for the rest: "+
		"1 object still owned here, or its container still stopping (Store/"+id+"): context deadline exceeded\n", string(out))

	assert.Equal(t, "200 null", <-slept, "the event under way ended well")
	code, body = h1.call(t, "slow", "Events", "")
	assert.Equal(t, http.StatusOK, code, "the host serves on: %s", body)
	assert.Equal(t, "h2", owner(), "the object moved, and h1 forwards to it")
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")
	assert.Contains(t, c.status(t), "draining")
}

// TestClusterDrainTimeoutBeforeMarkingSaysTheHostServesOn: a drain whose
// --timeout passes before it marked the host draining (here at once)
// says the host serves on as before, not that it drains on, and it does:
// status shows it serving, and a drain again drains it.
func TestClusterDrainTimeoutBeforeMarkingSaysTheHostServesOn(t *testing.T) {
	c, h1, _ := objectsPair(t)
	out, err := exec.Command(testutil.BuildWharf(t), "cluster", "drain", "--data-dir", h1.dataDir, "--timeout", "1ns").CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Regexp(t, `^wharf: not drained within 1ns, which passed before the host was marked draining: it serves on as before, and wharf cluster drain again drains it: `+
		`(listing the hosts to move the objects to|marking the host as draining): context deadline exceeded\n$`, string(out))
	assert.NotContains(t, c.status(t), "draining", "the host serves on")
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")
	assert.Contains(t, c.status(t), "draining")
}

// TestClusterForwardedFetchKeepsItsBody: a fetch with a body that reaches
// a host which no longer owns the object (it drained) is placed again and
// sent to the new owner with its body whole: the sender keeps up to 256
// KiB of a body it forwards. A bigger one is sent whole or the request
// fails, never the rest of a body the old host was sent already.
func TestClusterForwardedFetchKeepsItsBody(t *testing.T) {
	c, h1, h2 := objectsPair(t)
	post := func(h *testHost, body string) (int, string) {
		resp, err := http.Post(h.serve.URL+"/fetch/STORE/k/echo", "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post(h1, "placed on h1")
	require.Equal(t, http.StatusOK, code, body)
	require.True(t, strings.HasSuffix(body, " /echo placed on h1"), body)
	code, body = post(h2, "forwarded to h1") // h2 remembers that h1 owns it
	require.Equal(t, http.StatusOK, code, body)
	require.True(t, strings.HasSuffix(body, " /echo forwarded to h1"), body)
	postTo := func(h *testHost, key, body string) (int, string) {
		resp, err := http.Post(h.serve.URL+"/fetch/STORE/"+key+"/echo", "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body = postTo(h1, "big", "placed on h1")
	require.Equal(t, http.StatusOK, code, body)
	code, _ = postTo(h2, "big", "forwarded to h1")
	require.Equal(t, http.StatusOK, code)

	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")
	// h2 sends this to h1 first, which answers that it no longer owns the
	// object only after the body went out.
	code, body = post(h2, "hello after the drain")
	require.Equal(t, http.StatusOK, code, "a small body is sent again to the new owner: %s", body)
	assert.True(t, strings.HasSuffix(body, " /echo hello after the drain"), "the object got another body: %q", body)
	code, body = post(h2, "and the next one")
	require.Equal(t, http.StatusOK, code, body)
	assert.True(t, strings.HasSuffix(body, " /echo and the next one"), body)

	big := strings.Repeat("b", 300<<10)
	code, body = postTo(h2, "big", big)
	if code == http.StatusOK {
		assert.True(t, strings.HasSuffix(body, " /echo "+big), "the object got another body (%d bytes)", len(body))
	} else {
		assert.Contains(t, body, "the object's event failed")
		assert.True(t, h2.serve.WaitLog("a body over 256 KiB cannot be sent again", 5*time.Second), "h2 says why")
	}
	code, body = postTo(h2, "big", "after the big one")
	require.Equal(t, http.StatusOK, code, body)
}

// TestClusterWaitsOutTheOwnersLease: with a lease TTL longer than the
// default, a request for an object whose owner was killed waits until the
// lease runs out (13 to 20 s after the kill: it was renewed every third of
// its TTL) and the object moves, then is served. Forwarding gave up after
// the default TTL and 5 s (10 s), failing the requests meanwhile.
func TestClusterWaitsOutTheOwnersLease(t *testing.T) {
	c := newTestCluster(t)
	c.ttl = 20 * time.Second
	h1, h2 := c.start(t, "h1"), c.start(t, "h2")
	_, err := h1.increment("k")
	require.NoError(t, err)
	owner, survivor := h1, h2
	if c.owner(t, "k") == "h2" {
		owner, survivor = h2, h1
	}
	_, err = survivor.increment("k") // the survivor learns where k is
	require.NoError(t, err)
	owner.serve.Kill()
	start := time.Now()
	v, err := survivor.increment("k")
	require.NoError(t, err, "after %s", time.Since(start))
	assert.Equal(t, int64(3), v)
	assert.Greater(t, time.Since(start), 10*time.Second, "it waited for the lease")
	t.Logf("served after %s", time.Since(start))
}

// TestClusterRefusesAPeerAddressThatDoesNotReachTheHost: a host whose
// --cluster-advertise reaches another host, or nothing, is refused at
// start, and leaves nothing in etcd. It joined, and every event other
// hosts forwarded to it failed after a wait.
func TestClusterRefusesAPeerAddressThatDoesNotReachTheHost(t *testing.T) {
	c := newTestCluster(t)
	h1 := c.start(t, "h1")
	require.NoError(t, cluster.IssueHost(c.certs, "h2"))
	dir := t.TempDir()
	wasm, err := os.ReadFile(c.wasm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plugin.wasm"), wasm, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("main = \"plugin.wasm\"\nname = \"counter\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n"), 0o644))
	for _, tc := range []struct{ advertise, want string }{
		{h1.peer, "certificate is valid for h1, not h2"},
		{testutil.FreeLoopbackAddr(t), "connection refused"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, testutil.BuildWharf(t), "serve", dir, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--cluster", "etcd="+c.etcd, "--cluster-name", "h2", "--cluster-listen", testutil.FreeLoopbackAddr(t),
			"--cluster-advertise", tc.advertise, "--cluster-certs", c.certs).CombinedOutput()
		cancel()
		require.Error(t, err, "%s", out)
		assert.Contains(t, string(out), "this host's peer address "+tc.advertise+" does not reach it", tc.advertise)
		assert.Contains(t, string(out), tc.want, tc.advertise)
	}
	_, err = h1.increment("k")
	assert.NoError(t, err, "h1 serves on")
}

// twoHostsOwnedByTheFirst starts hosts h1 and h2 and places the counters
// names on h1, where their first increments arrive.
func (c *testCluster) twoHostsOwnedByTheFirst(t *testing.T, names []string) (h1, h2 *testHost) {
	h1, h2 = c.start(t, "h1"), c.start(t, "h2")
	for _, n := range names {
		_, err := h1.increment(n)
		require.NoError(t, err)
		require.Equal(t, "h1", c.ownerOf(t, n))
	}
	return h1, h2
}

// TestClusterShowsHostsServingAnotherBuild: hosts serving two builds of
// one plugin (a rolling upgrade) all serve, and each logs one warning
// naming the hosts and their builds; wharf cluster status shows every
// host's build. Hosts of the same build warn of nothing. A host serving
// another build joined silently.
func TestClusterShowsHostsServingAnotherBuild(t *testing.T) {
	c := newTestCluster(t)
	wasm, err := os.ReadFile(c.wasm)
	require.NoError(t, err)
	// The same module with a custom section more: another build.
	upgraded := append(slices.Clone(wasm), 0x00, 0x06, 0x04, 'w', 'h', 'x', '1', 0x01)
	upgradedPath := filepath.Join(t.TempDir(), "upgraded.wasm")
	require.NoError(t, os.WriteFile(upgradedPath, upgraded, 0o644))
	oldBuild, newBuild := cluster.BuildOf(wasm), cluster.BuildOf(upgraded)
	require.NotEqual(t, oldBuild, newBuild)

	h1, h2 := c.start(t, "h1"), c.start(t, "h2")
	_, err = h2.increment("k")
	require.NoError(t, err)
	const warning = "serve different builds of the plugin"
	h3 := c.startModule(t, "h3", upgradedPath, counterManifest)
	require.True(t, h3.serve.WaitLog(warning, 10*time.Second), "the joining host warns:\n%s", h3.serve.Logs())
	for _, h := range []*testHost{h1, h2} {
		require.True(t, h.serve.WaitLog("h3="+newBuild, 10*time.Second), "%s warns when h3 joins:\n%s", h.name, h.serve.Logs())
	}
	warnings := func(h *testHost) []string {
		var out []string
		for _, l := range strings.Split(h.serve.Logs(), "\n") {
			if strings.Contains(l, warning) {
				out = append(out, l)
			}
		}
		return out
	}
	w3 := warnings(h3)
	require.Len(t, w3, 1, "one warning")
	assert.Contains(t, w3[0], `this_host="h3=`+newBuild+`" other_hosts="h1=`+oldBuild+",h2="+oldBuild+`"`)
	for _, h := range []*testHost{h1, h2} {
		w := warnings(h)
		require.Len(t, w, 1, "%s: one warning, about h3 only (h1 and h2 serve one build)", h.name)
		assert.Contains(t, w[0], `this_host="`+h.name+"="+oldBuild+`" other_hosts="h3=`+newBuild+`"`)
	}
	// Every host serves: the upgrade is not refused.
	for i, h := range []*testHost{h1, h2, h3} {
		v, err := h.increment("k")
		require.NoError(t, err)
		assert.Equal(t, int64(i+2), v)
	}
	status := c.status(t)
	assert.Regexp(t, `h1\s+counter\s+`+oldBuild+`\s`, status)
	assert.Regexp(t, `h2\s+counter\s+`+oldBuild+`\s`, status)
	assert.Regexp(t, `h3\s+counter\s+`+newBuild+`\s`, status)
}

// TestClusterRefusesADataDirectoryOfAnotherHistory: a host whose data
// directory holds the object databases of a cluster whose etcd was then
// wiped (or replaced) is refused, saying what happened and what to do:
// serving them on the new cluster lost acknowledged increments and took
// counters back. With --cluster-adopt it serves the new cluster's values,
// its old data moved aside. It served its old databases.
func TestClusterRefusesADataDirectoryOfAnotherHistory(t *testing.T) {
	wiped := testetcd.Start(t, 1) // stops after the cluster's cleanup
	c := newTestCluster(t)
	h1 := c.start(t, "h1")
	for range 5 {
		_, err := h1.increment("k")
		require.NoError(t, err)
	}
	require.NoError(t, h1.serve.Stop(30*time.Second))
	// Restarted on its cluster, it serves on.
	c.start(t, "h1")
	v, err := h1.increment("k")
	require.NoError(t, err)
	require.Equal(t, int64(6), v)
	require.NoError(t, h1.serve.Stop(30*time.Second))

	// etcd is wiped (here: a new one); another host writes there first.
	c.etcd = wiped
	h2 := c.start(t, "h2")
	for i := range 2 {
		v, err := h2.increment("k")
		require.NoError(t, err)
		require.Equal(t, int64(i+1), v)
	}

	_, args := c.serveArgs(t, "h1", c.wasm, counterManifest)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	out, err := exec.CommandContext(ctx, testutil.BuildWharf(t), append([]string{"serve"}, args...)...).CombinedOutput()
	cancel()
	require.Error(t, err, "h1 started on another cluster's history:\n%s", out)
	t.Logf("refused:\n%s", out)
	for _, want := range []string{"holds object data of another cluster: it joined cluster ", "its 1 object database(s)",
		"its etcd was wiped or replaced, or --cluster names another etcd", "--cluster-adopt", "move the data directory away"} {
		assert.Contains(t, string(out), want)
	}
	assert.NotContains(t, c.status(t), "h1", "the refused host did not join")

	// With --cluster-adopt it serves the new cluster's counter; its old
	// databases are kept aside.
	h1 = c.startModule(t, "h1", c.wasm, counterManifest, "--cluster-adopt")
	assert.True(t, h1.serve.WaitLog("object data of the cluster it joined before was moved aside", 0), h1.serve.Logs())
	v, err = h1.increment("k")
	require.NoError(t, err)
	assert.Equal(t, int64(3), v)
	v, err = h2.increment("k")
	require.NoError(t, err)
	assert.Equal(t, int64(4), v)
	kept, err := filepath.Glob(filepath.Join(h1.dataDir, "objects.cluster-*", "Counter", "*.sqlite"))
	require.NoError(t, err)
	assert.Len(t, kept, 1, "the old object database is kept aside")

	// Restarted, it serves on without --cluster-adopt.
	require.NoError(t, h1.serve.Stop(30*time.Second))
	h1 = c.start(t, "h1")
	v, err = h1.increment("k")
	require.NoError(t, err)
	assert.Equal(t, int64(5), v)
}

// TestClusterHostLeavesWhenEtcdLosesItsData: etcd loses its data under a
// running host (its keys and the host's lease are gone, as when it is
// wiped): the host does not rejoin the new cluster, and serves no object
// instead of a value the new cluster's empty log took back. It rejoined
// and counted from 0 again.
func TestClusterHostLeavesWhenEtcdLosesItsData(t *testing.T) {
	c := newTestCluster(t)
	h1 := c.start(t, "h1")
	for range 3 {
		_, err := h1.increment("k")
		require.NoError(t, err)
	}
	cli := c.client(t)
	ctx := t.Context()
	leases, err := cli.Leases(ctx)
	require.NoError(t, err)
	_, err = cli.Delete(ctx, "wharf/", clientv3.WithPrefix())
	require.NoError(t, err)
	for _, l := range leases.Leases {
		_, err := cli.Revoke(ctx, l.ID)
		require.NoError(t, err)
	}
	assert.True(t, h1.serve.WaitLog("the cluster's etcd lost its data", 10*time.Second), h1.serve.Logs())
	v, err := h1.increment("k")
	require.Error(t, err, "served %d", v)
	assert.NotContains(t, c.status(t), "h1", "h1 did not rejoin")
}

// TestClusterForwardedCallKeepsSentinels: an object method's error that
// wraps one of the SDK's errors matches it at a caller on another host of
// the cluster, as on the owner, with the method's message.
func TestClusterForwardedCallKeepsSentinels(t *testing.T) {
	c, h1, h2 := objectsPair(t)
	fail := func(h *testHost, name string) (matches, body string) {
		resp, err := http.Post(h.serve.URL+"/call/STORE/k/Fail", "application/json", strings.NewReader(`{"Name":"`+name+`","Wrapped":true}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, string(b))
		return resp.Header.Get("X-Matches"), string(b)
	}
	owner := func() string {
		id := h1.get(t, "/store-id/k")
		resp, err := c.client(t).Get(context.Background(), "wharf/objects/objects/Store/"+id)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1, "k is placed")
		return string(resp.Kvs[0].Value)
	}
	for _, c := range []struct{ name, matches, body string }{
		{"ErrNotRunning", "ErrNotRunning", "call Fail: loading config: wharf: the container is not running\n"},
		{"ErrEventOver", "ErrEventOver,ErrTimeout", "call Fail: loading config: wharf: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads)\n"},
		{"ErrBusy", "ErrBusy", "call Fail: loading config: wharf: already in use\n"},
	} {
		for _, h := range []*testHost{h1, h2} { // h1 places k, h2 forwards to it
			matches, body := fail(h, c.name)
			assert.Equal(t, c.matches, matches, "through %s", h.name)
			assert.Equal(t, c.body, body, "through %s", h.name)
		}
	}
	assert.Equal(t, "h1", owner(), "h2's calls went to h1")
}
