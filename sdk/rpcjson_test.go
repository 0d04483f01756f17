package sdk

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The direct paths write and accept exactly what encoding/json does.
func TestRPCJSONMatchesEncodingJSON(t *testing.T) {
	for _, v := range []any{nil, 0, -7, 1 << 40, int64(-1 << 62), int32(5), uint64(1 << 63), uint32(9), true, false,
		"", "plain text 123", "quote\"d", "back\\slash", "<tag>", "a&b", "tab\t", "é", "\u2028", "\x7f",
		map[string]string{"key": "k"}, []int{1, 2}, 1.5, Signal(15)} {
		want, err := json.Marshal(v)
		require.NoError(t, err)
		got, err := marshalJSON(v)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "%#v", v)
	}
	for _, data := range []string{"0", "-0", "12", "-12", "9223372036854775807", "9223372036854775808", "01", "+1", "1.0", "1e3",
		" 1", "null", `"x"`, "", "-"} {
		var want, got int64
		wantErr := json.Unmarshal([]byte(data), &want)
		gotErr := unmarshalJSON([]byte(data), &got)
		assert.Equal(t, wantErr == nil, gotErr == nil, "int64 %q: %v / %v", data, wantErr, gotErr)
		assert.Equal(t, want, got, "int64 %q", data)
		var wantInt, gotInt int
		assert.Equal(t, json.Unmarshal([]byte(data), &wantInt) == nil, unmarshalJSON([]byte(data), &gotInt) == nil, "int %q", data)
		assert.Equal(t, wantInt, gotInt, "int %q", data)
	}
	for _, data := range []string{`""`, `"plain"`, `"esc\"aped"`, `"\u00e9"`, `"é"`, `"a\\b"`, `"unterminated`, `12`, `null`} {
		var want, got string
		wantErr := json.Unmarshal([]byte(data), &want)
		gotErr := unmarshalJSON([]byte(data), &got)
		assert.Equal(t, wantErr == nil, gotErr == nil, "string %q", data)
		assert.Equal(t, want, got, "string %q", data)
	}
	for _, data := range []string{"0", "-0", "12", "-12", "9007199254740993", "-9223372036854775808", "9223372036854775807",
		"9223372036854775808", "01", "1.5", "1e3", "null", "true", "false", "nil", `""`, `"plain"`, `"esc\"aped"`, `"é"`,
		`[1]`, `{"a":1}`, " 1", ""} {
		var want, got any
		wantErr := json.Unmarshal([]byte(data), &want)
		gotErr := unmarshalJSON([]byte(data), &got)
		assert.Equal(t, wantErr == nil, gotErr == nil, "any %q: %v / %v", data, wantErr, gotErr)
		assert.Equal(t, want, got, "any %q", data)
		if f, ok := want.(float64); ok {
			assert.Equal(t, math.Signbit(f), math.Signbit(got.(float64)), "any %q: the sign of zero", data)
		}
	}
	var target int
	held, wantHeld := any(&target), any(&target) // a pointer held: decoded into
	require.NoError(t, unmarshalJSON([]byte("5"), &held))
	require.NoError(t, json.Unmarshal([]byte("5"), &wantHeld))
	assert.Equal(t, wantHeld, held)
	assert.Equal(t, 5, target)
}

func TestRPCMethodIsCached(t *testing.T) {
	typ := reflect.TypeOf(rpcTarget{})
	for range 2 {
		m := rpcMethodOf(typ, "Add")
		require.GreaterOrEqual(t, m.index, 0)
		assert.True(t, m.shaped)
		assert.True(t, m.ctx)
		assert.Equal(t, reflect.TypeFor[[]int](), m.arg)
		assert.Same(t, m, rpcMethodOf(typ, "Add"))
		assert.Equal(t, -1, rpcMethodOf(typ, "Nope").index)
		assert.False(t, rpcMethodOf(typ, "TooMany").shaped)
		fail := rpcMethodOf(typ, "Fail")
		assert.True(t, fail.shaped)
		assert.False(t, fail.ctx)
		assert.Nil(t, fail.arg)
	}
}
