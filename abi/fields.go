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
// slices alias b. It stops early and returns nil if fn returns false.
func RangeFields(b []byte, fn func(name, value []byte) bool) error {
	if len(b) < 4 {
		return ErrMalformedFields
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	for i := uint32(0); i < n; i++ {
		name, rest, ok := cut(b)
		if !ok {
			return ErrMalformedFields
		}
		value, rest, ok := cut(rest)
		if !ok {
			return ErrMalformedFields
		}
		b = rest
		if !fn(name, value) {
			return nil
		}
	}
	if len(b) != 0 {
		return ErrMalformedFields
	}
	return nil
}

func cut(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}
