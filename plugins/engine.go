// Package plugins loads and runs Wasm plugins: validation against the wharf
// ABI, compilation with an on-disk cache, long-running instances (Launch)
// and their memory and time limits. The Engine interface hides the Wasm
// runtime: wazero (pure Go, the default) or wasmtime (cgo).
package plugins

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Engine names, as wharf.toml's [limits] engine and wharf serve --engine
// spell them.
const (
	EngineWazero   = "wazero"
	EngineWasmtime = "wasmtime"
)

// Engines lists the engine names, the default first.
var Engines = []string{EngineWazero, EngineWasmtime}

// CheckEngine refuses a name that is not one of Engines.
func CheckEngine(name string) error {
	if !slices.Contains(Engines, name) {
		return fmt.Errorf("unknown engine %q (want %s)", name, strings.Join(Engines, " or "))
	}
	return nil
}

// NewEngine creates the named engine; an empty name is the default.
func NewEngine(ctx context.Context, name string, cfg EngineConfig) (Engine, error) {
	switch name {
	case "", EngineWazero:
		return NewWazeroEngine(ctx, cfg)
	case EngineWasmtime:
		return NewWasmtimeEngine(ctx, cfg)
	}
	return nil, CheckEngine(name)
}

// ValueType is the Wasm type of a host function parameter or result.
type ValueType byte

// Value types used by wharf host functions.
const (
	I32 ValueType = iota + 1
	I64
)

// HostFunc is one host function exported to guests. Fn reads its parameters
// from stack and writes its results back into stack[0:len(Results)]; it must
// not keep c or any view of guest memory after it returns.
type HostFunc struct {
	Name    string
	Params  []ValueType
	Results []ValueType
	Fn      func(ctx context.Context, c Caller, stack []uint64)
}

// Caller is the guest instance a host function is running for.
type Caller interface {
	// Memory is the instance's linear memory.
	Memory() Memory
	// Data is the value given in InstanceConfig.Data.
	Data() any
}

// Memory is a guest's linear memory. Views returned by Read are valid only
// until the guest runs again or memory grows; copy what must be kept.
type Memory interface {
	Read(offset, length uint32) ([]byte, bool)
	Write(offset uint32, data []byte) bool
	ReadUint32(offset uint32) (uint32, bool)
	WriteUint32(offset uint32, v uint32) bool
	// Size is the memory's length in bytes: up to 4 GiB, one more than
	// a uint32 holds.
	Size() uint64
}

// EngineConfig configures a runtime for one plugin.
type EngineConfig struct {
	// CacheDir holds compiled code across runs; empty disables the cache.
	CacheDir string
	// MemoryLimitBytes caps each instance's linear memory (rounded down to
	// 64 KiB pages); zero means the Wasm maximum of 4 GiB.
	MemoryLimitBytes uint64
	// HostModules are the host functions by import module name.
	HostModules map[string][]HostFunc
	// Interpret runs modules on wazero's interpreter (wazero only): a
	// module loads in about a third of the compiler's time, and guest code
	// runs several times slower. Compiled code is not cached.
	Interpret bool
	// CacheUnwritable, if set, hears that compiled code could not be
	// stored in CacheDir (a full or read-only disk); the module loads all
	// the same, and the next start compiles it again.
	CacheUnwritable func(error)
	// CacheDamaged, if set, hears that code in CacheDir failed its
	// checksum (damaged on disk); it is not run, and the module compiles
	// again.
	CacheDamaged func(error)
	// CacheUnloadable, if set, hears that code stored in CacheDir cannot
	// be loaded from there (a filesystem mounted noexec): the module
	// compiles at every start.
	CacheUnloadable func(error)
}

// Engine compiles modules for one plugin. Implementations must register the
// host functions without reflection.
type Engine interface {
	// Compile loads the module's compiled code from the cache, or compiles
	// it (reading its bytes) and stores the result there.
	Compile(ctx context.Context, module *ModuleFile) (CompiledModule, error)
	Close(ctx context.Context) error
}

// ImportRef names one imported function and its signature.
type ImportRef struct {
	Module, Name    string
	Params, Results []ValueType
}

// CompiledModule is compiled code that can be instantiated many times.
type CompiledModule interface {
	Imports() []ImportRef
	Exports() []string
	Instantiate(ctx context.Context, cfg InstanceConfig) (ModuleInstance, error)
}

// InstanceConfig configures one instance.
type InstanceConfig struct {
	// Data is returned by Caller.Data inside host functions.
	Data any
	// Stdout and Stderr receive the guest's WASI output.
	Stdout, Stderr io.Writer
	// Descriptors are the instance's file descriptors from 3 up; nil means
	// none.
	Descriptors Descriptors
	// activity hears about host calls (Launch sets it).
	activity *activity
}

// ModuleInstance is one running copy of a module. It is not safe for concurrent
// calls.
type ModuleInstance interface {
	Caller
	// HasExport reports whether the module exports function name.
	HasExport(name string) bool
	// Call runs an exported function with integer arguments and returns its
	// single result (zero if it has none). Any error leaves the instance
	// unusable. A ctx that ends stops the guest.
	Call(ctx context.Context, name string, args ...uint64) (uint64, error)
	Close(ctx context.Context) error
}
