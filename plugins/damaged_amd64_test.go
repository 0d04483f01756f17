package plugins

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestLoadNeverRunsDamagedCode: code in the compile cache that was damaged
// on disk (a bit flipped, here in the constant a function returns; a file
// cut short, as a power loss can leave it) is never run, on either engine:
// the module compiles again, with a warning, and runs as built, and the
// next load finds the entry repaired. Before, wasmtime ran damaged machine
// code (a crash, or a wrong answer), wazero refused to start with "invalid
// plugin module" at every start, and a damaged instrumented module was
// compiled as it was.
func TestLoadNeverRunsDamagedCode(t *testing.T) {
	ctx := context.Background()
	wasm, err := wasmtime.Wat2Wasm(`(module (memory (export "memory") 1)
	  (func (export "_start"))
	  (func (export "answer") (result i32) (i32.const 0x1badc0de)))`)
	require.NoError(t, err)
	path := testutil.WriteFile(t, "answer.wasm", wasm)
	const answer = 0x1badc0de
	// The constant as an x86-64 immediate (this file builds on amd64 only:
	// arm64 splits it between two instructions) and as Wasm's LEB128; both change to answer+1 with
	// their first byte.
	patterns := [][]byte{{0xde, 0xc0, 0xad, 0x1b}, {0xde, 0x81, 0xb7, 0xdd, 0x01}}
	load := loadAndAnswer
	// cached precompiles the module into a new cache and returns its
	// config and the files holding the constant.
	cached := func(t *testing.T, engine string) (Config, []string) {
		cfg := Config{Name: "t", Path: path, Engine: engine, CacheDir: t.TempDir()}
		require.NoError(t, Precompile(ctx, cfg))
		files, err := filepath.Glob(filepath.Join(cfg.CacheDir, "*", "*"))
		require.NoError(t, err)
		var code []string
		for _, f := range files {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			if bytes.Contains(data, patterns[0]) || bytes.Contains(data, patterns[1]) {
				code = append(code, f)
			}
		}
		return cfg, code
	}
	damages := map[string]func([]byte) []byte{
		"flipped": func(data []byte) []byte {
			for _, p := range patterns {
				data = bytes.ReplaceAll(data, p, append([]byte{p[0] + 1}, p[1:]...))
			}
			return data
		},
		"short": func(data []byte) []byte { return data[:len(data)/2] },
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		_, code := cached(t, engine)
		want := map[string]int{EngineWazero: 2, EngineWasmtime: 1}[engine] // wazero's instrumented module and its code
		require.Len(t, code, want, "the cache's files holding the constant: %v", code)
		for i := range code {
			for name, damage := range damages {
				cfg, code := cached(t, engine)
				t.Run(filepath.Base(filepath.Dir(code[i]))+"/"+name, func(t *testing.T) {
					data, err := os.ReadFile(code[i])
					require.NoError(t, err)
					require.NoError(t, os.WriteFile(code[i], damage(data), 0o600))

					got, log := load(t, cfg)
					assert.Equal(t, uint64(answer), got, "the module runs as built")
					assert.Contains(t, log, `level=WARN msg="compiled code in the cache is damaged (it fails its checksum): it is not run, and the module compiles again"`)
					got, log = load(t, cfg)
					assert.Equal(t, uint64(answer), got)
					assert.NotContains(t, log, "level=WARN", "the entry was repaired")
				})
			}
		}
	})
}
