package plugins

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sys/unix"
)

// WazeroEngine is the Engine built on wazero's optimising compiler.
type WazeroEngine struct {
	runtime    wazero.Runtime
	cache      wazero.CompilationCache
	cacheDir   string      // also holds instrumented modules
	unwritable func(error) // EngineConfig.CacheUnwritable
	damaged    func(error) // EngineConfig.CacheDamaged
}

// NewWazeroEngine creates a wazero runtime with WASI preview 1 and the given
// host modules. Host functions are registered as api.GoModuleFunc values, so
// calls do not go through reflection.
func NewWazeroEngine(ctx context.Context, cfg EngineConfig) (*WazeroEngine, error) {
	rc := wazero.NewRuntimeConfig()
	if cfg.Interpret {
		rc, cfg.CacheDir = wazero.NewRuntimeConfigInterpreter(), ""
	}
	if cfg.MemoryLimitBytes > 0 {
		pages := uint32(min(cfg.MemoryLimitBytes/pageSize, maxPages))
		rc = rc.WithMemoryLimitPages(pages)
	}
	e := &WazeroEngine{unwritable: cfg.CacheUnwritable, damaged: cfg.CacheDamaged}
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		switch {
		case err == nil:
			e.cache, e.cacheDir = cache, cfg.CacheDir
			rc = rc.WithCompilationCache(cache)
		case e.unwritable != nil:
			e.unwritable(err)
		default:
			return nil, fmt.Errorf("compilation cache %s: %w", cfg.CacheDir, err)
		}
	}
	e.runtime = wazero.NewRuntimeWithConfig(ctx, rc)
	wasi := e.runtime.NewHostModuleBuilder(wasiModule)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(wasi)
	for _, f := range trackAll(append(wasiFuncs, pollOneoff)) { // wharf's own descriptors replace WASI's files
		wasi.NewFunctionBuilder().
			WithGoModuleFunction(wrapHostFunc(f.Fn), wazeroTypes(f.Params), wazeroTypes(f.Results)).
			Export(f.Name)
	}
	if _, err := wasi.Instantiate(ctx); err != nil {
		e.Close(ctx)
		return nil, err
	}
	for name, funcs := range cfg.HostModules {
		b := e.runtime.NewHostModuleBuilder(name)
		for _, f := range funcs {
			b.NewFunctionBuilder().
				WithGoModuleFunction(wrapHostFunc(f.Fn), wazeroTypes(f.Params), wazeroTypes(f.Results)).
				Export(f.Name)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			e.Close(ctx)
			return nil, fmt.Errorf("host module %s: %w", name, err)
		}
	}
	return e, nil
}

type callerKey struct{}

// wrapHostFunc adapts fn to wazero; the calling instance travels in the
// context given to Call.
func wrapHostFunc(fn func(context.Context, Caller, []uint64)) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		fn(ctx, ctx.Value(callerKey{}).(*wazeroInstance), stack)
	}
}

// fromWazeroTypes maps types back; anything but i32 and i64 becomes 0, which
// never matches a host function.
func fromWazeroTypes(ts []api.ValueType) []ValueType {
	out := make([]ValueType, len(ts))
	for i, t := range ts {
		switch t {
		case api.ValueTypeI32:
			out[i] = I32
		case api.ValueTypeI64:
			out[i] = I64
		}
	}
	return out
}

func wazeroTypes(ts []ValueType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		if t == I64 {
			out[i] = api.ValueTypeI64
		} else {
			out[i] = api.ValueTypeI32
		}
	}
	return out
}

// Compile decodes and compiles the module (its compiled code may come from
// wazero's cache).
func (e *WazeroEngine) Compile(ctx context.Context, module *ModuleFile) (CompiledModule, error) {
	wasm, mapped, err := e.instrumented(module)
	if err != nil {
		return nil, err
	}
	if mapped == nil {
		return e.compile(ctx, wasm)
	}
	defer mapped.unmap() // wazero copies what it keeps of the module
	var cm CompiledModule
	err = mapped.read(func() error {
		var err error
		cm, err = e.compile(ctx, wasm)
		return err
	})
	if errors.Is(err, errDamaged) { // the cached module faulted: the module's own bytes do not
		e.tell(e.damaged, err)
		if wasm, err = instrument(module, mapped.path); err != nil {
			return nil, err
		}
		return e.compile(ctx, wasm)
	}
	return cm, err
}

// compile compiles the instrumented module wasm.
func (e *WazeroEngine) compile(ctx context.Context, wasm []byte) (CompiledModule, error) {
	cm, err := e.runtime.CompileModule(ctx, wasm)
	if e.cache != nil && isDamagedEntry(err) {
		// wazero checks the code it cached (a checksum), but then fails
		// the compile rather than compiling again, and does not say which
		// file it read.
		e.tell(e.damaged, err)
		e.clearCompiled()
		cm, err = e.runtime.CompileModule(ctx, wasm)
	}
	if e.cache != nil && isFileError(err) && e.unwritable != nil {
		// Storing the code failed. wazero keeps it in memory before it
		// writes the cache, so compiling again finds it there.
		e.unwritable(err)
		cm, err = e.runtime.CompileModule(ctx, wasm)
	}
	if err != nil {
		return nil, err
	}
	return &wazeroModule{runtime: e.runtime, compiled: cm}, nil
}

// tell calls a callback of EngineConfig, if set.
func (e *WazeroEngine) tell(callback func(error), err error) {
	if callback != nil {
		callback(err)
	}
}

// isDamagedEntry reports whether err is wazero's refusal of an entry of
// its compilation cache (damaged: its checksum fails, or it is short).
func isDamagedEntry(err error) bool {
	return err != nil && strings.Contains(err.Error(), "compilationcache: ")
}

// clearCompiled removes the code wazero cached, every entry: wazero does
// not say which one it refused, and its keys cannot be computed outside
// it. Temporary files, maybe being written, stay.
func (e *WazeroEngine) clearCompiled() {
	entries, _ := filepath.Glob(filepath.Join(e.cacheDir, "wazero-*", "*"))
	for _, path := range entries {
		if !strings.HasSuffix(path, ".tmp") {
			os.Remove(path)
		}
	}
}

// isFileError reports whether err is a file system's (as a cache write
// fails), not a module's.
func isFileError(err error) bool {
	var path *fs.PathError
	var link *os.LinkError
	return errors.As(err, &path) || errors.As(err, &link)
}

// instrumented is the module with its interrupt checks (see
// instrumentInterrupts) and its data segments merged (mergeDataSegments),
// from the cache when this build of wharf made it before: rewriting a
// 14 MB module costs a warm start about half a second. The cached module
// is mapped (see mapChecked), to be read through mapped and unmapped
// after; mapped is nil for a module instrumented now.
func (e *WazeroEngine) instrumented(module *ModuleFile) (wasm []byte, mapped *mapping, err error) {
	var cached string
	if e.cacheDir != "" {
		if exe, err := executableIdentity(); err == nil {
			cached = filepath.Join(e.cacheDir, "instrumented", module.Digest+"-"+exe+".wasm")
			wasm, mapped, err := mapChecked(cached)
			if err == nil {
				return wasm, mapped, nil
			}
			if errors.Is(err, errDamaged) {
				e.tell(e.damaged, err)
			}
		}
	}
	wasm, err = instrument(module, cached)
	return wasm, nil, err
}

// instrument instruments the module (see instrumented) and stores the
// result at cached, unless that is "".
func instrument(module *ModuleFile, cached string) ([]byte, error) {
	wasm, err := module.Bytes()
	if err != nil {
		return nil, err
	}
	if wasm, err = instrumentInterrupts(wasm); err != nil {
		return nil, err
	}
	wasm = mergeDataSegments(wasm)
	if cached != "" {
		writeChecked(cached, wasm) // best effort: without it the next start instruments again
	}
	return wasm, nil
}

// executableIdentity names this build of wharf (buildIdentity of its
// executable), so an instrumented module made by another build, whose
// instrumentation may differ, is never used.
var executableIdentity = sync.OnceValues(func() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return buildIdentity(exe)
})

// buildIdentity names the build of the Go program at path: a digest of its
// Go build ID, which changes with what it was built from, not with where
// the file lies or when it was written (go build gives an unchanged binary
// a new modification time, so each make build did).
func buildIdentity(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	note := f.Section(".note.go.buildid")
	if note == nil {
		return "", fmt.Errorf("%s has no Go build ID", path)
	}
	id, err := note.Data()
	if err != nil {
		return "", err
	}
	return digestOf(id), nil
}

// Close releases the runtime and every instance created from it.
func (e *WazeroEngine) Close(ctx context.Context) error {
	err := e.runtime.Close(ctx)
	if e.cache != nil {
		err = errors.Join(err, e.cache.Close(ctx))
	}
	return err
}

type wazeroModule struct {
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
}

func (m *wazeroModule) Imports() []ImportRef {
	var refs []ImportRef
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		refs = append(refs, ImportRef{Module: mod, Name: name,
			Params: fromWazeroTypes(f.ParamTypes()), Results: fromWazeroTypes(f.ResultTypes())})
	}
	return refs
}

func (m *wazeroModule) Exports() []string {
	var names []string
	for name := range m.compiled.ExportedFunctions() {
		names = append(names, name)
	}
	return names
}

func (m *wazeroModule) Instantiate(ctx context.Context, cfg InstanceConfig) (ModuleInstance, error) {
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // _start runs on the instance's own goroutine (plugins.Launch)
		WithSysNanotime().
		WithSysWalltime().
		WithSysNanosleep().
		WithRandSource(cryptoRand{})
	inst := &wazeroInstance{data: cfg.Data, funcs: map[string]api.Function{},
		stdout: cfg.Stdout, stderr: cfg.Stderr, fds: descriptorsOr(cfg.Descriptors), act: activityOr(cfg.activity)}
	ctx = experimental.WithMemoryAllocator(context.WithValue(ctx, callerKey{}, inst), experimental.MemoryAllocatorFunc(allocateMapped))
	mod, err := m.runtime.InstantiateModule(ctx, m.compiled, mc)
	if err != nil {
		return nil, err
	}
	inst.mod = mod
	inst.mem = &wazeroMemory{mod.Memory()}
	interrupt, ok := mod.ExportedGlobal(InterruptGlobal).(api.MutableGlobal)
	if !ok {
		mod.Close(ctx)
		return nil, fmt.Errorf("instrumented module lacks the %s global", InterruptGlobal)
	}
	inst.interrupt = interrupt
	for name := range m.compiled.ExportedFunctions() {
		inst.funcs[name] = mod.ExportedFunction(name)
	}
	return inst, nil
}

type wazeroInstance struct {
	mod api.Module
	mem Memory // cached: building it per call would allocate
	// interrupt, set to 1, makes the guest trap at its next loop header.
	interrupt api.MutableGlobal
	data      any
	stdout    io.Writer
	stderr    io.Writer
	fds       Descriptors
	act       *activity
	funcs     map[string]api.Function
	mu        sync.Mutex // serialises Call; instances are not reentrant
	stack     [8]uint64
}

func (i *wazeroInstance) Memory() Memory { return i.mem }
func (i *wazeroInstance) Data() any      { return i.data }

func (i *wazeroInstance) descriptors() Descriptors { return i.fds }
func (i *wazeroInstance) activity() *activity      { return i.act }

// monotonicZero: wazero's monotonic clock (WithSysNanotime) is the
// system's CLOCK_MONOTONIC.
func (i *wazeroInstance) monotonicZero() time.Time { return systemMonotonicZero() }

// systemMonotonicZero is when CLOCK_MONOTONIC read zero, as a time with a
// monotonic reading.
var systemMonotonicZero = sync.OnceValue(func() time.Time {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
})

func (i *wazeroInstance) output(fd uint32) io.Writer {
	if fd == fdStdout {
		return i.stdout
	}
	return i.stderr
}

func (i *wazeroInstance) HasExport(name string) bool {
	_, ok := i.funcs[name]
	return ok
}

func (i *wazeroInstance) Call(ctx context.Context, name string, args ...uint64) (uint64, error) {
	f, ok := i.funcs[name]
	if !ok {
		return 0, fmt.Errorf("module does not export %q", name)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	stack := i.stack[:max(len(args), len(f.Definition().ResultTypes()))]
	copy(stack, args)
	stop := context.AfterFunc(ctx, func() { i.interrupt.Set(1) })
	err := f.CallWithStack(context.WithValue(ctx, callerKey{}, i), stack)
	stop()
	if ctx.Err() != nil { // interrupted, or ended while the guest finished up
		return 0, describeCallError(ctx, sys.NewExitError(exitCodeOf(ctx)))
	}
	if err != nil {
		return 0, describeCallError(ctx, err)
	}
	if len(f.Definition().ResultTypes()) == 0 {
		return 0, nil
	}
	return stack[0], nil
}

// describeCallError turns wazero's exit errors into the package's errors.
func describeCallError(ctx context.Context, err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fmt.Errorf("%w: %w", ErrDeadline, context.Cause(ctx))
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
		}
		return exitError{int(exit.ExitCode())}
	}
	return fmt.Errorf("%w: %w", ErrTrap, err)
}

func exitCodeOf(ctx context.Context) uint32 {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return sys.ExitCodeDeadlineExceeded
	}
	return sys.ExitCodeContextCanceled
}

func (i *wazeroInstance) Close(ctx context.Context) error { return i.mod.Close(ctx) }

type wazeroMemory struct{ m api.Memory }

// Read is wazero's, but for a range that ends at 4 GiB, the end of a full
// memory: wazero computes that end as a uint32, which wraps to 0 and
// panics.
func (w *wazeroMemory) Read(off, n uint32) ([]byte, bool) {
	end := uint64(off) + uint64(n)
	if end <= math.MaxUint32 {
		return w.m.Read(off, n)
	}
	first, ok := w.m.Read(0, 1) // the memory is one Go slice: reach the end from its start
	if !ok || end > w.Size() {
		return nil, false
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(&first[0]), off)), n), true
}

func (w *wazeroMemory) Write(off uint32, b []byte) bool { return w.m.Write(off, b) }

func (w *wazeroMemory) ReadUint32(off uint32) (uint32, bool) {
	if off > math.MaxUint32-4 { // wazero's own read wraps there, as Read's
		b, ok := w.Read(off, 4)
		if !ok {
			return 0, false
		}
		return binary.LittleEndian.Uint32(b), true
	}
	return w.m.ReadUint32Le(off)
}

func (w *wazeroMemory) WriteUint32(off uint32, v uint32) bool {
	return w.m.WriteUint32Le(off, v)
}
func (w *wazeroMemory) Size() uint64 {
	if size := w.m.Size(); size != 0 {
		return uint64(size)
	}
	pages, _ := w.m.Grow(0) // 0 bytes, or 65,536 pages that wrap a uint32 to 0
	return uint64(pages) * pageSize
}
