package sdk

import (
	"encoding/json"
	"reflect"
	"strconv"
	"sync"
)

// RPC arguments and results travel as JSON. Most carry one number, one
// plain string or nothing, and encoding/json's reflection costs tens of
// microseconds per value in Wasm, so those take a direct path that writes
// and accepts exactly what encoding/json would; anything else goes
// through encoding/json.

// marshalJSON is json.Marshal.
func marshalJSON(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return []byte("null"), nil
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case int32:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(nil, x, 10), nil
	case uint32:
		return strconv.AppendUint(nil, uint64(x), 10), nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	case string:
		if plainString(x) {
			return append(append(append(make([]byte, 0, len(x)+2), '"'), x...), '"'), nil
		}
	}
	return json.Marshal(v)
}

// unmarshalJSON is json.Unmarshal.
func unmarshalJSON(data []byte, v any) error {
	switch p := v.(type) {
	case *int64:
		if n, ok := plainInt(data, 64); ok {
			*p = n
			return nil
		}
	case *int:
		if n, ok := plainInt(data, strconv.IntSize); ok {
			*p = int(n)
			return nil
		}
	case *string:
		if s, ok := plainQuoted(data); ok {
			*p = s
			return nil
		}
	case *any:
		if *p == nil { // else encoding/json may decode into what *p holds
			if x, ok := plainValue(data); ok {
				*p = x
				return nil
			}
		}
	}
	return json.Unmarshal(data, v)
}

// plainQuoted is the string data holds if it is one JSON writes as itself
// between quotes.
func plainQuoted(data []byte) (string, bool) {
	if len(data) >= 2 && data[0] == '"' && data[len(data)-1] == '"' && plainString(string(data[1:len(data)-1])) {
		return string(data[1 : len(data)-1]), true
	}
	return "", false
}

// plainValue is what encoding/json stores in an empty interface for data,
// if data is null, a boolean, an integer or a plain string.
func plainValue(data []byte) (any, bool) {
	switch string(data) {
	case "null":
		return nil, true
	case "true":
		return true, true
	case "false":
		return false, true
	}
	if n, ok := plainInt(data, 64); ok && (n != 0 || data[0] != '-') { // -0 is a float64 of its own
		return float64(n), true // rounded as encoding/json's ParseFloat rounds
	}
	if s, ok := plainQuoted(data); ok {
		return s, true
	}
	return nil, false
}

// plainString reports whether JSON writes s as itself between quotes:
// printable ASCII, without the characters encoding/json escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// plainInt parses a JSON integer (-?(0|[1-9][0-9]*)) that fits in bits.
func plainInt(data []byte, bits int) (int64, bool) {
	digits := data
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(data), 10, bits)
	return n, err == nil
}

// methods caches method lookups by receiver type and name: Type.MethodByName
// costs more than the call itself in Wasm.
var methods sync.Map // methodKey → int (the method's index, -1 if none)

type methodKey struct {
	t    reflect.Type
	name string
}

// methodByName is reflect.Value.MethodByName, cached.
func methodByName(v reflect.Value, name string) reflect.Value {
	key := methodKey{v.Type(), name}
	i, ok := methods.Load(key)
	if !ok {
		index := -1
		if m, found := v.Type().MethodByName(name); found {
			index = m.Index
		}
		i, _ = methods.LoadOrStore(key, index)
	}
	if i.(int) < 0 {
		return reflect.Value{}
	}
	return v.Method(i.(int))
}
