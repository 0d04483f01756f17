package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// forEachEngineB runs bench once per engine, as a sub-benchmark.
func forEachEngineB(b *testing.B, bench func(b *testing.B, engine string)) {
	for _, engine := range Engines {
		b.Run(engine, func(b *testing.B) { bench(b, engine) })
	}
}

func loadBench(b *testing.B, engine, pkg string, hostModules map[string][]HostFunc, pool PoolConfig) *Plugin {
	p, err := Load(context.Background(), Config{
		Name: "bench", Path: testutil.BuildGuest(b, pkg), Engine: engine,
		CacheDir:    filepath.Join(b.TempDir(), "cache"),
		HostModules: hostModules, Pool: pool,
	})
	require.NoError(b, err)
	b.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// BenchmarkNoopImport measures one guest→host→guest round trip through the
// engine (a host function that does nothing, reached the way every wharf_v1
// import is) against the same guest loop calling a Go function, per engine.
func BenchmarkNoopImport(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, engine string) {
		inst := nopInstance(b, engine)
		testutil.CompareLoops(b, 2_000_000, func(export string, n uint64) error {
			_, err := inst.Call(context.Background(), export, n)
			return err
		}, "loop_nop", "loop_go", "ns/import", "ns/go_call")
	})
}

// nopInstance is an initialised instance of testdata/guests/nop.
func nopInstance(b *testing.B, engine string) *Instance {
	nop := HostFunc{Name: "nop", Results: []ValueType{I32}, Fn: func(_ context.Context, c Caller, s []uint64) { s[0] = 1 }}
	p := loadBench(b, engine, "testdata/guests/nop", map[string][]HostFunc{"bench": {nop}}, PoolConfig{MinIdle: 1})
	inst, err := p.Get(context.Background())
	require.NoError(b, err)
	b.Cleanup(func() { p.Put(inst) })
	return inst
}

// BenchmarkExportCall measures one host→guest call of an export that does
// next to nothing (memory.grow 0 in a hand-written module, so no Go runtime
// entry is counted), per engine, against a Go call through an interface.
func BenchmarkExportCall(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, engine string) {
		inst := instantiate(b, compileEngineModule(b, engine, 0), InstanceConfig{})
		ctx := context.Background()
		const calls = 100_000
		var guest, native []float64
		for i := 0; i < b.N*testutil.BenchRounds; i++ {
			start := time.Now()
			for j := 0; j < calls; j++ {
				if _, err := inst.Call(ctx, "grow", 0); err != nil {
					b.Fatal(err)
				}
			}
			guest = append(guest, float64(time.Since(start).Nanoseconds())/calls)
			start = time.Now()
			for j := 0; j < calls; j++ {
				inst.HasExport("grow")
			}
			native = append(native, float64(time.Since(start).Nanoseconds())/calls)
		}
		b.ReportMetric(testutil.Median(guest), "ns/export_call")
		b.ReportMetric(testutil.Median(native), "ns/go_call")
		b.ReportMetric(testutil.Median(guest)/testutil.Median(native), "ratio")
	})
}

// BenchmarkInstanceStart measures a cold instance of examples/hello
// (instantiate + _initialize + version check) against a warm checkout from
// the pool (Get + Put of an initialised instance), per engine, and the
// memory an idle instance holds (the process's RSS growth per instance).
func BenchmarkInstanceStart(b *testing.B) {
	forEachEngineB(b, benchmarkInstanceStart)
}

func benchmarkInstanceStart(b *testing.B, engine string) {
	p := loadBench(b, engine, "examples/hello", stubImports(b, "examples/hello"), PoolConfig{MinIdle: 1, MaxInstances: 4})
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

// BenchmarkCompileHello measures, per engine, compiling examples/hello with
// an empty cache against loading it from a warm cache, and the memory each
// initialised instance adds to the process (RSS growth over 32 instances).
func BenchmarkCompileHello(b *testing.B) {
	forEachEngineB(b, func(b *testing.B, engine string) {
		path := testutil.BuildGuest(b, "examples/hello")
		imports := stubImports(b, "examples/hello")
		var cold, warm, perInstance []float64
		for i := 0; i < b.N*testutil.BenchRounds; i++ {
			cfg := Config{Name: "bench", Path: path, Engine: engine, CacheDir: b.TempDir(), HostModules: imports}
			for _, times := range []*[]float64{&cold, &warm} {
				start := time.Now()
				p, err := Load(context.Background(), cfg)
				require.NoError(b, err)
				*times = append(*times, float64(time.Since(start).Milliseconds()))
				if times == &warm {
					perInstance = append(perInstance, instanceMemory(b, p))
				}
				p.Close(context.Background())
			}
		}
		b.ReportMetric(testutil.Median(cold), "compile_ms")
		b.ReportMetric(testutil.Median(warm), "cached_ms")
		b.ReportMetric(testutil.Median(perInstance), "KiB/instance")
		b.ReportMetric(testutil.Median(cold)/testutil.Median(warm), "ratio")
	})
}

// instanceMemory is the RSS growth per initialised instance of p, in KiB.
func instanceMemory(b *testing.B, p *Plugin) float64 {
	const n = 32
	debug.FreeOSMemory() // so RSS counts live memory, whoever allocated it
	before := rssKiB(b)
	insts := make([]*Instance, n)
	for i := range insts {
		inst, err := p.newInstance(context.Background())
		require.NoError(b, err)
		insts[i] = inst
	}
	debug.FreeOSMemory()
	grown := rssKiB(b) - before
	for _, inst := range insts {
		inst.close()
	}
	return grown / n
}

func rssKiB(b *testing.B) float64 {
	statm, err := os.ReadFile("/proc/self/statm")
	require.NoError(b, err)
	var size, resident float64
	_, err = fmt.Sscan(string(statm), &size, &resident)
	require.NoError(b, err)
	return resident * float64(os.Getpagesize()) / 1024
}
