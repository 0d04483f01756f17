package plugins

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestCacheOnANoexecFilesystemIsReported: wasmtime maps compiled code from
// its cache file, which a filesystem mounted noexec forbids. Each start
// then compiles again; it used to do so without a word (seconds for a real
// module), and now says why at every load. The module runs all the same.
// Needs root (it mounts a tmpfs).
func TestCacheOnANoexecFilesystemIsReported(t *testing.T) {
	require.Zero(t, os.Geteuid(), "this test mounts a tmpfs: run it as root")
	path := answerModule(t)
	mnt := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOEXEC, "size=16m"))
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	cfg := Config{Name: "t", Path: path, Engine: EngineWasmtime, CacheDir: filepath.Join(mnt, "cache")}
	for range 2 { // storing the code, then finding it stored
		got, log := loadAndAnswer(t, cfg)
		assert.Equal(t, uint64(42), got)
		assert.Contains(t, log, `level=WARN msg="compiled code cannot be loaded from the cache: the module compiles at every start (the cache's filesystem is mounted noexec: give wharf a --data-dir on another)"`)
	}
}

// answerModule writes a module whose export "answer" returns 42 and
// returns its path.
func answerModule(t *testing.T) string {
	t.Helper()
	wasm, err := wasmtime.Wat2Wasm(`(module (memory (export "memory") 1)
	  (func (export "_start"))
	  (func (export "answer") (result i32) (i32.const 42)))`)
	require.NoError(t, err)
	return testutil.WriteFile(t, "answer.wasm", wasm)
}

// loadAndAnswer loads the plugin cfg describes and calls its export
// "answer" on a new instance; it returns the result and what Load logged.
func loadAndAnswer(t *testing.T, cfg Config) (uint64, string) {
	ctx := context.Background()
	var log bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	p, err := Load(ctx, cfg)
	require.NoError(t, err)
	defer p.Close(ctx)
	inst, err := p.module.Instantiate(ctx, InstanceConfig{})
	require.NoError(t, err)
	defer inst.Close(ctx)
	got, err := inst.Call(ctx, "answer")
	require.NoError(t, err)
	return got, log.String()
}

// TestNoCompileApartForANoexecCache: wasmtime cannot map code from a cache
// on a filesystem mounted noexec, so a process apart compiling into it
// would only make Load compile the module a second time: Load compiles it
// itself. Needs root (it mounts a tmpfs).
func TestNoCompileApartForANoexecCache(t *testing.T) {
	require.Zero(t, os.Geteuid(), "this test mounts a tmpfs: run it as root")
	path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	mnt := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOEXEC, "size=16m"))
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	ctx := context.Background()
	calls := 0
	p, err := Load(ctx, Config{Name: "t", Path: path, Engine: EngineWasmtime, CacheDir: filepath.Join(mnt, "cache"),
		CompileApart: func(ctx context.Context, cfg Config) error {
			calls++
			return Precompile(ctx, cfg)
		}})
	require.NoError(t, err)
	p.Close(ctx)
	assert.Zero(t, calls, "compiled apart into a cache wasmtime cannot load code from")
}

// TestPrecompileIntoAReadOnlyCacheFailsAtOnce: a cache on a read-only
// filesystem fails Precompile before it compiles (Load, which then
// compiles the module itself, would otherwise compile it twice). Needs
// root (it mounts a tmpfs).
func TestPrecompileIntoAReadOnlyCacheFailsAtOnce(t *testing.T) {
	require.Zero(t, os.Geteuid(), "this test mounts a tmpfs: run it as root")
	path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	forEachEngine(t, func(t *testing.T, engine string) {
		mnt := t.TempDir()
		require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_RDONLY, "size=16m"))
		t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
		var log bytes.Buffer
		err := Precompile(context.Background(), Config{Name: "t", Path: path, Engine: engine, CacheDir: mnt,
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		assert.ErrorContains(t, err, "the compile cache cannot be written")
		assert.NotContains(t, log.String(), "compiling", "it compiled first")
	})
}
