package containerd

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/egress"
)

// TestCloseTwice: a second Close of a manager (and of its gateway) returns
// nil and removes nothing: it failed with "removing the nft table
// wharf-…: no such file or directory", and, once another manager of the
// same data directory had installed its table, it deleted that one, which
// kept that manager's containers from the host.
func TestCloseTwice(t *testing.T) {
	m, image := testManager(t) // its cleanup closes m a third time
	scope := Scope(m.b.DataDir)
	spec := ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}
	_, err := m.Start(context.Background(), "Sandbox", "first", spec, openPolicy(), 0)
	require.NoError(t, err)
	require.NoError(t, m.Close(context.Background()))
	require.Empty(t, egress.FirewallLeftovers(scope), "the first Close removes the table")
	assert.NoError(t, m.Close(context.Background()), "a second Close")
	assert.NoError(t, m.Gateway().Close(), "the gateway's own Close after the manager's")
	assert.NoError(t, m.Gateway().CloseKeepingFirewall())

	// The next manager of the same data directory, with a container.
	m2, err := NewManager(m.b, ManagerOptions{Logger: m.life.log})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			assert.NoError(t, m2.Close(context.Background()))
		}
	})
	mc, err := m2.Start(context.Background(), "Sandbox", "second", spec, openPolicy(), 0)
	require.NoError(t, err)
	table := []string{"nft table ip wharf-" + scope}
	require.Equal(t, table, egress.FirewallLeftovers(scope))

	assert.NoError(t, m.Close(context.Background()), "the old manager's Close again")
	assert.NoError(t, m.Gateway().Close(), "the old gateway's Close again")
	assert.Equal(t, table, egress.FirewallLeftovers(scope), "the new manager's table stays")
	assert.False(t, mc.Exited(), "the new manager's container runs on")
	code, out, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"echo", "still here"}})
	assert.Equal(t, uint32(0), code)
	assert.Equal(t, "still here\n", out)
	assert.Len(t, m2.List(), 1)

	closed = true
	require.NoError(t, m2.Close(context.Background()))
	assert.Empty(t, egress.FirewallLeftovers(scope), "the new manager's Close removes its table")
	assert.NoError(t, m2.Close(context.Background()))
}

// TestStartAfterCloseIsRefused: Manager.Start once Close has begun is
// refused: it started the container, which ran with the gateway's
// firewall table removed (none left in the scope) until a second Close.
func TestStartAfterCloseIsRefused(t *testing.T) {
	m, image := testManager(t)
	scope := Scope(m.b.DataDir)
	require.NoError(t, m.Close(context.Background()))
	spec := ContainerSpec{Image: image, Entrypoint: []string{"sleep", "3600"}}
	_, err := m.Start(context.Background(), "Sandbox", "late", spec, openPolicy(), 0)
	require.ErrorIs(t, err, ErrManagerClosed)
	assert.Empty(t, m.List(), "no container")
	assert.Empty(t, egress.FirewallLeftovers(scope))
}
