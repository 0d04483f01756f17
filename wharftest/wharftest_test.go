package wharftest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/sdk"
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

// TestCallErrorsMatchTheSDKs: a method's error that is one of the SDK's
// errors, or wraps one, matches it at Call's caller, as at the caller of
// sdk's Stub.Call, with the status's sentinel; it matched only the status
// (abi.StatusNotFound, not sdk.ErrNotFound nor sdk.ErrNotRunning). An
// error of the method's own matches none of them.
func TestCallErrorsMatchTheSDKs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte(fmt.Sprintf(
		"name = \"objects\"\nmain = %q\n[[durable_objects.bindings]]\nname = \"STORE\"\nclass_name = \"Store\"\n",
		filepath.Join(testutil.RepoRoot(), "testdata", "guests", "objects"))), 0o644))
	p := wharftest.Start(t, wharftest.Options{Dir: dir})
	fail := func(name string, wrapped bool) error {
		return p.Call("STORE", "s", "Fail", map[string]any{"Name": name, "Wrapped": wrapped}, nil)
	}

	err := fail("ErrNotRunning", true)
	assert.EqualError(t, err, `STORE "s": Fail: IO: loading config: wharf: the container is not running`)
	assert.ErrorIs(t, err, sdk.ErrNotRunning)
	assert.ErrorIs(t, err, abi.StatusIO)
	assert.NotErrorIs(t, err, sdk.ErrNotFound, "only what the method's error matched")

	err = fail("ErrNotFound", false)
	assert.EqualError(t, err, `STORE "s": Fail: NOTFOUND: wharf: not found`)
	for _, want := range []error{sdk.ErrNotFound, abi.StatusNotFound} {
		assert.ErrorIs(t, err, want)
	}
	assert.NotErrorIs(t, err, sdk.ErrNotRunning)

	err = p.Call("STORE", "s", "Nope", nil, nil)
	assert.ErrorContains(t, err, `has no method "Nope"`)
	for _, sentinel := range []error{sdk.ErrNotRunning, sdk.ErrBusy, sdk.ErrTimeout} {
		assert.NotErrorIs(t, err, sentinel, "an error of the host's own")
	}
	assert.EqualError(t, p.Call("NONE", "s", "Fail", nil, nil), `no Durable Object binding named "NONE" in the manifest`)
}
