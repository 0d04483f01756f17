package testimages

import (
	"crypto/sha256"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBusyboxIsReproducible: two builds of the busybox image are the same
// bytes, so its digest (which make demo and the tests import) does not
// change between runs. (It wrote /etc/group and /etc/passwd in map order,
// reversed in one build of eight; three builds catch that a third of the
// time.) Each is a new build, not Busybox's copy of the first.
func TestBusyboxIsReproducible(t *testing.T) {
	var digests []string
	for range 3 {
		path, err := busybox(t.TempDir(), BusyboxRef, "")
		require.NoError(t, err)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		digests = append(digests, fmt.Sprintf("%x", sha256.Sum256(data)))
	}
	assert.Equal(t, digests[0], digests[1])
	assert.Equal(t, digests[0], digests[2])
	// What Busybox writes, built once and copied, is that build.
	for range 2 {
		path, err := Busybox(t.TempDir())
		require.NoError(t, err)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, digests[0], fmt.Sprintf("%x", sha256.Sum256(data)))
	}
}
