package containerd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestInSnapshotOfManyLayers: inSnapshot reads an overlay of 60 layers
// with long paths (their options, named in full, pass the page mount(2)
// takes), its upper directory on top (a named pipe there covers a file
// below) and its lowest layer at the bottom, and mounts nothing in
// wharf's mount namespace, during the call or after. Its thread, when it
// was the main one, stayed in the namespace of the mount for good, which
// /proc/self then showed (MountsUnder reads it); another ended with the
// call, which sent SIGTERM to the containerd it had started (Pdeathsig):
// the thread lives on.
func TestInSnapshotOfManyLayers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("a-long-directory-name-", 5))
	layer := func(name string) string {
		l := filepath.Join(dir, name, "fs")
		require.NoError(t, os.MkdirAll(filepath.Join(l, "etc"), 0o755))
		return l
	}
	var lowers []string
	for i := range 60 {
		lowers = append(lowers, layer(fmt.Sprint(i)))
	}
	require.NoError(t, os.WriteFile(filepath.Join(lowers[59], "etc", "group"), []byte("from the lowest layer"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(lowers[0], "etc", "passwd"), []byte("covered"), 0o644))
	upper := layer("upper")
	require.NoError(t, unix.Mkfifo(filepath.Join(upper, "etc", "passwd"), 0o644))
	work := filepath.Join(dir, "work")
	require.NoError(t, os.Mkdir(work, 0o755))
	options := []string{"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(lowers, ":")}
	require.Greater(t, len(strings.Join(options, ",")), os.Getpagesize())

	// /proc/self is the main thread's, whose namespace is wharf's.
	mountedInWharfs := func() []string {
		mountinfo, err := os.ReadFile("/proc/self/mountinfo")
		require.NoError(t, err)
		var at []string
		for line := range strings.Lines(string(mountinfo)) {
			if strings.Fields(line)[4] == os.TempDir() {
				at = append(at, line)
			}
		}
		return at
	}
	for i := range 20 { // a goroutine may start on any thread, the main one too
		var group []byte
		var passwdErr error
		var during []string
		var tid int
		err := inSnapshot([]mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}, func(root int) error {
			during, tid = mountedInWharfs(), unix.Gettid()
			f, err := openUnder(root, "etc/group")
			if err != nil {
				return err
			}
			defer f.Close()
			group, err = io.ReadAll(f)
			_, passwdErr = openUnder(root, "etc/passwd")
			return err
		})
		require.NoError(t, err)
		assert.Equal(t, "from the lowest layer", string(group))
		assert.ErrorIs(t, passwdErr, errNotAFile)
		assert.ErrorContains(t, passwdErr, "open /etc/passwd: not a regular file (a named pipe)")
		assert.Empty(t, during, "mounted in wharf's namespace (call %d)", i)
		require.Empty(t, mountedInWharfs(), "left mounted in wharf's namespace (call %d)", i)
		assert.DirExists(t, fmt.Sprintf("/proc/self/task/%d", tid), "its thread ended (call %d)", i)
	}
	entries, err := os.ReadDir(upper)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "the snapshot is as it was")
}
