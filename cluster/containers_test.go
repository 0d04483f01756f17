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

// startWebapp runs host name serving examples/webapp, with the busybox
// image in its containerd.
func (c *testCluster) startWebapp(t *testing.T, name, wasm string) *testHost {
	t.Helper()
	require.NoError(t, cluster.IssueHost(c.certs, name))
	h := &testHost{name: name, dataDir: testutil.CompiledDataDir(t)}
	c.hosts[name] = h
	fixture.ImportBusybox(t, h.dataDir)
	return c.startModule(t, name, wasm, webappManifest)
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
	h1 := c.startWebapp(t, "h1", wasm)
	h2 := c.startWebapp(t, "h2", wasm)
	t.Cleanup(func() { // before checkNoKeysLeft, which finds them stopped
		for _, h := range []*testHost{h1, h2} {
			assert.NoError(t, h.serve.Stop(30*time.Second), h.name)
			assert.Empty(t, containerd.HostLeftovers(h.dataDir), "left by %s", h.name)
			assert.Empty(t, testutil.Processes(h.dataDir), "a process of %s's containerd survived", h.name)
		}
	})

	first := h1.page(t) // placed on h1, the first host it reached
	resp, err := c.client(t).Get(context.Background(), "wharf/objects/webapp/App/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "h1", string(resp.Kvs[0].Value))
	on1 := h1.containers(t)
	require.Len(t, on1, 1)
	require.Equal(t, admin.StateRunning, on1[0].State)
	pid := int(on1[0].Pid)
	require.NotZero(t, pid)
	assert.Empty(t, h2.containers(t))

	start := time.Now()
	assert.Contains(t, c.wharf(t, "cluster", "drain", "--data-dir", h1.dataDir), "drained")
	t.Logf("drained in %s", time.Since(start))
	assert.Empty(t, h1.containers(t), "the drained host's container is gone once the drain returns (ps -a)")
	assert.True(t, errors.Is(syscall.Kill(pid, 0), syscall.ESRCH), "the container's process %d still runs", pid)
	tag := containerd.Tag("App", on1[0].Object)
	assert.True(t, h1.serve.WaitLog(tag+" stop", 5*time.Second), "the stop is logged: %s", h1.serve.Logs())
	assert.Contains(t, h1.serve.Logs(), "its object left this host")

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
