package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"
)

// TestNameRemovesTheNamespacesOfEndedTests: the namespaces a killed test
// process left (its cleanups never ran) go when a later one names its
// own; those of running processes stay.
func TestNameRemovesTheNamespacesOfEndedTests(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	left := fmt.Sprintf("tnt%d-1", ended.Process.Pid)
	mine := fmt.Sprintf("tnt%d-1x", os.Getpid())
	for _, name := range []string{left, left + "-sub", mine} {
		ns := InNamespace(t, name, func() {})
		ns.Close()
		t.Cleanup(func() { netns.DeleteNamed(name) })
	}
	name := Name("tnt")
	assert.Equal(t, fmt.Sprintf("tnt%d-%d", os.Getpid(), seq.Load()), name)
	assert.NoFileExists(t, filepath.Join("/run/netns", left))
	assert.NoFileExists(t, filepath.Join("/run/netns", left+"-sub"), "names made from an ended process's go too")
	assert.FileExists(t, filepath.Join("/run/netns", mine), "a running process's namespace stays")
}
