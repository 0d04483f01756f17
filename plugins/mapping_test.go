package plugins

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMappedFileCutShortIsDamaged: a cached instrumented module that
// another program cuts short while wharf has it mapped (or whose disk
// cannot read a page) is damaged, an error: the SIGBUS of the read ended
// wharf ("unexpected fault address", "fatal error: fault"). A fault
// elsewhere is not taken for it.
func TestMappedFileCutShortIsDamaged(t *testing.T) {
	mapped := func() (string, []byte, *mapping) {
		path := filepath.Join(t.TempDir(), "module.wasm")
		require.NoError(t, writeChecked(path, make([]byte, 1<<20)))
		data, m, err := mapChecked(path)
		require.NoError(t, err)
		t.Cleanup(m.unmap)
		return path, data, m
	}
	var seen byte
	read := func(data []byte) func() error {
		return func() error {
			for _, b := range data {
				seen |= b
			}
			return nil
		}
	}
	path, data, m := mapped()
	require.NoError(t, m.read(read(data)))
	require.NoError(t, os.Truncate(path, 0))
	err := m.read(read(data))
	assert.ErrorIs(t, err, errDamaged)
	assert.ErrorContains(t, err, path+": checksum mismatch: reading it faulted (cut short since it was mapped, or unreadable)")

	otherPath, other, _ := mapped()
	require.NoError(t, os.Truncate(otherPath, 0))
	assert.Panics(t, func() { m.read(read(other)) }, "a fault outside the mapping read")
	assert.Zero(t, seen)
}
