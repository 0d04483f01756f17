package abi

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFieldsRoundTrip(t *testing.T) {
	b := NewFieldsBuilder(nil)
	b.Add(FieldMethod, "POST")
	b.Add("X-A", "1")
	b.Add("X-A", "")
	var got [][2]string
	require.NoError(t, RangeFields(b.Bytes(), func(n, v []byte) bool {
		got = append(got, [2]string{string(n), string(v)})
		return true
	}))
	require.Equal(t, [][2]string{{":method", "POST"}, {"X-A", "1"}, {"X-A", ""}}, got)
}

func TestFieldsMalformed(t *testing.T) {
	b := NewFieldsBuilder(nil)
	b.Add("name", "value")
	enc := b.Bytes()
	for _, bad := range [][]byte{nil, {1}, enc[:len(enc)-1], append(append([]byte{}, enc...), 0)} {
		err := RangeFields(bad, func(_, _ []byte) bool { return true })
		require.ErrorIs(t, err, ErrMalformedFields, "input %v", bad)
	}
}

func TestHandleGeneration(t *testing.T) {
	h := MakeHandle(5, 3)
	require.Equal(t, uint32(5), h.Index())
	require.Equal(t, uint32(3), h.Generation())
	require.Equal(t, "BADF", StatusBadHandle.String())
	require.Equal(t, "STATUS(99)", Status(99).String())
}
