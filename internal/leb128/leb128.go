// Package leb128 appends the variable-length integers of the WebAssembly
// binary format.
package leb128

// AppendU32 appends v as unsigned LEB128.
func AppendU32(out []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// AppendS32 appends v as signed LEB128.
func AppendS32(out []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}
