package main

import (
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/sdk"
)

// TestDescribeAsTheSandboxSDK: a file is described with the hosted Sandbox
// SDK's names and formats: its type apart, the permission bits as ls shows
// them (a directory's mode was once Go's fs.FileMode, 2147484096), the
// owner's permissions and the time in RFC 3339.
func TestDescribeAsTheSandboxSDK(t *testing.T) {
	dir := sdk.FileInfo{Path: "/work/sub", Name: "sub", Size: 4096, Mode: fs.ModeDir | 0o755, ModTime: 1700000000123, IsDir: true}
	b, err := json.Marshal(describe(dir))
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"sub","absolutePath":"/work/sub","relativePath":"sub","type":"directory","size":4096,
		"modifiedAt":"2023-11-14T22:13:20.123Z","mode":"rwxr-xr-x","permissions":{"readable":true,"writable":true,"executable":true}}`, string(b))
	for _, c := range []struct {
		mode       fs.FileMode
		typ, perms string
		r, w, x    bool
	}{
		{0o640, "file", "rw-r-----", true, true, false},
		{0o4711, "file", "rwx--x--x", true, true, true},
		{0o444, "file", "r--r--r--", true, false, false},
		{fs.ModeSymlink | 0o777, "symlink", "rwxrwxrwx", true, true, true},
		{fs.ModeNamedPipe | 0o600, "other", "rw-------", true, true, false},
		{fs.ModeDevice | fs.ModeCharDevice | 0o620, "other", "rw--w----", true, true, false},
		{fs.ModeSocket | 0o755, "other", "rwxr-xr-x", true, true, true},
		{fs.ModeDir | 0o311, "directory", "-wx--x--x", false, true, true},
	} {
		e := describe(sdk.FileInfo{Name: "x", Mode: c.mode})
		assert.Equal(t, c.typ, e.Type, "%v", c.mode)
		assert.Equal(t, c.perms, e.Mode, "%v", c.mode)
		assert.Equal(t, [3]bool{c.r, c.w, c.x}, [3]bool{e.Permissions.Readable, e.Permissions.Writable, e.Permissions.Executable}, "%v", c.mode)
	}
	assert.Equal(t, "a.txt", describe(sdk.FileInfo{Name: "link", Mode: fs.ModeSymlink | 0o777, Target: "a.txt"}).Target)
}
