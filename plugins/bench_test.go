package plugins

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

func loadBench(b *testing.B, pkg string, hostModules map[string][]HostFunc, pool PoolConfig) *Plugin {
	p, err := Load(context.Background(), Config{
		Name: "bench", Path: testutil.BuildGuest(b, pkg),
		CacheDir:    filepath.Join(b.TempDir(), "cache"),
		HostModules: hostModules, Pool: pool,
	})
	require.NoError(b, err)
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// BenchmarkNoopImport measures one guest→host→guest round trip through the
// engine (a host function that does nothing, reached the way every wharf_v1
// import is) against the same guest loop calling a Go function.
func BenchmarkNoopImport(b *testing.B) {
	nop := HostFunc{Name: "nop", Results: []ValueType{I32}, Fn: func(_ context.Context, c Caller, s []uint64) { s[0] = 1 }}
	p := loadBench(b, "testdata/guests/nop", map[string][]HostFunc{"bench": {nop}}, PoolConfig{MinIdle: 1})
	inst, err := p.Get(context.Background())
	require.NoError(b, err)
	defer p.Put(inst)
	testutil.CompareLoops(b, 2_000_000, func(export string, n uint64) error {
		_, err := inst.Call(context.Background(), export, n)
		return err
	}, "loop_nop", "loop_go", "ns/import", "ns/go_call")
}

// BenchmarkInstanceStart measures a cold instance of examples/hello
// (instantiate + _initialize + version check) against a warm checkout from
// the pool (Get + Put of an initialised instance).
func BenchmarkInstanceStart(b *testing.B) {
	p := loadBench(b, "examples/hello", stubImports(b, "examples/hello"), PoolConfig{MinIdle: 1, MaxInstances: 4})
	ctx := context.Background()
	var cold, warm []float64
	for i := 0; i < b.N*testutil.BenchRounds*4; i++ {
		start := time.Now()
		inst, err := p.newInstance(ctx)
		require.NoError(b, err)
		cold = append(cold, float64(time.Since(start).Microseconds()))
		inst.close()

		start = time.Now()
		const checkouts = 1000
		for j := 0; j < checkouts; j++ {
			inst, err := p.Get(ctx)
			require.NoError(b, err)
			p.Put(inst)
		}
		warm = append(warm, float64(time.Since(start).Nanoseconds())/checkouts)
	}
	b.ReportMetric(testutil.Median(cold), "cold_µs")
	b.ReportMetric(testutil.Median(warm), "warm_ns")
	b.ReportMetric(testutil.Median(cold)*1000/testutil.Median(warm), "ratio")
}

// stubImports answers every non-WASI import of a guest with status 0. The
// host package provides the real ones; initialising a guest whose init does
// not call the host needs only their presence.
func stubImports(b *testing.B, pkg string) map[string][]HostFunc {
	wasm, err := os.ReadFile(testutil.BuildGuest(b, pkg))
	require.NoError(b, err)
	e, err := NewWazeroEngine(context.Background(), EngineConfig{})
	require.NoError(b, err)
	defer e.Close(context.Background())
	m, err := e.Compile(context.Background(), wasm)
	require.NoError(b, err)
	out := map[string][]HostFunc{}
	for _, imp := range m.Imports() {
		if imp.Module == wasiModule {
			continue
		}
		out[imp.Module] = append(out[imp.Module], HostFunc{Name: imp.Name, Params: imp.Params, Results: imp.Results,
			Fn: func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }})
	}
	return out
}
