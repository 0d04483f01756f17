package plugins

import (
	"errors"
	"fmt"
	"math"

	"github.com/wharfhq/wharf/internal/leb128"
)

// A guest stuck in a loop must be stoppable at its deadline, and must not
// stall the whole host: Go's garbage collector stops the world, and a
// goroutine running wazero's machine code can only be stopped when it comes
// back into Go. wazero's WithCloseOnContextDone solves both with an indirect
// call at every loop header, which made Go guests three times slower here.
// Instead the module is rewritten once at load with two new globals, fuel and
// an exported interrupt flag, and this at the top of every loop:
//
//	fuel = fuel - 1
//	if fuel == 0 {
//	  fuel = fuelPerYield
//	  memory.grow 0      ;; leaves machine code for Go: a safe point for the GC
//	  if interrupt { unreachable }
//	}
//
// Every Go function body is a loop, so calls count too; a function without
// a loop (from other compilers) gets the check at its entry. The host sets the
// interrupt flag from another goroutine when an event's context ends; the
// guest traps within fuelPerYield loop iterations.

// fuelPerYield is how many loop iterations run between two safe points: a
// tenth of a millisecond to a few milliseconds of guest code.
const fuelPerYield = 100_000

// InterruptGlobal is the export name of the global that stops a guest.
const InterruptGlobal = "wharf_interrupt"

var errMalformed = errors.New("malformed module")

// instrumentInterrupts returns wasm with interrupt checks inserted.
func instrumentInterrupts(wasm []byte) ([]byte, error) {
	sections, err := splitSections(wasm)
	if err != nil {
		return nil, err
	}
	importedGlobals, globals := uint32(0), uint32(0)
	importedMemory := false
	for _, s := range sections {
		switch s.id {
		case 2:
			n, mem, err := scanImports(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals, importedMemory = n, mem
		case 6:
			sr := &wasmReader{b: s.body}
			globals = sr.u32()
			if sr.err != nil {
				return nil, sr.err
			}
		}
	}
	if !hasSection(sections, 5) && !importedMemory {
		return nil, fmt.Errorf("%w: the module has no memory", errMalformed)
	}
	interrupt := importedGlobals + globals
	fuel := interrupt + 1
	// Both are mutable i32: interrupt = 0, fuel = fuelPerYield.
	newGlobals := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41}
	newGlobals = leb128.AppendS32(newGlobals, fuelPerYield)
	newGlobals = append(newGlobals, 0x0b)
	out := append([]byte{}, wasm[:8]...)
	wroteGlobal := false
	writeGlobalSection := func(body []byte) {
		var nb []byte
		if body == nil {
			nb = leb128.AppendU32(nil, 2)
		} else {
			sr := &wasmReader{b: body}
			n := sr.u32()
			nb = leb128.AppendU32(nil, n+2)
			nb = append(nb, body[sr.pos:]...)
		}
		nb = append(nb, newGlobals...)
		out = appendSectionBytes(out, 6, nb)
		wroteGlobal = true
	}
	for _, s := range sections {
		if !wroteGlobal && s.id != 0 && sectionOrder(s.id) > sectionOrder(6) {
			writeGlobalSection(nil)
		}
		switch s.id {
		case 6:
			writeGlobalSection(s.body)
		case 7:
			sr := &wasmReader{b: s.body}
			n := sr.u32()
			if sr.err != nil {
				return nil, sr.err
			}
			nb := leb128.AppendU32(nil, n+1)
			nb = append(nb, s.body[sr.pos:]...)
			nb = leb128.AppendU32(nb, uint32(len(InterruptGlobal)))
			nb = append(nb, InterruptGlobal...)
			nb = append(nb, 0x03) // global export
			nb = leb128.AppendU32(nb, interrupt)
			out = appendSectionBytes(out, 7, nb)
		case 10:
			code, err := instrumentCode(s.body, loopCheck(interrupt, fuel))
			if err != nil {
				return nil, err
			}
			out = appendSectionBytes(out, 10, code)
		default:
			out = appendSectionBytes(out, s.id, s.body)
		}
	}
	if !wroteGlobal {
		writeGlobalSection(nil)
	}
	if !hasSection(sections, 7) {
		return nil, fmt.Errorf("%w: no export section", errMalformed)
	}
	return out, nil
}

// splitSections lists the sections of a module after its 8-byte header.
func splitSections(wasm []byte) ([]section, error) {
	if len(wasm) < 8 {
		return nil, errMalformed
	}
	r := &wasmReader{b: wasm, pos: 8}
	var sections []section
	for r.pos < len(r.b) {
		id := r.byte()
		n := r.u32()
		if r.err != nil || r.pos+int(n) > len(r.b) {
			return nil, errMalformed
		}
		sections = append(sections, section{id, r.b[r.pos : r.pos+int(n)]})
		r.pos += int(n)
	}
	return sections, nil
}

// section is one section of a module: its id and contents.
type section struct {
	id   byte
	body []byte
}

func hasSection(ss []section, id byte) bool {
	for _, s := range ss {
		if s.id == id {
			return true
		}
	}
	return false
}

// sectionOrder is the position a known section must take; custom sections
// (0) may appear anywhere.
func sectionOrder(id byte) int {
	switch id {
	case 12: // data count comes between element and code
		return 95
	case 10:
		return 100
	case 11:
		return 110
	}
	return int(id) * 10
}

// scanImports counts the imported globals of an import section and reports
// whether it imports a memory.
func scanImports(body []byte) (globals uint32, memory bool, err error) {
	r := &wasmReader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.skipName()
		r.skipName()
		switch r.byte() {
		case 0x00: // func
			r.u32()
		case 0x01: // table: reftype + limits
			r.byte()
			r.skipLimits()
		case 0x02: // memory
			r.skipLimits()
			memory = true
		case 0x03: // global
			r.byte()
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			return 0, false, fmt.Errorf("%w: unknown import kind", errMalformed)
		}
	}
	return globals, memory, r.err
}

// loopCheck is the code inserted at each loop header.
func loopCheck(interrupt, fuel uint32) []byte {
	get := func(b []byte, g uint32) []byte { return leb128.AppendU32(append(b, 0x23), g) }
	set := func(b []byte, g uint32) []byte { return leb128.AppendU32(append(b, 0x24), g) }
	b := get(nil, fuel)
	b = append(b, 0x41, 0x01, 0x6b) // i32.const 1; i32.sub
	b = set(b, fuel)
	b = get(b, fuel)
	b = append(b, 0x45, 0x04, 0x40) // i32.eqz; if
	b = leb128.AppendS32(append(b, 0x41), fuelPerYield)
	b = set(b, fuel)
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0; memory.grow 0; drop
	b = get(b, interrupt)
	return append(b, 0x04, 0x40, 0x00, 0x0b, 0x0b) // if; unreachable; end; end
}

// instrumentCode rewrites every function body of the code section.
func instrumentCode(body []byte, check []byte) ([]byte, error) {
	r := &wasmReader{b: body}
	n := r.u32()
	out := leb128.AppendU32(nil, n)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		if r.err != nil || r.pos+int(size) > len(r.b) {
			return nil, errMalformed
		}
		var err error
		fn, err = instrumentFunction(fn[:0], r.b[r.pos:r.pos+int(size)], check)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		r.pos += int(size)
		out = leb128.AppendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	return out, r.err
}

// instrumentFunction copies one body, adding check after each loop opcode.
// A body without a loop gets check at its entry instead: a guest that
// computes by recursion alone (a naive fib from C at -O0) then passes it
// at every call, where it would otherwise never reach a safe point.
func instrumentFunction(out, body, check []byte) ([]byte, error) {
	r := &wasmReader{b: body}
	locals := r.u32()
	for i := uint32(0); i < locals; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, r.err
	}
	start, entry, copied := len(out), r.pos, 0
	loops := false
	for r.pos < len(r.b) && r.err == nil {
		op := r.byte()
		if err := r.skipImmediates(op); err != nil {
			return nil, err
		}
		if op == 0x03 { // loop blocktype
			out = append(out, body[copied:r.pos]...)
			out = append(out, check...)
			copied = r.pos
			loops = true
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if !loops {
		out = append(out[:start], body[:entry]...)
		out = append(out, check...)
		return append(out, body[entry:]...), nil
	}
	return append(out, body[copied:]...), nil
}

// wasmReader decodes the binary format; the first error sticks.
type wasmReader struct {
	b   []byte
	pos int
	err error
}

func (r *wasmReader) byte() byte {
	if r.pos >= len(r.b) {
		r.err = errMalformed
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

// leb skips or reads a LEB128 number of at most maxBytes bytes.
func (r *wasmReader) leb(maxBytes int) uint64 {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errMalformed
	return 0
}

// u32 reads an unsigned LEB128 number of at most 32 bits; a fifth byte's
// unused bits must be zero, as engines require (a module whose number does
// not fit stays malformed after a rewrite encodes it again).
func (r *wasmReader) u32() uint32 {
	v := r.leb(5)
	if v > math.MaxUint32 {
		r.err = errMalformed
		return 0
	}
	return uint32(v)
}

// s32 reads a signed LEB128 number of at most 32 bits; a fifth byte's
// unused bits must extend the sign, as engines require.
func (r *wasmReader) s32() int32 {
	var v int64
	for shift := 0; shift < 35; shift += 7 {
		b := r.byte()
		v |= int64(b&0x7f) << shift
		if b&0x80 == 0 {
			if b&0x40 != 0 {
				v -= 1 << (shift + 7)
			}
			if int64(int32(v)) != v {
				break
			}
			return int32(v)
		}
	}
	r.err = errMalformed
	return 0
}

func (r *wasmReader) skip(n int) {
	if r.pos+n > len(r.b) {
		r.err = errMalformed
		return
	}
	r.pos += n
}

func (r *wasmReader) skipName() { r.skip(int(r.u32())) }

func (r *wasmReader) skipLimits() {
	flags := r.byte()
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

func (r *wasmReader) skipMemarg() {
	if align := r.u32(); align&0x40 != 0 { // multi-memory: memory index follows
		r.u32()
	}
	r.leb(10)
}

func (r *wasmReader) skipBlockType() {
	c := r.byte()
	if c == 0x40 || (c >= 0x6f && c <= 0x7f) {
		return
	}
	r.pos--
	r.leb(5) // s33 type index
}

// skipImmediates skips the immediates of op; unknown opcodes are an error so
// a module is never rewritten from a misread.
func (r *wasmReader) skipImmediates(op byte) error {
	switch {
	case op == 0x02 || op == 0x03 || op == 0x04:
		r.skipBlockType()
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
	case op == 0x0c || op == 0x0d || op == 0x10 || op == 0x12 || op == 0xd2:
		r.u32()
	case op == 0x0e:
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x11 || op == 0x13:
		r.u32()
		r.u32()
	case op == 0x1c:
		r.skip(int(r.u32()))
	case op >= 0x20 && op <= 0x26:
		r.u32()
	case op >= 0x28 && op <= 0x3e:
		r.skipMemarg()
	case op == 0x3f || op == 0x40:
		r.u32()
	case op == 0x41:
		r.leb(5)
	case op == 0x42:
		r.leb(10)
	case op == 0x43:
		r.skip(4)
	case op == 0x44:
		r.skip(8)
	case op >= 0x45 && op <= 0xc4:
	case op == 0xd0:
		r.byte()
	case op == 0xfc:
		r.skipMiscImmediates(r.u32())
	case op == 0xfd:
		r.skipSIMDImmediates(r.u32())
	case op == 0xfe:
		if r.u32() == 0x03 {
			r.byte() // atomic.fence
		} else {
			r.skipMemarg()
		}
	default:
		return fmt.Errorf("%w: unsupported instruction 0x%02x at byte %d", errMalformed, op, r.pos-1)
	}
	return r.err
}

func (r *wasmReader) skipMiscImmediates(sub uint32) {
	switch {
	case sub <= 7:
	case sub == 8 || sub == 10 || sub == 12 || sub == 14:
		r.u32()
		r.u32()
	case sub <= 17:
		r.u32()
	default:
		r.err = fmt.Errorf("%w: unsupported instruction 0xfc %d", errMalformed, sub)
	}
}

func (r *wasmReader) skipSIMDImmediates(sub uint32) {
	switch {
	case sub <= 11 || sub == 92 || sub == 93:
		r.skipMemarg()
	case sub == 12 || sub == 13:
		r.skip(16)
	case sub >= 21 && sub <= 34:
		r.byte()
	case sub >= 84 && sub <= 91:
		r.skipMemarg()
		r.byte()
	}
}

func appendSectionBytes(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = leb128.AppendU32(out, uint32(len(body)))
	return append(out, body...)
}
