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

// rpcMethods caches what invoke needs to know of a method, by receiver
// type and name: reflection's lookups cost more than the call itself in
// Wasm.
var rpcMethods sync.Map // methodKey → *rpcMethod

type methodKey struct {
	t    reflect.Type
	name string
}

// rpcMethod is a method as RPC calls it.
type rpcMethod struct {
	index  int          // in the receiver's method set; -1 if none can be called by that name
	shaped bool         // func([ctx context.Context,] [Args]) ([Result,] error)
	ctx    bool         // it takes a context first
	arg    reflect.Type // its Args, nil if none
}

// rpcMethodOf describes t's method name, cached.
func rpcMethodOf(t reflect.Type, name string) *rpcMethod {
	key := methodKey{t, name}
	if m, ok := rpcMethods.Load(key); ok {
		return m.(*rpcMethod)
	}
	m := &rpcMethod{index: -1}
	if meth, found := t.MethodByName(name); found && !notCallable[name] {
		m.index = meth.Index
		ft := meth.Type // its receiver first
		first := 1      // the index of Args
		if ft.NumIn() > 1 && ft.In(1) == contextType {
			m.ctx, first = true, 2
		}
		if ft.NumIn() == first+1 {
			m.arg = ft.In(first)
		}
		m.shaped = ft.NumIn() <= first+1 && ft.NumOut() > 0 && ft.NumOut() <= 2 && ft.Out(ft.NumOut()-1).Implements(errorType)
	}
	cached, _ := rpcMethods.LoadOrStore(key, m)
	return cached.(*rpcMethod)
}
