package wharf

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
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

// Prefix begins the message of every error of the SDK, once: an error put
// inside another message loses it there (Within).
const Prefix = "wharf: "

// Within is err to be put inside another message, after words that say
// what failed ("read /x: ", an *fs.PathError's Err; "call M: " before
// fmt.Errorf's %w): its message without Prefix, so that the whole says
// "wharf: " at most once, in front. It matches all err matches (errors.Is,
// errors.As); Within(nil) is nil.
func Within(err error) error {
	if err == nil {
		return nil
	}
	return within{err}
}

// within is what Within returns.
type within struct{ err error }

func (e within) Error() string { return strings.TrimPrefix(e.err.Error(), Prefix) }
func (e within) Unwrap() error { return e.err }

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

// AnswerStatus is the status an object answers a call with that failed
// with err: the status of the host error err wraps, else that of the first
// sentinel (by status) it matches, as ErrNotFound's NOTFOUND, else IO.
func AnswerStatus(err error) abi.Status {
	var s abi.Status
	if errors.As(err, &s) {
		return s
	}
	for _, s := range slices.Sorted(maps.Keys(sentinels)) {
		if errors.Is(err, sentinels[s]) {
			return s
		}
	}
	return abi.StatusIO
}

// describe says what status s means: its sentinel's words, else its name.
func describe(s abi.Status) string {
	if e, ok := sentinels[s]; ok {
		return Within(e).Error()
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
