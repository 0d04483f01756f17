package plugins

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/internal/testutil"
)

// forEachEngineB runs bench once per engine, as a sub-benchmark.
func forEachEngineB(b *testing.B, bench func(b *testing.B, engine string)) {
	for _, engine := range Engines {
		b.Run(engine, func(b *testing.B) { bench(b, engine) })
	}
}

func loadBench(b *testing.B, engine, pkg string, hostModules map[string][]HostFunc) *Plugin {
	p, err := Load(context.Background(), Config{
		Name: "bench", Path: testutil.BuildGuest(b, pkg), Engine: engine,
		CacheDir:    filepath.Join(b.TempDir(), "cache"),
		HostModules: hostModules,
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

// nopInstance is an initialised instance of testdata/guests/nop, a module
// of exports.
func nopInstance(b testing.TB, engine string) ModuleInstance {
	nop := HostFunc{Name: "nop", Results: []ValueType{I32}, Fn: func(_ context.Context, c Caller, s []uint64) { s[0] = 1 }}
	e, err := NewEngine(context.Background(), engine, EngineConfig{HostModules: map[string][]HostFunc{"bench": {nop}}})
	require.NoError(b, err)
	b.Cleanup(func() { e.Close(context.Background()) })
	wasm, err := os.ReadFile(testutil.BuildReactor(b, "testdata/guests/nop"))
	require.NoError(b, err)
	m, err := e.Compile(context.Background(), ModuleBytes(wasm))
	require.NoError(b, err)
	inst := instantiate(b, m, InstanceConfig{})
	_, err = inst.Call(context.Background(), "_initialize")
	require.NoError(b, err)
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
	p := loadBench(b, engine, "examples/hello", stubImports(b, "examples/hello"))
	ctx := context.Background()
	var start, event []float64
	for i := 0; i < b.N*testutil.BenchRounds*4; i++ {
		t0 := time.Now()
		inst := launchServing(b, p)
		start = append(start, float64(time.Since(t0).Microseconds()))
		inst.Stop(ErrStopped)
		<-inst.Done()
	}
	// What an event costs instead: nothing is instantiated, a record is
	// read from a descriptor. Measured as a host call round trip.
	inst := instantiate(b, compileEngineModule(b, engine, 0), InstanceConfig{})
	const calls = 100_000
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		t0 := time.Now()
		_, err := inst.Call(ctx, "read", 16, 9)
		require.NoError(b, err)
		for j := 0; j < calls; j++ {
			inst.Call(ctx, "read", 16, 9)
		}
		event = append(event, float64(time.Since(t0).Nanoseconds())/calls)
	}
	b.ReportMetric(testutil.Median(start), "start_µs")
	b.ReportMetric(testutil.Median(event), "call_ns")
	b.ReportMetric(testutil.Median(start)*1000/testutil.Median(event), "ratio")
}

// launchServing launches an instance of p and waits until its main called
// serve (the stub in stubImports closes the channel its Data is).
func launchServing(b *testing.B, p *Plugin) *Instance {
	served := &servingPipe{commandPipe: newCommandPipe(), served: make(chan struct{})}
	inst, err := p.Launch(context.Background(), served, nil, nil)
	require.NoError(b, err)
	select {
	case <-served.served:
	case <-inst.Done():
		b.Fatalf("instance ended: %v", inst.Err())
	}
	return inst
}

// servingPipe is an empty event descriptor that hears serve.
type servingPipe struct {
	*commandPipe
	served chan struct{}
	once   sync.Once
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
	m, err := e.Compile(context.Background(), ModuleBytes(wasm))
	require.NoError(b, err)
	out := map[string][]HostFunc{}
	for _, imp := range m.Imports() {
		if imp.Module == wasiModule {
			continue
		}
		fn := func(_ context.Context, _ Caller, s []uint64) { s[0] = 0 }
		if imp.Name == abi.ImportServe {
			fn = func(_ context.Context, c Caller, s []uint64) {
				c.Memory().WriteUint32(uint32(s[1]), 3)
				if sp, ok := c.Data().(*servingPipe); ok {
					sp.once.Do(func() { close(sp.served) })
				}
				s[0] = 0
			}
		}
		out[imp.Module] = append(out[imp.Module], HostFunc{Name: imp.Name, Params: imp.Params, Results: imp.Results, Fn: fn})
	}
	return out
}

// BenchmarkCompileHello measures, per engine, compiling examples/hello with
// an empty cache against loading it from a warm cache, and the memory each
// running instance adds to the process (RSS growth over 32 instances).
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

// instanceMemory is the RSS growth per running instance of p, in KiB.
func instanceMemory(b *testing.B, p *Plugin) float64 {
	const n = 32
	debug.FreeOSMemory() // so RSS counts live memory, whoever allocated it
	before := rssKiB(b)
	insts := make([]*Instance, n)
	for i := range insts {
		insts[i] = launchServing(b, p)
	}
	debug.FreeOSMemory()
	grown := rssKiB(b) - before
	for _, inst := range insts {
		inst.Stop(ErrStopped)
		<-inst.Done()
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
