package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestObjectSQLSpillsIntoTheDataDir: an object's statement whose DISTINCT
// outgrows SQLite's cache spills it to a temporary file in
// <data-dir>/sqlite-tmp, which wharf serve empties at start and keeps
// its owner's only, and it serves on; the file went to /var/tmp (or
// $TMPDIR), so object SQL could fill the host's root filesystem.
func TestObjectSQLSpillsIntoTheDataDir(t *testing.T) {
	dir := t.TempDir()
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	manifest := "name = \"objects\"\nmain = \"" + wasm + "\"\n[[durable_objects.bindings]]\nname = \"STORE\"\nclass_name = \"Store\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte(manifest), 0o644))
	data := testutil.CompiledDataDir(t)
	tmp := filepath.Join(data, storage.TempDirName)
	require.NoError(t, os.MkdirAll(tmp, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "etilqs_left"), []byte("a crash's"), 0o600))
	srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)

	testutil.CheckFreshTempDir(t, tmp)

	call := func(query string) string {
		t.Helper()
		resp, err := http.Post(srv.URL+"/call/STORE/big/SQL", "application/json", strings.NewReader(`["`+query+`"]`))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		return strings.TrimSpace(string(body))
	}
	var got string
	held := testutil.FilesHeldDuring(srv.Pid(), func() {
		got = call(testutil.SpillingSQL)
	})
	assert.Equal(t, "[[100000]]", got)
	testutil.CheckTempFilesIn(t, held, tmp)
	assert.Equal(t, "[[1]]", call("SELECT 1"), "wharf serves on")
}
