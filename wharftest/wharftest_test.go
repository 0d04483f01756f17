package wharftest_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/storage"
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
	p := wharftest.Start(t, wharftest.Options{Dir: objectsPlugin(t)})
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

// objectsPlugin writes the wharf.toml of testdata/guests/objects, its
// class Store bound as STORE, and returns its directory.
func objectsPlugin(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte(fmt.Sprintf(
		"name = \"objects\"\nmain = %q\n[[durable_objects.bindings]]\nname = \"STORE\"\nclass_name = \"Store\"\n",
		filepath.Join(testutil.RepoRoot(), "testdata", "guests", "objects"))), 0o644))
	return dir
}

// TestObjectSQLSpillsIntoTheDataDir: as in wharf serve, an object's
// statement that outgrows SQLite's cache spills to a temporary file in
// <data-dir>/sqlite-tmp, new and its owner's only, of the plugin started
// last whose test still runs, then of the one before; once none runs,
// SQLite's default again. It went to /var/tmp (or $TMPDIR): wharftest set
// no directory.
func TestObjectSQLSpillsIntoTheDataDir(t *testing.T) {
	spillsInto := func(p *wharftest.Plugin, dir string) {
		t.Helper()
		var got [][]int64
		held := testutil.FilesHeldDuring(os.Getpid(), func() {
			require.NoError(t, p.Call("STORE", "big", "SQL", []string{testutil.SpillingSQL}, &got))
		})
		assert.Equal(t, [][]int64{{100000}}, got)
		testutil.CheckTempFilesIn(t, held, dir)
	}
	var firstTemp string
	t.Run("plugins", func(t *testing.T) {
		first := wharftest.Start(t, wharftest.Options{Dir: objectsPlugin(t)})
		firstTemp = filepath.Join(first.DataDir, storage.TempDirName)
		testutil.CheckFreshTempDir(t, firstTemp)
		spillsInto(first, firstTemp)
		t.Run("another", func(t *testing.T) {
			second := wharftest.Start(t, wharftest.Options{Dir: objectsPlugin(t)})
			secondTemp := filepath.Join(second.DataDir, storage.TempDirName)
			testutil.CheckFreshTempDir(t, secondTemp)
			spillsInto(second, secondTemp)
			spillsInto(first, secondTemp) // one directory serves the process
		})
		spillsInto(first, firstTemp)
	})

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "plain.sqlite"))
	require.NoError(t, err)
	defer db.Close()
	var n int64
	held := testutil.FilesHeldDuring(os.Getpid(), func() {
		require.NoError(t, db.QueryRow(testutil.SpillingSQL).Scan(&n), "SQLite's temporary directory is gone with the last plugin's test")
	})
	assert.Equal(t, int64(100000), n)
	for _, f := range held {
		assert.NotContains(t, f, firstTemp)
	}
}
