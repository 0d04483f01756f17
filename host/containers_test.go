package host

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/plugins"
)

const containersManifest = objectsManifest + `[[containers]]
class_name = "Store"
image = "wharf.test/busybox:latest"
instance_type = "basic"
`

// TestContainersBackendLifecycle loads a manifest with [[containers]]: a
// missing image is refused with what to do; with the image present the host
// starts its own containerd and stops it on Close, leaving no process.
func TestContainersBackendLifecycle(t *testing.T) {
	data := t.TempDir()
	wasm := testutil.BuildGuest(t, "testdata/guests/objects")
	m, err := plugins.ParseManifest([]byte(containersManifest))
	require.NoError(t, err)
	m.Path = "wharf.toml"
	cfg := Config{Manifest: m, WasmPath: wasm, DataDir: data, CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()}

	_, err = NewWorker(context.Background(), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `wharf.toml: containers[0] (class Store): image "wharf.test/busybox:latest" is not in wharf's containerd: import it with `+"`wharf images import`")
	assert.Empty(t, containerdProcesses(data), "the refused load stopped its containerd")

	b, err := containerd.OpenBackend(context.Background(), data, "", slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	_, err = containerd.ImportArchive(context.Background(), b.Client, archive, "")
	require.NoError(t, err)
	require.NoError(t, b.Close())

	w, err := NewWorker(context.Background(), cfg)
	require.NoError(t, err)
	assert.NotEmpty(t, containerdProcesses(data), "the host runs its own containerd")
	require.NoError(t, w.Close(context.Background()))
	assert.Empty(t, containerdProcesses(data), "Close stopped containerd")
}

// containerdProcesses lists containerd daemons whose config is under dir.
func containerdProcesses(dir string) []string {
	var out []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.HasPrefix(cmd, "containerd ") && strings.Contains(cmd, dir) {
			out = append(out, cmd)
		}
	}
	return out
}
