package wharftest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestInitIsKeptInTheUsersCache: the container agent a plugin's tests
// build is one file in the user's cache directory, replaced by each test
// process; it was a scratch directory in /tmp per process (4.7 MB), left
// there after the plugin's last test run, as a plugin's test binary runs
// no TestMain of wharf's to remove it.
func TestInitIsKeptInTheUsersCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv(wire.InitEnv, os.Getenv(wire.InitEnv)) // restored after
	for range 2 {
		require.NoError(t, buildInit(testutil.RepoRoot()))
		want := filepath.Join(cache, "wharf", "wharftest", wire.InitName)
		assert.Equal(t, want, os.Getenv(wire.InitEnv))
		st, err := os.Stat(want)
		require.NoError(t, err)
		assert.NotZero(t, st.Mode()&0o100, "executable")
		entries, err := os.ReadDir(filepath.Dir(want))
		require.NoError(t, err)
		assert.Len(t, entries, 1, "one file, replaced: %v", entries)
	}
}
