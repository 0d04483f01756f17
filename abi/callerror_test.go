package abi

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCallErrorRoundTrip(t *testing.T) {
	for _, e := range []CallError{
		{},
		{Message: "loading config: wharf: the container is not running"},
		{Codes: []string{"ErrNotRunning"}},
		{Message: "a\x00b: ", Codes: []string{"ErrNotFound", "ErrNotRunning", "x.y-z_1", strings.Repeat("c", MaxCallErrorCodeLen)}},
		{Message: "many", Codes: strings.Split(strings.Repeat("c,", MaxCallErrorCodes-1)+"c", ",")},
	} {
		roundTrip(t, e, DecodeCallError)
	}
}

// TestCallErrorSkipsFieldsItDoesNotKnow: a record of a newer host or guest
// may carry fields of other names; their codes and message are still read.
func TestCallErrorSkipsFieldsItDoesNotKnow(t *testing.T) {
	b := NewFieldsBuilder(nil)
	b.Add(":detail", "something newer")
	b.Add(FieldCode, "ErrSomethingNewer")
	b.Add(FieldMessage, "m")
	e, err := DecodeCallError(b.Bytes())
	require.NoError(t, err)
	assert.Equal(t, CallError{Message: "m", Codes: []string{"ErrSomethingNewer"}}, e)
}

func TestCallErrorRefusesBadCodes(t *testing.T) {
	for code, want := range map[string]string{
		"":            `error code "" is not 1 to 64 ASCII letters, digits, '_', '.' or '-'`,
		"two words":   `error code "two words" is not 1 to 64 ASCII letters, digits, '_', '.' or '-'`,
		"line\nbreak": `error code "line\nbreak" is not 1 to 64 ASCII letters, digits, '_', '.' or '-'`,
		strings.Repeat("c", MaxCallErrorCodeLen+1): `error code "` + strings.Repeat("c", MaxCallErrorCodeLen+1) + `" is not 1 to 64 ASCII letters, digits, '_', '.' or '-'`,
	} {
		_, err := DecodeCallError(CallError{Codes: []string{code}}.Encode(nil))
		assert.EqualError(t, err, want, "%q", code)
	}
	_, err := DecodeCallError(CallError{Codes: strings.Split(strings.Repeat("c,", MaxCallErrorCodes)+"c", ",")}.Encode(nil))
	assert.EqualError(t, err, "more than 16 error codes")
	_, err = DecodeCallError([]byte("plain message"))
	assert.ErrorIs(t, err, ErrMalformedFields)
}

func FuzzDecodeCallError(f *testing.F) {
	fuzzDecode(f, DecodeCallError, CallError{Message: "m", Codes: []string{"ErrNotFound", "ErrBusy"}})
}
