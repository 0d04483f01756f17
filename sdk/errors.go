package sdk

import (
	"errors"
	"slices"
	"strings"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Error is a failed host call: the operation, its abi.Status and the host's
// message. Match it with the sentinels below: errors.Is(err, ErrTooLarge).
type Error = wharf.Error

// Errors of host calls, matched with errors.Is. Each stands for one kind of
// failure, whatever call failed; the error's text keeps the host's message.
// An SDK error's message says "wharf: " once, in front, or not at all when
// it is inside words that say what failed ("read /x: no such file or
// directory", an *fs.PathError; "call Get: …").
var (
	// ErrInvalidArgument: an argument the host (or the SDK) refuses: an
	// empty command, an unknown option, a malformed id or key.
	ErrInvalidArgument = wharf.ErrInvalid
	// ErrNotFound: a named thing does not exist (an RPC method, a file).
	ErrNotFound = wharf.ErrNotFound
	// ErrTooLarge: a size or count limit was exceeded (a value, a head,
	// open handles, pending fetches).
	ErrTooLarge = wharf.ErrTooLarge
	// ErrTimeout: a deadline passed, or the event the call acted for has
	// ended.
	ErrTimeout = wharf.ErrTimeout
	// ErrClosed: the other end is gone (a client that left, a closed
	// stream).
	ErrClosed = wharf.ErrClosed
	// ErrAborted: the stream was aborted by its writer.
	ErrAborted = wharf.ErrAborted
	// ErrBusy: already in use (a body taken twice, a container or a
	// background process of that id already running).
	ErrBusy = wharf.ErrBusy
	// ErrPortRefused: nothing listens on the container port.
	ErrPortRefused = wharf.ErrRefused
)

// Within is err to be put after words of your own that say what failed:
// its message without the "wharf: " an SDK error begins with, so that the
// whole does not say it in the middle ("starting the process: background
// process \"dev\" is already running"). It matches all err matches
// (errors.Is, errors.As); Within(nil) is nil.
//
//	http.Error(w, "starting the process: "+sdk.Within(err).Error(), http.StatusConflict)
//	return fmt.Errorf("loading %s: %w", key, sdk.Within(err))
func Within(err error) error { return wharf.Within(err) }

// ErrEventOver is the error of a storage, alarm or container call made
// while none of its object's events runs: from a goroutine an event
// started, after that event ended. It matches ErrTimeout. Hand the work to
// a later event instead (a channel it reads, an alarm).
var ErrEventOver error = eventOver{}

// eventOver is ErrEventOver's type: its own words, matching ErrTimeout.
type eventOver struct{}

func (eventOver) Error() string {
	return "wharf: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads)"
}

func (eventOver) Is(target error) bool { return target == ErrTimeout }

// ErrWouldBlock is returned by TryRead and TryWrite when the stream is not
// ready; Select on the stream to wait for it.
var ErrWouldBlock = errors.New("wharf: operation would block")

// wouldBlock maps the host's AGAIN to ErrWouldBlock.
func wouldBlock(err error) error {
	if errors.Is(err, abi.StatusAgain) {
		return ErrWouldBlock
	}
	return err
}

// travelling are the SDK's errors that keep their identity across an
// object call: an error a method returns matches, at the caller of
// Stub.Call, each of them it matched in the method. Each crosses as its
// name, a code of the answer's abi.CallError.
var travelling = []struct {
	code string
	err  error
}{
	{"ErrInvalidArgument", ErrInvalidArgument},
	{"ErrNotFound", ErrNotFound},
	{"ErrTooLarge", ErrTooLarge},
	{"ErrTimeout", ErrTimeout},
	{"ErrClosed", ErrClosed},
	{"ErrAborted", ErrAborted},
	{"ErrBusy", ErrBusy},
	{"ErrPortRefused", ErrPortRefused},
	{"ErrEventOver", ErrEventOver},
	{"ErrWouldBlock", ErrWouldBlock},
	{"ErrNotRunning", ErrNotRunning},
	{"ErrSignalRange", ErrSignalRange},
	{"ErrExecFailed", ErrExecFailed},
	{"ErrEvicted", ErrEvicted},
	{"ErrOutputAfterRead", ErrOutputAfterRead},
}

// errorCodes are the codes of the travelling errors err matches.
func errorCodes(err error) []string {
	var codes []string
	for _, t := range travelling {
		if errors.Is(err, t.err) {
			codes = append(codes, t.code)
		}
	}
	return codes
}

// travelled are the travelling errors of codes; a code it does not know
// (a newer SDK's) is left out.
func travelled(codes []string) []error {
	var errs []error
	for _, t := range travelling {
		if slices.Contains(codes, t.code) {
			errs = append(errs, t.err)
		}
	}
	return errs
}

// callReturnError answers call with the error err of its method, status
// st: its message, and the codes of the travelling errors it matches.
func callReturnError(ev wharf.Event, call uint32, st abi.Status, err error) {
	if codes := errorCodes(err); codes != nil {
		ev.CallReturnError(call, st, abi.CallError{Message: err.Error(), Codes: codes})
		return
	}
	ev.CallReturn(call, st, []byte(err.Error()))
}

// withSentinel is host error err, matching sentinel as well, said once:
// the sentinel's words, then err's unless they already begin with them
// ("wharf: the container is not running", not that twice), with one
// "wharf: " in front.
func withSentinel(sentinel, err error) error { return &sentinelError{sentinel: sentinel, err: err} }

// sentinelError is what withSentinel returns.
type sentinelError struct{ sentinel, err error }

func (e *sentinelError) Error() string {
	words := wharf.Within(e.sentinel).Error()
	msg := wharf.Within(e.err).Error()
	if msg == words || strings.HasPrefix(msg, words+": ") {
		return wharf.Prefix + msg
	}
	return wharf.Prefix + words + ": " + msg
}

func (e *sentinelError) Unwrap() []error { return []error{e.sentinel, e.err} }
