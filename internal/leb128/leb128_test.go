package leb128

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEncoding(t *testing.T) {
	assert.Equal(t, []byte{0x00}, AppendU32(nil, 0))
	assert.Equal(t, []byte{0xe5, 0x8e, 0x26}, AppendU32(nil, 624485))
	assert.Equal(t, []byte{0x7f}, AppendS32(nil, -1))
	assert.Equal(t, []byte{0xc0, 0xbb, 0x78}, AppendS32(nil, -123456))
	assert.Equal(t, []byte{0xa0, 0x8d, 0x06}, AppendS32(nil, 100000))
}
