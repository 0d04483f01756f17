package abi

import (
	"encoding/binary"
	"errors"
)

// A field list is how heads (method, URL, status and headers) cross the ABI:
//
//	u32 count, then count times: u32 name_len, name, u32 value_len, value
//
// All integers are little-endian. Names may repeat (one entry per header
// value). Pseudo-fields such as ":method" come before ordinary headers.

// ErrMalformedFields reports a field list that does not follow the encoding.
var ErrMalformedFields = errors.New("malformed field list")

// FieldsBuilder appends an encoded field list to a byte slice.
type FieldsBuilder struct {
	buf   []byte
	count uint32
}

// NewFieldsBuilder starts a field list in buf (which is reset).
func NewFieldsBuilder(buf []byte) *FieldsBuilder {
	return &FieldsBuilder{buf: append(buf[:0], 0, 0, 0, 0)}
}

// Reset starts a new field list reusing the builder's buffer.
func (b *FieldsBuilder) Reset() {
	b.buf = append(b.buf[:0], 0, 0, 0, 0)
	b.count = 0
}

// Add appends one name/value pair.
func (b *FieldsBuilder) Add(name, value string) {
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(name)))
	b.buf = append(b.buf, name...)
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(value)))
	b.buf = append(b.buf, value...)
	b.count++
}

// Bytes returns the encoded list. It stays valid until the next Add or Reset.
func (b *FieldsBuilder) Bytes() []byte {
	binary.LittleEndian.PutUint32(b.buf[:4], b.count)
	return b.buf
}

// RangeFields calls fn for each pair of an encoded field list, in order. The
// names and values alias b, which may be a string or a byte slice. It stops
// early and returns nil if fn returns false.
func RangeFields[T ~string | ~[]byte](b T, fn func(name, value T) bool) error {
	n, ok := u32At(b, 0)
	if !ok {
		return ErrMalformedFields
	}
	off := 4
	for i := uint32(0); i < n; i++ {
		name, next, ok := fieldAt(b, off)
		if !ok {
			return ErrMalformedFields
		}
		value, next, ok := fieldAt(b, next)
		if !ok {
			return ErrMalformedFields
		}
		off = next
		if !fn(name, value) {
			return nil
		}
	}
	if off != len(b) {
		return ErrMalformedFields
	}
	return nil
}

func u32At[T ~string | ~[]byte](b T, off int) (uint32, bool) {
	if off < 0 || len(b)-off < 4 {
		return 0, false
	}
	return uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24, true
}

// fieldAt reads the length-prefixed field at off and returns it and the
// offset after it.
func fieldAt[T ~string | ~[]byte](b T, off int) (T, int, bool) {
	n, ok := u32At(b, off)
	if !ok || uint64(n) > uint64(len(b)-off-4) {
		return b[:0], 0, false
	}
	start := off + 4
	return b[start : start+int(n)], start + int(n), true
}
