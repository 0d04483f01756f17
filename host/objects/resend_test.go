package objects

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResendableBody: each attempt reads the body from its start while
// what was read fits the limit; a reader of an earlier attempt fails; once
// more than the limit was read the body is no longer resendable.
func TestResendableBody(t *testing.T) {
	b := newResendableBody(strings.NewReader("0123456789"), 8)
	first := b.fromStart()
	buf := make([]byte, 6)
	n, err := first.Read(buf[:4])
	require.NoError(t, err)
	assert.Equal(t, "0123", string(buf[:n]))

	second := b.fromStart()
	_, err = first.Read(buf)
	assert.ErrorIs(t, err, errBodyReadAgain, "the first attempt was given up")
	n, _ = io.ReadFull(second, buf[:6])
	assert.Equal(t, "012345", string(buf[:n]), "from the start: the kept bytes, then the rest")
	assert.True(t, b.resendable())

	third := b.fromStart()
	all, err := io.ReadAll(third)
	require.NoError(t, err)
	assert.Equal(t, "0123456789", string(all), "whole, past the limit")
	assert.False(t, b.resendable(), "10 bytes read, 8 kept at most")
}
