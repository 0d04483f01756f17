package plugins

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/wharfhq/wharf/abi"
)

var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// wasiModule is the only import module other than abi.ImportModule a guest may
// use.
const wasiModule = "wasi_snapshot_preview1"

// checkMagic refuses a file that is not a binary Wasm module before it reaches
// the compiler, so the message is about the file rather than a decoder.
func checkMagic(wasm []byte) error {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return fmt.Errorf("%w: not a WebAssembly module (no \\0asm header)", ErrInvalidModule)
	}
	return nil
}

// startSection is the id of a module's start section.
const startSection = 8

// checkNoStart refuses a module with a start function: it runs as the
// module is instantiated, before the module's main and outside any event,
// where neither engine stops it (one that loops hung wharf serve, and each
// replacement instance, for good). Go's wasip1 modules have none. A module
// whose sections cannot be listed is left to the compiler to say why.
func checkNoStart(wasm []byte) error {
	if ss, err := splitSections(wasm); err == nil && hasSection(ss, startSection) {
		return fmt.Errorf("%w: the module has a start function (a start section), which wharf does not run: "+
			"a plugin is a WASI command built with GOOS=wasip1 GOARCH=wasm go build, whose main calls sdk.Serve()", ErrInvalidModule)
	}
	return nil
}

// validateModule checks a compiled module against the host's imports and the
// exports a plugin must have.
func validateModule(m CompiledModule, known map[string][]HostFunc, required []string) error {
	for _, imp := range m.Imports() {
		if imp.Module == abi.ImportModuleV1 {
			return fmt.Errorf("%w: the module was built against wharf ABI version 1 (it imports %s.%s); this host runs version %d: rebuild it with this wharf's SDK (wharf build) and make its main call sdk.Serve()",
				ErrInvalidModule, imp.Module, imp.Name, abi.Version)
		}
		funcs, ok := known[imp.Module]
		if !ok {
			if imp.Module == wasiModule {
				continue
			}
			return fmt.Errorf("%w: imports %s.%s from unknown module %q (the host provides %s and %s)",
				ErrInvalidModule, imp.Module, imp.Name, imp.Module, abi.ImportModule, wasiModule)
		}
		i := slices.IndexFunc(funcs, func(f HostFunc) bool { return f.Name == imp.Name })
		if i < 0 {
			return fmt.Errorf("%w: unknown import %s.%s (this host implements ABI version %d)",
				ErrInvalidModule, imp.Module, imp.Name, abi.Version)
		}
		if f := funcs[i]; !slices.Equal(f.Params, imp.Params) || !slices.Equal(f.Results, imp.Results) {
			return fmt.Errorf("%w: import %s.%s has signature %s, the host's is %s",
				ErrInvalidModule, imp.Module, imp.Name, signature(imp.Params, imp.Results), signature(f.Params, f.Results))
		}
	}
	exports := m.Exports()
	var missing []string
	for _, name := range required {
		if !slices.Contains(exports, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing required export %s (a plugin is a WASI command: build it with GOOS=wasip1 GOARCH=wasm go build, without -buildmode=c-shared, and make its main call sdk.Serve())",
			ErrInvalidModule, strings.Join(missing, ", "))
	}
	return nil
}

// signature formats a function type like "(i32, i64) -> i32".
func signature(params, results []ValueType) string {
	names := func(ts []ValueType) string {
		var s []string
		for _, t := range ts {
			switch t {
			case I32:
				s = append(s, "i32")
			case I64:
				s = append(s, "i64")
			default:
				s = append(s, "?")
			}
		}
		return strings.Join(s, ", ")
	}
	return "(" + names(params) + ") -> (" + names(results) + ")"
}
