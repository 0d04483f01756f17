package wharf

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/wharfhq/wharf/abi"
)

// Sentinel errors, exported by package sdk: a failed import matches the one
// of its status with errors.Is (as well as the abi.Status itself).
var (
	ErrInvalid  = errors.New("wharf: invalid argument")
	ErrNotFound = errors.New("wharf: not found")
	ErrTooLarge = errors.New("wharf: too large")
	ErrTimeout  = errors.New("wharf: deadline exceeded")
	ErrClosed   = errors.New("wharf: the other end is closed")
	ErrAborted  = errors.New("wharf: the stream was aborted")
	ErrBusy     = errors.New("wharf: already in use")
	ErrRefused  = errors.New("wharf: nothing listens on the container port")
)

// sentinels maps statuses to their sentinel errors.
var sentinels = map[abi.Status]error{
	abi.StatusInvalid:     ErrInvalid,
	abi.StatusNotFound:    ErrNotFound,
	abi.StatusTooLarge:    ErrTooLarge,
	abi.StatusTimeout:     ErrTimeout,
	abi.StatusClosed:      ErrClosed,
	abi.StatusAborted:     ErrAborted,
	abi.StatusBusy:        ErrBusy,
	abi.StatusRefused:     ErrRefused,
	abi.StatusDenied:      fs.ErrPermission,
	abi.StatusUnsupported: errors.ErrUnsupported,
}

// describe says what status s means: its sentinel's words, else its name.
func describe(s abi.Status) string {
	if e, ok := sentinels[s]; ok {
		return strings.TrimPrefix(e.Error(), "wharf: ")
	}
	return s.String()
}

// Causes returns what an error with status s matches: s and its sentinel.
func Causes(s abi.Status) []error {
	if e, ok := sentinels[s]; ok {
		return []error{s, e}
	}
	return []error{s}
}
