package plugins

// #include <stdlib.h>
// #include <malloc.h>
// #include "wasmtime_shim.h"
import "C"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/cgo"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bytecodealliance/wasmtime-go/v39"

	"github.com/wharfhq/wharf/internal/atomicfile"
)

// WasmtimeEngine is the Engine built on wasmtime (Cranelift, through cgo).
// Guest code runs 2-3x faster than on wazero and instances start in tens of
// microseconds; a host call costs more (a cgo round trip).
//
// A running guest is stopped by epoch interruption: one goroutine advances
// the epoch of the process-wide wasmtime engine every epochTick while
// guests run, and at each tick a running guest checks its instance's
// interrupt flag, which the host sets when the call's context ends. A guest in machine code is inside a cgo
// call, so it never holds up Go's garbage collector.
//
// Guests run with wasmtime's async support, on stacks of its own: when
// poll_oneoff finds nothing ready, the guest is suspended and the cgo call
// returns, so the instance's goroutine waits like any other. Blocking
// inside a cgo callback instead locks the goroutine to its thread, and each
// wait and wake-up then hands the processor between threads (measured: a
// Worker request's p50 went from 154 to 68 µs).
type WasmtimeEngine struct {
	engine  *wasmtime.Engine
	linker  *wasmtime.Linker
	cfg     EngineConfig
	handles []cgo.Handle // the host functions, as the C trampoline finds them
	modules []*wasmtime.Module
}

// epochTick is how often the engine's epoch advances: the longest a guest
// runs on after its call's context ended.
const epochTick = 5 * time.Millisecond

// idleEpochTicks is how many ticks in a row without any guest running make
// the ticker sleep until one runs: an idle host does not wake up 200 times
// a second (2.8% of a core, measured with examples/counter).
const idleEpochTicks = 200

// wasmtimeConfigKey names the engine settings that compiled code depends on;
// it is part of the cache key, so change it when the settings change.
const wasmtimeConfigKey = "epoch-interruption,async"

// wasmtimeModulePath is the Go module providing wasmtime; its version is part
// of the cache key.
const wasmtimeModulePath = "github.com/bytecodealliance/wasmtime-go/v39"

// Wasm value kinds of the C API (wasm_valkind_t).
const (
	wasmI32 = 0
	wasmI64 = 1
)

// maxWasmStack is how deep a guest's own stack may grow. wasmtime's
// default, 512 KiB, is about 6,500 Go calls, where wazero's stack grows
// until the guest's memory runs out: a recursion 10,000 deep that runs on
// wazero overflowed on wasmtime. Guests run on wasmtime's async stacks, of
// maxWasmStack and hostStack more, whose pages are taken only once used.
const maxWasmStack = 16 << 20

// hostStack is what an async stack keeps beyond maxWasmStack for the
// frames of host calls (wasmtime's default margin; wharf's trampolines then
// run Go on the thread's own stack).
const hostStack = 2 << 20

// shared is the process-wide wasmtime engine and its epoch ticker, which
// runs while any WasmtimeEngine is open and sleeps while no guest runs.
var shared struct {
	mu     sync.Mutex
	engine *wasmtime.Engine
	users  int
	stop   chan struct{}
	// guests counts the times guest code was entered (high 32 bits) and
	// the guests in it now (low 32 bits); the ticker compares it from tick
	// to tick.
	guests atomic.Uint64
	// ticker naps while no guest runs; runGuest rouses it.
	ticker *napper
}

func acquireWasmtime() *wasmtime.Engine {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.engine == nil {
		cfg := wasmtime.NewConfig()
		cfg.SetEpochInterruption(true)
		cfg.SetMaxWasmStack(maxWasmStack)
		cConfig := *(**C.wasm_config_t)(unsafe.Pointer(cfg))
		C.wasmtime_config_async_support_set(cConfig, true)
		C.wasmtime_config_async_stack_size_set(cConfig, maxWasmStack+hostStack)
		shared.engine = wasmtime.NewEngineWithConfig(cfg)
	}
	if shared.users == 0 {
		shared.stop = make(chan struct{})
		shared.ticker = newNapper()
		go tickEpochs(shared.engine, shared.stop, shared.ticker)
	}
	shared.users++
	return shared.engine
}

func releaseWasmtime() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.users--
	if shared.users == 0 {
		close(shared.stop)
	}
}

// tickEpochs advances e's epoch every epochTick until stop closes, and
// sleeps after idleEpochTicks ticks that saw no guest run until runGuest
// wakes it.
func tickEpochs(e *wasmtime.Engine, stop chan struct{}, ticker *napper) {
	t := time.NewTicker(epochTick)
	defer t.Stop()
	last, idle := shared.guests.Load(), 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		e.IncrementEpoch()
		if now := shared.guests.Load(); now != last || uint32(now) != 0 {
			last, idle = now, 0
			continue
		}
		if idle++; idle < idleEpochTicks {
			continue
		}
		ticker.nap(stop, func() bool { return shared.guests.Load() == last }) // a closed stop ends the loop above
		t.Reset(epochTick)
		last, idle = shared.guests.Load(), 0
	}
}

// runGuest runs the guest code of the call f until it suspends or ends,
// reporting whether it ended; the epoch ticker runs meanwhile.
func runGuest(f *C.wasmtime_call_future_t) bool {
	shared.guests.Add(1<<32 | 1)
	shared.ticker.rouse()
	done := C.wharf_future_poll(f)
	shared.guests.Add(^uint64(0)) // one fewer in guest code
	return bool(done)
}

// NewWasmtimeEngine creates a linker with WASI preview 1 and the given host
// modules. Host functions are called through a C trampoline with the raw
// argument array: no per-call type checks, reflection or allocation.
func NewWasmtimeEngine(ctx context.Context, cfg EngineConfig) (*WasmtimeEngine, error) {
	e := &WasmtimeEngine{engine: acquireWasmtime(), cfg: cfg}
	e.linker = wasmtime.NewLinker(e.engine)
	if err := e.linker.DefineWasi(); err != nil {
		e.Close(ctx)
		return nil, err
	}
	// Guest output and descriptors are wharf's own (wasmtime's WASI only
	// knows files).
	e.linker.AllowShadowing(true)
	for _, f := range trackAll(wasiFuncs) {
		if err := e.define(wasiModule, f); err != nil {
			e.Close(ctx)
			return nil, err
		}
	}
	cModule, cName := C.CString(wasiModule), C.CString(pollOneoff.Name)
	err := takeError(C.wharf_define_poll(linkerPtr(e.linker), cModule, C.size_t(len(wasiModule)), cName, C.size_t(len(pollOneoff.Name))))
	C.free(unsafe.Pointer(cModule))
	C.free(unsafe.Pointer(cName))
	if err != nil {
		e.Close(ctx)
		return nil, err
	}
	for module, funcs := range cfg.HostModules {
		for _, f := range funcs {
			if err := e.define(module, f); err != nil {
				e.Close(ctx)
				return nil, fmt.Errorf("host module %s: %w", module, err)
			}
		}
	}
	return e, nil
}

// wasmtimeHostFunc is what the C trampoline's env handle refers to.
type wasmtimeHostFunc struct {
	fn      func(context.Context, Caller, []uint64)
	params  []ValueType
	results int
}

func (e *WasmtimeEngine) define(module string, f HostFunc) error {
	h := cgo.NewHandle(&wasmtimeHostFunc{fn: f.Fn, params: f.Params, results: len(f.Results)})
	e.handles = append(e.handles, h)
	params, results := wasmtimeKinds(f.Params), wasmtimeKinds(f.Results)
	cModule, cName := C.CString(module), C.CString(f.Name)
	defer C.free(unsafe.Pointer(cModule))
	defer C.free(unsafe.Pointer(cName))
	var pp, rp *C.uint8_t
	if len(params) > 0 {
		pp = (*C.uint8_t)(&params[0])
	}
	if len(results) > 0 {
		rp = (*C.uint8_t)(&results[0])
	}
	return takeError(C.wharf_define_func(linkerPtr(e.linker), cModule, C.size_t(len(module)), cName, C.size_t(len(f.Name)),
		pp, C.size_t(len(params)), rp, C.size_t(len(results)), C.uintptr_t(h)))
}

func wasmtimeKinds(ts []ValueType) []uint8 {
	out := make([]uint8, len(ts))
	for i, t := range ts {
		if t == I64 {
			out[i] = wasmI64
		} else {
			out[i] = wasmI32
		}
	}
	return out
}

// linkerPtr and storePtr read the C handle wasmtime-go keeps as the first
// field of its Linker and Store; wasmtime-go has no accessor for them. The
// version is pinned in go.mod and the engine's tests fail if this breaks.
func linkerPtr(l *wasmtime.Linker) *C.wasmtime_linker_t {
	return *(**C.wasmtime_linker_t)(unsafe.Pointer(l))
}

func storePtr(s *wasmtime.Store) *C.wasmtime_store_t {
	return *(**C.wasmtime_store_t)(unsafe.Pointer(s))
}

// externItem returns the item inside a wasmtime_extern_t (a kind byte, then
// the item at offset 8), which wasmtime-go returns from AsExtern.
func externItem(ext unsafe.Pointer, size, itemSize uintptr) unsafe.Pointer {
	if size < 8+itemSize {
		panic("wasmtime_extern_t is smaller than the C API declares")
	}
	return unsafe.Add(ext, 8)
}

// instancesByContext finds the instance a host call is for from its store
// context, which is stable for the store's lifetime.
var instancesByContext sync.Map // *C.wasmtime_context_t -> *wasmtimeInstance

// wharfHostCall runs a host function for the C trampoline. A panic becomes
// a trap of the calling guest: it must not unwind through wasmtime's frames.
//
//export wharfHostCall
func wharfHostCall(id C.uintptr_t, cx *C.wasmtime_context_t, raw *C.wasmtime_val_raw_t) (trap *C.wasm_trap_t) {
	f := cgo.Handle(id).Value().(*wasmtimeHostFunc)
	v, _ := instancesByContext.Load(cx)
	inst := v.(*wasmtimeInstance)
	inst.mem.valid = false // the guest ran since the last look
	vals := unsafe.Slice(raw, max(len(f.params), f.results))
	stack := inst.hostStack[:len(vals)]
	for i, t := range f.params {
		stack[i] = uint64(vals[i].lo)
		if t == I32 {
			stack[i] = uint64(uint32(stack[i]))
		}
	}
	defer func() {
		if r := recover(); r != nil {
			inst.panicked = fmt.Errorf("host function panicked: %v", r)
			msg := inst.panicked.Error()
			cmsg := C.CString(msg)
			trap = C.wasmtime_trap_new(cmsg, C.size_t(len(msg)))
			C.free(unsafe.Pointer(cmsg))
		}
	}()
	f.fn(inst.ctx, inst, stack)
	for i := 0; i < f.results; i++ {
		vals[i].lo = C.uint64_t(stack[i])
	}
	return nil
}

// wharfPollStart begins a guest's poll_oneoff(in, out, n, n_out) for the
// C trampoline. It reports true when nothing is ready yet: the guest is
// suspended, Call waits, and wharfPollContinue finishes the call.
//
//export wharfPollStart
func wharfPollStart(cx *C.wasmtime_context_t, in, out, n, nOut C.uint32_t, result *C.int32_t) (pending C.bool) {
	v, _ := instancesByContext.Load(cx)
	inst := v.(*wasmtimeInstance)
	defer inst.recoverPoll(result, &pending, false)
	inst.mem.valid = false
	inst.act.calls.Add(1)
	p, errno := startPoll(inst, []uint64{uint64(in), uint64(out), uint64(n), uint64(nOut)})
	wait := time.Duration(0)
	if errno == ErrnoSuccess {
		errno, wait = p.check(inst.ctx, inst)
	}
	if wait == 0 {
		*result = C.int32_t(errno)
		return false
	}
	inst.act.inHost.Add(1) // waiting in the host, not computing
	inst.poll, inst.pollResult, inst.pollWait = p, result, wait
	return true
}

// wharfPollContinue checks a suspended poll_oneoff again; true ends it.
//
//export wharfPollContinue
func wharfPollContinue(cx *C.wasmtime_context_t) (done C.bool) {
	v, _ := instancesByContext.Load(cx)
	inst := v.(*wasmtimeInstance)
	if inst.poll == nil { // ended by a panic while Call waited for it
		return true
	}
	defer inst.recoverPoll(inst.pollResult, &done, true)
	errno, wait := inst.poll.check(inst.ctx, inst)
	if wait != 0 {
		inst.pollWait = wait
		return false
	}
	*inst.pollResult = C.int32_t(errno)
	inst.act.leave()
	inst.poll, inst.pollResult = nil, nil
	return true
}

// recoverPoll turns a panic in poll_oneoff into a failed call: the panic
// must not unwind through wasmtime's frames, and an async host function
// cannot trap once suspended, so the guest is interrupted instead.
func (i *wasmtimeInstance) recoverPoll(result *C.int32_t, ret *C.bool, ends C.bool) {
	if r := recover(); r != nil {
		i.failPoll(r, result)
		*ret = ends
	}
}

// waitForPoll waits until the suspended poll_oneoff may be ready. A panic
// there ends the poll as one in its check does (recoverPoll): it must not
// end the host process, and wharfPollContinue then finds the poll over.
func (i *wasmtimeInstance) waitForPoll(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			i.failPoll(r, i.pollResult)
		}
	}()
	i.fds.Wait(ctx, i.pollWait)
}

// failPoll ends poll_oneoff after the host panicked with r: the call fails
// with EFAULT, written to result, and the guest is interrupted.
func (i *wasmtimeInstance) failPoll(r any, result *C.int32_t) {
	i.panicked = fmt.Errorf("host function panicked: %v", r)
	atomic.StoreInt32((*int32)(unsafe.Pointer(i.interrupt)), 1)
	*result = C.int32_t(ErrnoFault)
	if i.poll != nil {
		i.act.leave()
		i.poll, i.pollResult = nil, nil
	}
}

// Compile loads the module's compiled code from the cache or compiles it
// and stores the result there.
func (e *WasmtimeEngine) Compile(ctx context.Context, module *ModuleFile) (CompiledModule, error) {
	var cached string
	if e.cfg.CacheDir != "" {
		cached = filepath.Join(e.cfg.CacheDir, "wasmtime", wasmtimeCacheKey(module.Digest)+".cwasm")
		m, err := readCompiled(e.engine, cached)
		if err == nil {
			return newWasmtimeModule(e, m), nil
		}
		switch {
		case errors.Is(err, errDamaged) && e.cfg.CacheDamaged != nil:
			e.cfg.CacheDamaged(err)
		case errors.Is(err, errUnloadable) && e.cfg.CacheUnloadable != nil:
			e.cfg.CacheUnloadable(err)
			cached = "" // storing the code again would not help
		}
	}
	wasm, err := module.Bytes()
	if err != nil {
		return nil, err
	}
	// Cranelift frees most of what compiling took, but glibc keeps it.
	defer C.malloc_trim(0)
	m, err := wasmtime.NewModule(e.engine, wasm)
	if err != nil {
		return nil, withoutBacktrace(err)
	}
	if cached != "" {
		// Once stored, the code is served from the file, as on a warm
		// start, not from the heap: a cold start of hello held 300 MB, a
		// warm one 92 MB.
		if err := writeCompiled(cached, m); err != nil {
			if e.cfg.CacheUnwritable != nil {
				e.cfg.CacheUnwritable(err)
			}
		} else if mapped, err := mapCompiled(e.engine, cached); err == nil {
			m.Close()
			m = mapped
		} else if e.cfg.CacheUnloadable != nil {
			e.cfg.CacheUnloadable(err)
		}
	}
	return newWasmtimeModule(e, m), nil
}

// withoutBacktrace is err without the stack of wasmtime's own Rust
// functions that its message ends with: a user whose module wasmtime
// refuses needs the reason, not where wasmtime found it.
func withoutBacktrace(err error) error {
	msg, _, cut := strings.Cut(err.Error(), "\n\nStack backtrace:")
	if !cut {
		return err
	}
	return errors.New(msg)
}

// wasmtimeCacheKey identifies compiled code: the module's digest, the
// wasmtime version and the engine settings. wasmtime also refuses to load
// code compiled by another version or configuration.
func wasmtimeCacheKey(digest string) string {
	version := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == wasmtimeModulePath {
				version = d.Version
			}
		}
	}
	return digest + "-" + version + "-" + wasmtimeConfigKey
}

// checksumSuffix names the file beside compiled code that holds its
// CRC-32C (8 hex digits).
const checksumSuffix = ".crc32c"

// writeCompiled stores a module's machine code atomically, then its
// checksum beside it.
func writeCompiled(path string, m *wasmtime.Module) error {
	code, err := m.Serialize()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, code, 0o600, false); err != nil {
		return err
	}
	sum := fmt.Sprintf("%08x", crc32.Checksum(code, castagnoli))
	if err := atomicfile.Write(path+checksumSuffix, []byte(sum), 0o600, false); err != nil {
		os.Remove(path) // of no use without its checksum
		return err
	}
	return nil
}

// readCompiled maps the machine code cached at path once it matches the
// checksum stored beside it: wasmtime checks neither the code nor its
// tables, so code damaged on disk (a bit flipped; zeros or a short file
// after a power loss, as writes are not synced) would run, crashing wharf
// or computing wrongly, rather than fail to load. Code without a checksum
// is not loaded either.
func readCompiled(engine *wasmtime.Engine, path string) (*wasmtime.Module, error) {
	want, err := os.ReadFile(path + checksumSuffix)
	if err != nil {
		return nil, err
	}
	got, err := fileChecksum(path)
	if err != nil {
		return nil, err
	}
	if string(want) != fmt.Sprintf("%08x", got) {
		return nil, fmt.Errorf("%s: %w", path, errDamaged)
	}
	return mapCompiled(engine, path)
}

// mapCompiled loads the machine code stored at path, mapped from the file.
func mapCompiled(engine *wasmtime.Engine, path string) (*wasmtime.Module, error) {
	m, err := wasmtime.NewModuleDeserializeFile(engine, path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, errUnloadable, err)
	}
	return m, nil
}

// errUnloadable is compiled code that passes its checksum and still cannot
// be mapped from its file.
var errUnloadable = errors.New("cannot be loaded")

// Close releases the linker, the host functions and the compiled code
// (at once, not when the garbage collector finds it: wharf dev replaces
// builds), and gives the C heap's free memory back to the system (glibc
// keeps what Cranelift freed). Instances must be closed first.
func (e *WasmtimeEngine) Close(context.Context) error {
	for _, m := range e.modules {
		m.Close()
	}
	e.modules = nil
	defer C.malloc_trim(0)
	e.linker.Close()
	for _, h := range e.handles {
		h.Delete()
	}
	e.handles = nil
	releaseWasmtime()
	return nil
}

type wasmtimeModule struct {
	engine  *WasmtimeEngine
	module  *wasmtime.Module
	imports []ImportRef
	exports []string
}

func newWasmtimeModule(e *WasmtimeEngine, m *wasmtime.Module) *wasmtimeModule {
	wm := &wasmtimeModule{engine: e, module: m}
	e.modules = append(e.modules, m)
	for _, imp := range m.Imports() {
		ft := imp.Type().FuncType()
		if ft == nil {
			continue
		}
		name := ""
		if n := imp.Name(); n != nil {
			name = *n
		}
		wm.imports = append(wm.imports, ImportRef{Module: imp.Module(), Name: name,
			Params: fromWasmtimeTypes(ft.Params()), Results: fromWasmtimeTypes(ft.Results())})
	}
	for _, exp := range m.Exports() {
		if exp.Type().FuncType() != nil {
			wm.exports = append(wm.exports, exp.Name())
		}
	}
	return wm
}

// fromWasmtimeTypes maps types back; anything but i32 and i64 becomes 0,
// which never matches a host function.
func fromWasmtimeTypes(ts []*wasmtime.ValType) []ValueType {
	out := make([]ValueType, len(ts))
	for i, t := range ts {
		switch t.Kind() {
		case wasmtime.KindI32:
			out[i] = I32
		case wasmtime.KindI64:
			out[i] = I64
		}
	}
	return out
}

func (m *wasmtimeModule) Imports() []ImportRef { return m.imports }
func (m *wasmtimeModule) Exports() []string    { return m.exports }

func (m *wasmtimeModule) Instantiate(ctx context.Context, cfg InstanceConfig) (ModuleInstance, error) {
	store := wasmtime.NewStore(m.engine.engine)
	limit := int64(-1)
	if l := m.engine.cfg.MemoryLimitBytes; l > 0 {
		limit = int64(min(l/pageSize, maxPages) * pageSize)
	}
	store.Limiter(limit, -1, -1, -1, -1)
	store.SetWasi(wasmtime.NewWasiConfig())
	inst := &wasmtimeInstance{monoZero: time.Now(),
		store: store, cx: (*C.wasmtime_context_t)(unsafe.Pointer(store.Context())),
		data: cfg.Data, stdout: cfg.Stdout, stderr: cfg.Stderr, fds: descriptorsOr(cfg.Descriptors), act: activityOr(cfg.activity), ctx: ctx,
		funcs:     map[string]*wasmtimeFunc{},
		interrupt: (*C.int32_t)(C.calloc(1, 4)),
	}
	inst.mem.inst = inst
	C.wharf_watch_epochs(storePtr(store), inst.interrupt)
	instancesByContext.Store(inst.cx, inst)
	call := C.wharf_instantiate(linkerPtr(m.engine.linker), inst.cx, *(**C.wasmtime_module_t)(unsafe.Pointer(m.module)))
	for !runGuest(call.future) { // no host function runs while it instantiates
	}
	cInstance := call.instance
	err := callError(call.error, call.trap)
	C.wharf_call_free(call)
	if err != nil {
		inst.Close(ctx)
		return nil, err
	}
	instance := (*wasmtime.Instance)(unsafe.Pointer(&cInstance))
	for _, name := range m.exports {
		f := instance.GetFunc(store, name)
		ft := f.Type(store)
		ext := f.AsExtern()
		inst.funcs[name] = &wasmtimeFunc{fn: *(*C.wasmtime_func_t)(externItem(unsafe.Pointer(&ext), unsafe.Sizeof(ext), unsafe.Sizeof(C.wasmtime_func_t{}))),
			params: wasmtimeKinds(fromWasmtimeTypes(ft.Params())), results: wasmtimeKinds(fromWasmtimeTypes(ft.Results()))}
	}
	if mem := instance.GetExport(store, "memory"); mem != nil && mem.Memory() != nil {
		ext := mem.Memory().AsExtern()
		inst.mem.handle = *(*C.wasmtime_memory_t)(externItem(unsafe.Pointer(&ext), unsafe.Sizeof(ext), unsafe.Sizeof(C.wasmtime_memory_t{})))
		inst.mem.exported = true
	}
	return inst, nil
}

// wasmtimeFunc is an export and the kinds of its parameters and results.
type wasmtimeFunc struct {
	fn              C.wasmtime_func_t
	params, results []uint8
}

type wasmtimeInstance struct {
	store  *wasmtime.Store
	cx     *C.wasmtime_context_t
	funcs  map[string]*wasmtimeFunc
	mem    wasmtimeMemory
	data   any
	stdout io.Writer
	stderr io.Writer
	fds    Descriptors
	act    *activity
	// interrupt, set to 1 from any goroutine, stops the guest at its next
	// epoch tick. It is C memory so the epoch callback can read it.
	interrupt *C.int32_t
	mu        sync.Mutex // serialises Call; instances are not reentrant
	ctx       context.Context
	panicked  error
	hostStack [16]uint64
	// poll is the guest's poll_oneoff while it waits; pollResult is where
	// its errno goes, and pollWait how long Call waits before asking again.
	poll       *poll
	pollResult *C.int32_t
	pollWait   time.Duration
	// monoZero is when WASI's monotonic clock read zero: wasmtime counts it
	// from the WASI context's creation (taken just after, so an absolute
	// wait never ends early).
	monoZero time.Time
}

func (i *wasmtimeInstance) Memory() Memory { return &i.mem }
func (i *wasmtimeInstance) Data() any      { return i.data }

func (i *wasmtimeInstance) descriptors() Descriptors { return i.fds }
func (i *wasmtimeInstance) activity() *activity      { return i.act }
func (i *wasmtimeInstance) monotonicZero() time.Time { return i.monoZero }

func (i *wasmtimeInstance) output(fd uint32) io.Writer {
	if fd == fdStdout {
		return i.stdout
	}
	return i.stderr
}

func (i *wasmtimeInstance) HasExport(name string) bool {
	_, ok := i.funcs[name]
	return ok
}

func (i *wasmtimeInstance) Call(ctx context.Context, name string, args ...uint64) (uint64, error) {
	f, ok := i.funcs[name]
	if !ok {
		return 0, fmt.Errorf("module does not export %q", name)
	}
	if len(args) > len(f.params) {
		return 0, fmt.Errorf("%s takes fewer than %d arguments", name, len(args))
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	call := C.wharf_call_new()
	defer C.wharf_call_free(call)
	call._func = f.fn
	for n, kind := range f.params { // missing arguments are zeros
		call.args[n].kind = C.uint8_t(kind)
		if n < len(args) {
			*(*uint64)(unsafe.Pointer(&call.args[n].of)) = args[n]
		}
	}
	i.ctx = ctx
	i.mem.valid = false
	atomic.StoreInt32((*int32)(unsafe.Pointer(i.interrupt)), 0)
	C.wasmtime_context_set_epoch_deadline(i.cx, 1)
	stop := context.AfterFunc(ctx, func() { atomic.StoreInt32((*int32)(unsafe.Pointer(i.interrupt)), 1) })
	C.wharf_call_start(call, i.cx, C.size_t(len(f.params)), C.size_t(len(f.results)))
	for !runGuest(call.future) {
		// poll_oneoff found nothing ready: the guest waits here, outside
		// any cgo call, until a descriptor may be ready or a clock is due.
		// Then the goroutines made runnable with it go first, so under load
		// the guest wakes to more events at once (without the yield, wrk's
		// one-counter rate fell 8-15%: more wake-ups, each with its guest
		// scheduler pass).
		if i.poll != nil {
			i.waitForPoll(ctx)
			runtime.Gosched()
		}
	}
	stop()
	i.ctx = nil
	err := callError(call.error, call.trap)
	if ctx.Err() != nil { // interrupted, or ended while the guest finished up
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, fmt.Errorf("%w: %w", ErrDeadline, context.Cause(ctx))
		}
		return 0, fmt.Errorf("%w: %w", ErrCanceled, context.Cause(ctx))
	}
	if i.panicked != nil {
		return 0, fmt.Errorf("%w: %w", ErrTrap, i.panicked)
	}
	if err != nil {
		return 0, err
	}
	if len(f.results) == 0 {
		return 0, nil
	}
	result := *(*uint64)(unsafe.Pointer(&call.results[0].of))
	if f.results[0] == wasmI32 {
		result = uint64(uint32(result))
	}
	return result, nil
}

// callError describes a failed call like the wazero engine does: ErrTrap
// with the trap and the guest functions on the stack.
func callError(cerr *C.wasmtime_error_t, trap *C.wasm_trap_t) error {
	switch {
	case trap != nil:
		defer C.wasm_trap_delete(trap)
		var what string
		var code C.uint8_t
		if C.wasmtime_trap_code(trap, &code) && int(code) < len(trapNames) {
			what = trapNames[code]
		} else {
			var msg C.wasm_byte_vec_t
			C.wasm_trap_message(trap, &msg)
			what, _, _ = strings.Cut(strings.TrimRight(C.GoStringN(msg.data, C.int(msg.size)), "\x00"), "\n")
			C.wasm_byte_vec_delete(&msg)
		}
		var frames C.wasm_frame_vec_t
		C.wasm_trap_trace(trap, &frames)
		defer C.wasm_frame_vec_delete(&frames)
		var b strings.Builder
		fmt.Fprintf(&b, "wasm error: %s\nwasm stack trace:", what)
		all := unsafe.Slice(frames.data, frames.size)
		for _, f := range all[:min(len(all), maxTraceFrames)] {
			if name := C.wasmtime_frame_func_name(f); name != nil {
				fmt.Fprintf(&b, "\n\t%s()", C.GoStringN(name.data, C.int(name.size)))
			} else {
				fmt.Fprintf(&b, "\n\tfunction[%d]()", C.wasm_frame_func_index(f))
			}
		}
		if len(all) > maxTraceFrames {
			fmt.Fprintf(&b, "\n\t... %d more frames", len(all)-maxTraceFrames)
		}
		return fmt.Errorf("%w: %s", ErrTrap, b.String())
	case cerr != nil:
		defer C.wasmtime_error_delete(cerr)
		var status C.int
		if C.wasmtime_error_exit_status(cerr, &status) {
			return exitError{int(status)}
		}
		var msg C.wasm_byte_vec_t
		C.wasmtime_error_message(cerr, &msg)
		defer C.wasm_byte_vec_delete(&msg)
		return fmt.Errorf("%w: %s", ErrTrap, C.GoStringN(msg.data, C.int(msg.size)))
	}
	return nil
}

// maxTraceFrames is how many of a trap's innermost frames its error names,
// as many as wazero's: a stack overflow has tens of thousands, which would
// make every error and log line about it hundreds of kilobytes long.
const maxTraceFrames = 30

// trapNames are wasmtime's trap codes in the words wazero uses.
var trapNames = []string{
	"stack overflow", "out of bounds memory access", "misaligned memory access", "invalid table access",
	"invalid table access", "indirect call type mismatch", "integer overflow", "integer divide by zero",
	"invalid conversion to integer", "unreachable", "interrupted",
}

// takeError turns a wasmtime error into a Go error and frees it.
func takeError(cerr *C.wasmtime_error_t) error {
	if cerr == nil {
		return nil
	}
	defer C.wasmtime_error_delete(cerr)
	var msg C.wasm_byte_vec_t
	C.wasmtime_error_message(cerr, &msg)
	defer C.wasm_byte_vec_delete(&msg)
	return errors.New(C.GoStringN(msg.data, C.int(msg.size)))
}

func (i *wasmtimeInstance) Close(context.Context) error {
	instancesByContext.Delete(i.cx)
	i.store.Close()
	C.free(unsafe.Pointer(i.interrupt))
	return nil
}

// wasmtimeMemory reads the guest's memory in place. Its base and size are
// looked up once per host call (or per access between calls), since the
// guest may grow memory whenever it runs.
type wasmtimeMemory struct {
	inst     *wasmtimeInstance
	handle   C.wasmtime_memory_t
	exported bool
	valid    bool
	data     []byte
}

func (m *wasmtimeMemory) view() []byte {
	if !m.valid {
		m.data = nil
		if m.exported {
			base := C.wasmtime_memory_data(m.inst.cx, &m.handle)
			size := C.wasmtime_memory_data_size(m.inst.cx, &m.handle)
			m.data = unsafe.Slice((*byte)(unsafe.Pointer(base)), int(size))
		}
		m.valid = true
	}
	return m.data
}

func (m *wasmtimeMemory) Read(off, n uint32) ([]byte, bool) {
	d := m.view()
	end := uint64(off) + uint64(n) // 4 GiB, the end of a full memory, wraps a uint32
	if end > uint64(len(d)) {
		return nil, false
	}
	return d[off:end:end], true
}

func (m *wasmtimeMemory) Write(off uint32, b []byte) bool {
	d := m.view()
	if uint64(off)+uint64(len(b)) > uint64(len(d)) {
		return false
	}
	copy(d[off:], b)
	return true
}

func (m *wasmtimeMemory) ReadUint32(off uint32) (uint32, bool) {
	b, ok := m.Read(off, 4)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

func (m *wasmtimeMemory) WriteUint32(off uint32, v uint32) bool {
	b, ok := m.Read(off, 4)
	if ok {
		binary.LittleEndian.PutUint32(b, v)
	}
	return ok
}

func (m *wasmtimeMemory) Size() uint64 { return uint64(len(m.view())) }
