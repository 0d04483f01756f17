package containerd

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/egress"
)

// eth0Addresses is how many IPv4 addresses the container's eth0 has: 1
// while it has its network, 0 once its link is gone.
func eth0Addresses(t *testing.T, c *Container) string {
	t.Helper()
	_, out, _ := execOut(t, c, ExecSpec{Args: []string{"sh", "-c", "ip -4 addr show eth0 2>/dev/null | grep -c inet"}})
	return out
}

// TestRecoveryOfACopyLeavesTheOriginalsContainers: a copy (cp -a) of the
// data directory of a wharf killed with its containers running has their
// records, and its scope, but their containers are labelled with the
// original's data directory. Recover took each such record for one whose
// container is gone and tore down the network it names: the original's
// container's veth link and network namespace (the scope is the same), so
// the container ran on without a network and the original's next run
// removed it (its gateway address found no link); and the copy's clean
// shutdown removed the firewall table, which is the original's too, so the
// container, had it kept its network, could reach any service on the
// host. The copy leaves the container, network, record and firewall, and
// says whose it is. Here the copy shares
// the original's containerd, where the containers are; a copy with its
// own (copied) containerd sees them alike.
func TestRecoveryOfACopyLeavesTheOriginalsContainers(t *testing.T) {
	data, logger, b1, m1, spec := crashingHost(t)
	removeAllIfFailed(t, data, logger, spec)
	started, err := m1.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	require.NoError(t, err)
	require.Equal(t, "1\n", eth0Addresses(t, started.Container))
	// The wharf is killed: its table and container stay, the kernel
	// releases its scope. Its containerd is the copy's too.
	require.NoError(t, m1.Gateway().CloseKeepingFirewall())
	m1.releaseScope()

	copied := t.TempDir()
	require.NoError(t, os.MkdirAll(journalAt(copied).dir, 0o700))
	raw, err := os.ReadFile(scopeFile(data))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(scopeFile(copied), raw, 0o600))
	rec, err := os.ReadFile(journalAt(data).path(started.ID()))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(journalAt(copied).path(started.ID()), rec, 0o600))
	t.Cleanup(func() { os.RemoveAll(copied) })

	b2, err := OpenBackend(context.Background(), copied, b1.Address, logger)
	require.NoError(t, err)
	m2, err := NewManager(b2, ManagerOptions{Logger: logger})
	require.NoError(t, err)
	adopted, removed, err := m2.Recover(context.Background(), offlinePolicy)
	assert.True(t, OnlyUnexamined(err), "%v", err)
	why := "it is the container of the data directory " + data + ", which this one is a copy of: serve that one to adopt or remove it"
	assert.ErrorContains(t, err, why)
	assert.Equal(t, 0, adopted)
	assert.Equal(t, 0, removed, "the original's container is not the copy's")
	assert.Equal(t, "1\n", eth0Addresses(t, started.Container), "the original's container keeps its network")
	_, err = m2.Start(context.Background(), "Sandbox", "obj1", spec, offlinePolicy("", false), 0)
	assert.ErrorContains(t, err, why, "the copy starts no second container of the object")
	require.NoError(t, m2.Close(context.Background()))
	b2.Close()
	assert.NotEmpty(t, egress.FirewallLeftovers(m1.net.scope), "the firewall that keeps the original's container from the host stays")

	// The original's next run adopts its container, network and all.
	require.NoError(t, b1.Close())
	b3, m3 := nextRun(t, data, logger)
	adopted, removed, err = m3.Recover(context.Background(), offlinePolicy)
	require.NoError(t, err)
	assert.Equal(t, 1, adopted)
	assert.Equal(t, 0, removed)
	require.NoError(t, m3.Close(context.Background()))
	require.NoError(t, RemoveImage(context.Background(), b3.Client, spec.Image, false))
}
