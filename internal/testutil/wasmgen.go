// Package testutil holds helpers shared by wharf's tests: building guest
// modules, hand-assembling small Wasm modules, and leak checks.
package testutil

import "github.com/wharfhq/wharf/internal/leb128"

// ModuleSpec describes a tiny Wasm module: imported functions of type
// () -> i32 and exported functions that return a constant i32. It lets tests
// produce modules a Go toolchain would never emit, such as one importing an
// unknown function or reporting another ABI version.
type ModuleSpec struct {
	Imports [][2]string      // module, name
	Exports map[string]int32 // export name -> constant it returns
}

// Wasm encodes the module in the binary format.
func (s ModuleSpec) Wasm() []byte {
	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	// Type section: type 0 is () -> i32.
	out = appendSection(out, 1, []byte{0x01, 0x60, 0x00, 0x01, 0x7f})
	if len(s.Imports) > 0 {
		body := leb128.AppendU32(nil, uint32(len(s.Imports)))
		for _, imp := range s.Imports {
			body = appendName(body, imp[0])
			body = appendName(body, imp[1])
			body = append(body, 0x00, 0x00) // func, type 0
		}
		out = appendSection(out, 2, body)
	}
	names := sortedKeys(s.Exports)
	funcs := leb128.AppendU32(nil, uint32(len(names)))
	for range names {
		funcs = append(funcs, 0x00)
	}
	out = appendSection(out, 3, funcs)
	out = appendSection(out, 5, []byte{0x01, 0x00, 0x01}) // one memory, min 1 page
	exports := leb128.AppendU32(nil, uint32(len(names)+1))
	for i, name := range names {
		exports = appendName(exports, name)
		exports = append(exports, 0x00)
		exports = leb128.AppendU32(exports, uint32(len(s.Imports)+i))
	}
	exports = appendName(exports, "memory")
	exports = append(exports, 0x02, 0x00)
	out = appendSection(out, 7, exports)
	code := leb128.AppendU32(nil, uint32(len(names)))
	for _, name := range names {
		body := []byte{0x00, 0x41} // no locals; i32.const
		body = leb128.AppendS32(body, s.Exports[name])
		body = append(body, 0x0b) // end
		code = leb128.AppendU32(code, uint32(len(body)))
		code = append(code, body...)
	}
	return appendSection(out, 10, code)
}

func sortedKeys(m map[string]int32) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = leb128.AppendU32(out, uint32(len(body)))
	return append(out, body...)
}

func appendName(out []byte, s string) []byte {
	out = leb128.AppendU32(out, uint32(len(s)))
	return append(out, s...)
}
