package abi

import "fmt"

// CallError is an object's answer to a call that failed, besides its
// status: its message, and codes naming the kinds of failure it is, for
// the caller to tell apart what one status cannot (the Go SDK sends the
// names of the sentinel errors the error matches, such as ErrNotRunning).
// It crosses as a field list: FieldMessage if the message is not empty,
// then one FieldCode per code. The object gives it to call_return (with
// CallReturnRecord in the status); the host keeps the message for
// last_error and hands the codes, without reading them, to the caller in
// call_result's buffer (a CallError without message).
type CallError struct {
	Message string
	Codes   []string
}

// Limits of a CallError's codes: at most MaxCallErrorCodes, each 1 to
// MaxCallErrorCodeLen ASCII letters, digits, '_', '.' or '-' (so that a
// code crosses any channel as it is, an HTTP header between hosts
// included).
const (
	MaxCallErrorCodes   = 16
	MaxCallErrorCodeLen = 64
)

// Encode appends the error as a field list to buf[:0].
func (e CallError) Encode(buf []byte) []byte {
	b := NewFieldsBuilder(buf)
	addSet(b, FieldMessage, e.Message)
	addAll(b, FieldCode, e.Codes)
	return b.Bytes()
}

// DecodeCallError reads a CallError. A field of another name is skipped,
// so that a newer host or guest may add some; a code outside the limits
// is an error.
func DecodeCallError(raw []byte) (CallError, error) {
	var e CallError
	var bad error
	err := RangeFields(raw, func(n, v []byte) bool {
		switch string(n) {
		case FieldMessage:
			e.Message = string(v)
		case FieldCode:
			switch {
			case len(e.Codes) == MaxCallErrorCodes:
				bad = fmt.Errorf("more than %d error codes", MaxCallErrorCodes)
			case !validCode(v):
				bad = fmt.Errorf("error code %q is not 1 to %d ASCII letters, digits, '_', '.' or '-'", v, MaxCallErrorCodeLen)
			default:
				e.Codes = append(e.Codes, string(v))
			}
		}
		return bad == nil
	})
	if err != nil {
		return CallError{}, err
	}
	if bad != nil {
		return CallError{}, bad
	}
	return e, nil
}

// validCode reports whether code is within the limits of a CallError's
// codes.
func validCode(code []byte) bool {
	if len(code) == 0 || len(code) > MaxCallErrorCodeLen {
		return false
	}
	for _, c := range code {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}
