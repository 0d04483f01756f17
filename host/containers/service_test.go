package containers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/manifest"
)

// exitedContainer is a container whose main process exited with code.
type exitedContainer struct {
	Container // the methods the test does not use
	code      uint32
}

func (c exitedContainer) WaitExit() (uint32, string, error) { return c.code, "", nil }
func (c exitedContainer) OutOfMemory() bool                 { return false }

// oneContainer is a backend holding at most one container, c, until
// Destroy removes it.
type oneContainer struct {
	Backend // the methods the test does not use
	c       Container
}

func (b *oneContainer) Get(class, object string) (Container, bool) { return b.c, b.c != nil }

func (b *oneContainer) Destroy(ctx context.Context, class, object, reason string) error {
	b.c = nil
	return nil
}

// TestMonitorWaitsForTheContainerItFound: a monitor asked for while no
// start or destroy is under way waits for the container there is then,
// and reports its exit even if a destroy removed it before the wait ran
// (it said the container was not running).
func TestMonitorWaitsForTheContainerItFound(t *testing.T) {
	s := New(&oneContainer{c: exitedContainer{code: 3}}, map[string]manifest.Container{"BOX": {}}, &Hooks{})
	wait, err := s.Monitor("BOX", "b")
	require.NoError(t, err)
	op, err := s.Destroy(context.Background(), "BOX", "b", "")
	require.NoError(t, err)
	require.NoError(t, op.Run())
	err = wait()
	assert.Equal(t, abi.ContainerExitError(3, ""), err)
	assert.NotErrorIs(t, err, abi.StatusNotFound)
}
