package wharftest_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/wharftest"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// TestPassingTestLeavesNoRegisteredDataDir: a plugin's test with
// containers registers its data directory for the reclaiming of what a
// killed test leaves (see internal/ephemeral); once it passed, its
// containers are gone with the directory, and so is the registration,
// though a plugin's test binary runs no TestMain of wharf's to forget it
// at its end (this one's does, after the check).
func TestPassingTestLeavesNoRegisteredDataDir(t *testing.T) {
	var data string
	t.Run("plugin", func(t *testing.T) {
		p := wharftest.Start(t, wharftest.Options{Dir: "../examples/sandbox", Images: []string{wharftest.BusyboxImage(t)}})
		data = p.DataDir
	})
	require.NotEmpty(t, data, "the plugin started")
	assert.False(t, ephemeral.Registered(data), "%s is registered still", data)
}
