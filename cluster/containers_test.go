package cluster_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testetcd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// webappManifest is examples/webapp's manifest, without its main: a
// Container class whose container serves a page naming it.
const webappManifest = `name = "webapp"
[[durable_objects.bindings]]
name = "APP"
class_name = "App"

[[containers]]
class_name = "App"
image = "wharf.test/busybox:latest"
sleep_after = "2m"
ready_on = [{ path = "/index.html" }]
`

// startWebapp runs host name serving examples/webapp (manifest, after
// webappManifest) with extra arguments, with the busybox image in its
// containerd; it checks that the host leaves nothing once the test ends.
func (c *testCluster) startWebapp(t *testing.T, name, wasm, manifest string, extra ...string) *testHost {
	t.Helper()
	require.NoError(t, cluster.IssueHost(c.certs, name))
	h := &testHost{name: name, dataDir: testutil.CompiledDataDir(t)}
	c.hosts[name] = h
	fixture.ImportBusybox(t, h.dataDir)
	t.Cleanup(func() { // before checkNoKeysLeft, which finds it stopped
		assert.NoError(t, h.serve.Stop(30*time.Second), name)
		assert.Empty(t, containerd.HostLeftovers(h.dataDir), "left by %s", name)
		assert.Empty(t, testutil.Processes(h.dataDir), "a process of %s's containerd survived", name)
	})
	return c.startModule(t, name, wasm, webappManifest+manifest, extra...)
}

// placedOn is the host that owns the webapp's one placed object.
func (c *testCluster) placedOn(t *testing.T) string {
	t.Helper()
	resp, err := c.client(t).Get(context.Background(), "wharf/objects/webapp/App/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	return string(resp.Kvs[0].Value)
}

// containers lists the containers of h as wharf ps -a does.
func (h *testHost) containers(t *testing.T) []admin.Container {
	t.Helper()
	list, err := admin.NewClient(h.dataDir).Containers(context.Background())
	require.NoError(t, err)
	return list
}

// page is what session alice's container serves, through h.
func (h *testHost) page(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(h.serve.URL + "/s/alice/index.html")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

// TestClusterDrainEndsTheObjectsContainer: an object that leaves a host
// (here drained) ends its container there, as its own Destroy would, with
// the log's stop line and why, before the drain says no object is left;
// on its new host its next request starts a container of its own. Its
// container ran on until sleep_after (2m) passed, beside the new host's,
// and the drain said "no object is left" meanwhile.
func TestClusterDrainEndsTheObjectsContainer(t *testing.T) {
	c := newTestCluster(t)
	wasm := testutil.BuildGuest(t, "examples/webapp")
	h1 := c.startWebapp(t, "h1", wasm, "")
	h2 := c.startWebapp(t, "h2", wasm, "")

	first := h1.page(t) // placed on h1, the first host it reached
	require.Equal(t, "h1", c.placedOn(t))
	on1 := h1.containers(t)
	require.Len(t, on1, 1)
	require.Equal(t, admin.StateRunning, on1[0].State)
	pid := int(on1[0].Pid)
	require.NotZero(t, pid)
	assert.Empty(t, h2.containers(t))

	start := time.Now()
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained: no object and none of their containers is left on this host")
	t.Logf("drained in %s", time.Since(start))
	assert.Empty(t, h1.containers(t), "the drained host's container is gone once the drain returns (ps -a)")
	assert.True(t, errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), "the container's process %d still runs", pid)
	tag := containerd.Tag("App", on1[0].Object)
	assert.True(t, h1.serve.WaitLog(tag+" stop", 5*time.Second), "the stop is logged: %s", h1.serve.Logs())
	assert.Regexp(t, `stop" class=App object=\S+ exit_code=0 reason="its object left this host`, h1.serve.Logs(), "it got SIGTERM and the stop grace, and exited cleanly, as at a shutdown")

	second := h2.page(t)
	assert.NotEqual(t, first, second, "a new container serves on h2")
	assert.Equal(t, second, h1.page(t), "h1 forwards to it")
	on2 := h2.containers(t)
	require.Len(t, on2, 1)
	assert.Equal(t, admin.StateRunning, on2[0].State)
	assert.Equal(t, on1[0].Object, on2[0].Object)
	assert.Empty(t, h1.containers(t), "nothing started again on the drained host")
	assert.NotContains(t, strings.ToLower(h2.serve.Logs()), "level=error")
}

// TestClusterOwnerKnowsTheNameOfAForwardedObject: an object whose
// requests reach its host only forwarded (here through a draining host,
// which places nothing and hands the object on) has its name there as on
// the host the name was given to: wharf ps and inspect of its container
// name it, not "-".
func TestClusterOwnerKnowsTheNameOfAForwardedObject(t *testing.T) {
	c := newTestCluster(t)
	wasm := testutil.BuildGuest(t, "examples/webapp")
	h1 := c.startWebapp(t, "h1", wasm, "")
	h2 := c.startWebapp(t, "h2", wasm, "")
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")

	h1.page(t) // session alice, named on h1 only
	require.Equal(t, "h2", c.placedOn(t))
	assert.Empty(t, h1.containers(t))
	on2 := h2.containers(t)
	require.Len(t, on2, 1)
	assert.Equal(t, "alice", on2[0].Name, "the container's name on its host")
	assert.Regexp(t, `(?m)^APP\s+alice\s+App\s+`+on2[0].Object[:16]+`\s+running\s`, c.wharf(t, "ps", "--data-dir", h2.dataDir))
	assert.Contains(t, c.wharf(t, "inspect", "id:"+on2[0].Object, "--data-dir", h2.dataDir), `"name": "alice"`)
}

// TestClusterIdleObjectKeepsItsContainerAndPlacement: an idle object
// whose container runs keeps its placement past idle_timeout, so its
// requests through any host reach that container until sleep_after; it
// gave its placement up idle, and a request through another host started
// a second container there (or, its container destroyed as the object
// left, the container slept at idle_timeout).
func TestClusterIdleObjectKeepsItsContainerAndPlacement(t *testing.T) {
	c := newTestCluster(t)
	wasm := testutil.BuildGuest(t, "examples/webapp")
	const idle = "\n[durable_objects]\nidle_timeout = \"1s\"\n"
	h1 := c.startWebapp(t, "h1", wasm, idle)
	h2 := c.startWebapp(t, "h2", wasm, idle)

	first := h1.page(t)
	time.Sleep(3 * time.Second) // idle thrice over
	assert.Equal(t, "h1", c.placedOn(t), "the idle object kept its placement")
	assert.Equal(t, first, h2.page(t), "forwarded to its container on h1")
	assert.Len(t, h1.containers(t), 1)
	assert.Empty(t, h2.containers(t), "no second container")
}

// TestClusterHostThatMayNotWriteEndsItsContainers: a host whose etcd user
// loses its permission on wharf/ stops serving its objects and lets its
// lease run out, so that other hosts take them; it ends their containers
// as it gives them up (within a lease TTL or two, not at sleep_after,
// 2m), and the object's next request starts a container on the host that
// took it. It ran on beside the new one.
func TestClusterHostThatMayNotWriteEndsItsContainers(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	testetcd.EnableAuth(t, etcd, "root-secret",
		testetcd.User{Name: "wharf", Password: "wharf-secret", Permission: "readwrite", Prefix: cluster.Prefix},
		testetcd.User{Name: "other", Password: "other-secret", Permission: "readwrite", Prefix: cluster.Prefix})
	dir := t.TempDir()
	c := newTestClusterOn(t, etcd, nil)
	c.etcdUser, c.etcdPassword = "root", "root-secret"
	wasm := testutil.BuildGuest(t, "examples/webapp")
	h1 := c.startWebapp(t, "h1", wasm, "", "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", writePassword(t, dir, "wharf", "wharf-secret\n"))
	h2 := c.startWebapp(t, "h2", wasm, "", "--cluster-etcd-user", "other", "--cluster-etcd-password-file", writePassword(t, dir, "other", "other-secret\n"))
	first := h1.page(t)
	require.Equal(t, "h1", c.placedOn(t))
	on1 := h1.containers(t)
	require.Len(t, on1, 1)

	root := c.client(t)
	ctx := context.Background()
	_, err := root.RoleRevokePermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix))
	require.NoError(t, err)
	t.Cleanup(func() { // for h1 to leave etcd as the test ends
		_, err := root.RoleGrantPermission(ctx, "wharf", cluster.Prefix, clientv3.GetPrefixRangeEnd(cluster.Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
		assert.NoError(t, err)
	})
	start := time.Now()
	require.Eventually(t, func() bool {
		return len(h1.containers(t)) == 0 && errors.Is(syscall.Kill(int(on1[0].Pid), 0), syscall.ESRCH)
	}, 3*ttl, 50*time.Millisecond, "h1's container ended as h1 gave its object up")
	t.Logf("h1's container ended %s after the permission was revoked", time.Since(start))
	assert.True(t, h1.serve.WaitLog(containerd.Tag("App", on1[0].Object)+" stop", 5*time.Second), h1.serve.Logs())
	assert.Regexp(t, `stop" class=App object=\S+ exit_code=137 reason="its object left this host`, h1.serve.Logs(), "killed at once: h2 may run the object already")

	var second string
	require.Eventually(t, func() bool { // once h1's lease ran out
		resp, err := http.Get(h2.serve.URL + "/s/alice/index.html")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		second = string(body)
		return resp.StatusCode == http.StatusOK
	}, 10*ttl, 100*time.Millisecond)
	assert.NotEqual(t, first, second, "a new container serves on h2")
	assert.Equal(t, "h2", c.placedOn(t))
	assert.Len(t, h2.containers(t), 1)
	assert.Empty(t, h1.containers(t))
}

// TestClusterHostRestartedAfterAKillEndsItsContainers: a host killed
// (kill -9) while its object's container ran comes back without it: the
// object's placement ended with the host's lease, so the container it
// adopts is of an object another host may run; it destroys it, with a
// warning, and the object's next request starts a new container. It ran
// on, never stopped (until sleep_after, once its object next ran there).
func TestClusterHostRestartedAfterAKillEndsItsContainers(t *testing.T) {
	c := newTestCluster(t)
	wasm := testutil.BuildGuest(t, "examples/webapp")
	h1 := c.startWebapp(t, "h1", wasm, "")
	h2 := c.startWebapp(t, "h2", wasm, "")
	first := h1.page(t)
	on1 := h1.containers(t)
	require.Len(t, on1, 1)

	h1.serve.Kill()
	require.NoError(t, syscall.Kill(int(on1[0].Pid), 0), "the container runs on after its host was killed")
	c.startModule(t, "h1", wasm, webappManifest)
	assert.True(t, h1.serve.WaitLog(`msg="destroying the containers adopted from this host's previous run: their objects' placements ended with it" containers=1`, 5*time.Second), h1.serve.Logs())
	assert.Empty(t, h1.containers(t))
	assert.True(t, errors.Is(syscall.Kill(int(on1[0].Pid), 0), syscall.ESRCH), "the container's process still runs")

	second := h2.page(t)
	assert.NotEqual(t, first, second, "a new container serves")
	assert.Equal(t, second, h1.page(t))
}
