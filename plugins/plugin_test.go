package plugins

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/testutil"
)

// loadSpec writes a hand-assembled module and loads it the way the host
// does, with one wharf_v1 import known to the host.
func loadSpec(t *testing.T, engine, name string, wasm []byte) (*Plugin, string, error) {
	t.Helper()
	path := testutil.WriteFile(t, name, wasm)
	p, err := Load(context.Background(), Config{
		Name: "t", Path: path, Engine: engine, CacheDir: filepath.Join(t.TempDir(), "cache"),
		HostModules: map[string][]HostFunc{abi.ImportModule: {
			{Name: "ping", Results: []ValueType{I32}, Fn: func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }},
			{Name: abi.ImportClose, Params: []ValueType{I32}, Results: []ValueType{I32}, Fn: func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }},
		}},
		RequiredExports: []string{abi.ExportOnFetch},
		Pool:            PoolConfig{MinIdle: 1, MaxInstances: 2},
	})
	if p != nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, path, err
}

var goodExports = map[string]int32{abi.ExportABIVersion: abi.Version, abi.ExportOnFetch: 0}

// forEachEngine runs test once per engine, as a subtest named after it.
func forEachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) { test(t, engine) })
	}
}

func TestLoadValidModule(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		p, _, err := loadSpec(t, engine, "ok.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, "ping"}},
			Exports: goodExports,
		}.Wasm())
		require.NoError(t, err)
		inst, err := p.Get(context.Background())
		require.NoError(t, err)
		r, err := inst.Call(context.Background(), abi.ExportOnFetch)
		require.NoError(t, err)
		assert.Equal(t, uint64(0), r)
		p.Put(inst)
		assert.Equal(t, 0, p.Stats().Busy)
	})
}

func TestUnknownEngineIsRefused(t *testing.T) {
	_, _, err := loadSpec(t, "v8", "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
	assert.ErrorContains(t, err, `unknown engine "v8" (want wazero or wasmtime)`)
}

func TestLoadRefusesBadModules(t *testing.T) {
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"text.wasm", []byte("this is not wasm\n"), "not a WebAssembly module"},
		{"truncated.wasm", []byte{0x00, 'a', 's', 'm', 0x01}, "invalid plugin module"},
		{"nofetch.wasm", testutil.ModuleSpec{Exports: map[string]int32{abi.ExportABIVersion: abi.Version}}.Wasm(),
			"missing required export wharf_on_fetch"},
		{"noversion.wasm", testutil.ModuleSpec{Exports: map[string]int32{abi.ExportOnFetch: 0}}.Wasm(),
			"missing required export wharf_abi_version"},
		{"unknownimport.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, "teleport"}}, Exports: goodExports}.Wasm(),
			"unknown import wharf_v1.teleport"},
		{"badsignature.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{abi.ImportModule, abi.ImportClose}}, Exports: goodExports}.Wasm(),
			"import wharf_v1.close has signature () -> (i32), the host's is (i32) -> (i32)"},
		{"unknownmodule.wasm", testutil.ModuleSpec{
			Imports: [][2]string{{"env", "abort"}}, Exports: goodExports}.Wasm(),
			`imports env.abort from unknown module "env"`},
		{"v2.wasm", testutil.ModuleSpec{Exports: map[string]int32{abi.ExportABIVersion: 2, abi.ExportOnFetch: 0}}.Wasm(),
			"module is built for ABI version 2, this host implements version 1"},
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, path, err := loadSpec(t, engine, c.name, c.wasm)
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidModule)
				assert.Contains(t, err.Error(), c.want)
				assert.Contains(t, err.Error(), path, "the error names the file")
			})
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(context.Background(), Config{Path: "/nonexistent/x.wasm"})
		assert.ErrorContains(t, err, "/nonexistent/x.wasm")
	})
}

func TestCompiledCodeIsCachedOnDisk(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		path := testutil.WriteFile(t, "ok.wasm", testutil.ModuleSpec{Exports: goodExports}.Wasm())
		cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: dir, RequiredExports: []string{abi.ExportOnFetch}}
		onFetch := func() uint64 {
			p, err := Load(context.Background(), cfg)
			require.NoError(t, err)
			defer p.Close(context.Background())
			inst, err := p.Get(context.Background())
			require.NoError(t, err)
			defer p.Put(inst)
			r, err := inst.Call(context.Background(), abi.ExportOnFetch)
			require.NoError(t, err)
			return r
		}
		assert.Equal(t, uint64(0), onFetch())
		entries, err := filepath.Glob(filepath.Join(dir, "*", "*"))
		require.NoError(t, err)
		assert.NotEmpty(t, entries, "compiled code was written to the cache dir")
		assert.Equal(t, uint64(0), onFetch(), "loaded from the cache")

		rebuilt := testutil.ModuleSpec{Exports: map[string]int32{abi.ExportABIVersion: abi.Version, abi.ExportOnFetch: 7}}.Wasm()
		require.NoError(t, os.WriteFile(path, rebuilt, 0o644))
		assert.Equal(t, uint64(7), onFetch(), "a rebuilt module never runs stale code")
	})
}
