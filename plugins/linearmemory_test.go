package plugins

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMappedMemoryGrowsInPlace: a mapped linear memory grows without
// moving or losing what it holds, up to its maximum and not past it.
func TestMappedMemoryGrowsInPlace(t *testing.T) {
	m := allocateMapped(0, 4<<20)
	require.IsType(t, &mappedMemory{}, m)
	b := m.Reallocate(64 << 10)
	require.Len(t, b, 64<<10)
	b[0], b[len(b)-1] = 1, 2
	grown := m.Reallocate(1 << 20)
	require.Len(t, grown, 1<<20)
	assert.Equal(t, unsafe.SliceData(b), unsafe.SliceData(grown), "grown in place")
	assert.Equal(t, []byte{1, 2}, []byte{grown[0], grown[64<<10-1]}, "kept")
	grown[len(grown)-1] = 3 // usable
	assert.Len(t, m.Reallocate(4<<20), 4<<20)
	assert.Nil(t, m.Reallocate(4<<20+1), "not past the maximum")
	assert.Len(t, m.Reallocate(64<<10), 64<<10, "asking less keeps the pages")
	m.Free()
	m.Free() // the module's close, then a cleanup: once
}
