// Package wharf wraps the raw wharf_v2 imports in Go functions that take
// slices and return errors. Every import acts for an event, so the wrappers
// are methods of Event. It is internal to the SDK; the public API is in
// package sdk.
package wharf

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// Event is the handle of the event a call acts for; the zero Event is the
// instance itself, outside any event. Handles a call creates belong to its
// event and are released by the host when the event ends (those of the zero
// Event stay until closed). The host keeps the last error per event, so
// check asks the same Event for the message.
type Event uint32

// Error is a failed import: the import's name, its status and the host's
// message without the status name the host puts in front of it.
type Error struct {
	Op      string
	Status  abi.Status
	Message string
}

// Error is the host's message, or, when it gave none, the import and what
// its status means: the ABI's names stay out of a message that has words.
func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s%s: %s", Prefix, e.Op, describe(e.Status))
	}
	return Prefix + e.Message
}

// Unwrap makes errors.Is match the status (abi.StatusTooLarge) and its
// sentinel (sdk.ErrTooLarge).
func (e *Error) Unwrap() []error { return Causes(e.Status) }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// check turns a status into an error carrying last_error's message. AGAIN and
// EOF are returned as bare statuses: they are answers, not failures.
func (ev Event) check(op string, st int32) error {
	s := abi.Status(st)
	switch s {
	case abi.StatusOK:
		return nil
	case abi.StatusAgain, abi.StatusEOF:
		return s
	}
	return NewError(op, s, ev.LastError())
}

// NewError is the error of import op that returned status s with
// last_error lastError, whose leading status name it drops.
func NewError(op string, s abi.Status, lastError string) *Error {
	if lastError == s.String() {
		lastError = ""
	}
	return &Error{Op: op, Status: s, Message: strings.TrimPrefix(lastError, s.String()+": ")}
}

// LastError returns the host's message for the last failed import.
func (ev Event) LastError() string {
	var buf [256]byte
	var n uint32
	st := lastError(uint32(ev), unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	if abi.Status(st) == abi.StatusBufferSmall {
		big := make([]byte, n)
		if lastError(uint32(ev), ptr(big), n, unsafe.Pointer(&n)) == 0 {
			return string(big[:n])
		}
	}
	if st != 0 {
		return ""
	}
	return string(buf[:n])
}

// readInto calls a (buf, cap, n_out) import, growing buf on BUFLEN.
func (ev Event) readInto(op string, buf []byte, call func(p unsafe.Pointer, cap uint32, n unsafe.Pointer) int32) ([]byte, error) {
	for {
		var n uint32
		st := call(ptr(buf[:cap(buf)]), uint32(cap(buf)), unsafe.Pointer(&n))
		if abi.Status(st) == abi.StatusBufferSmall {
			buf = make([]byte, 0, n)
			continue
		}
		if err := ev.check(op, st); err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Log sends a message at level to the host's log.
func (ev Event) Log(level int32, msg string) {
	log(uint32(ev), level, strPtr(msg), uint32(len(msg)))
}

// LogRecord logs a field list of abi.FieldMessage and then attributes.
func (ev Event) LogRecord(level int32, list []byte) {
	logRecord(uint32(ev), level, ptr(list), uint32(len(list)))
}

// RequestHead returns the encoded head of request req, using buf if it is
// big enough.
func (ev Event) RequestHead(req uint32, buf []byte) ([]byte, error) {
	return ev.readInto("request_head", buf, func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return requestHead(uint32(ev), req, p, c, n)
	})
}

// RequestBody takes the body stream of request req.
func (ev Event) RequestBody(req uint32) (uint32, error) {
	var h uint32
	return h, ev.check("request_body", requestBody(uint32(ev), req, unsafe.Pointer(&h)))
}

// ResponseSend sends the response head and first body bytes for req. With
// abi.ResponseStream in flags it returns a writable body stream.
func (ev Event) ResponseSend(req uint32, head, body []byte, flags uint32) (uint32, error) {
	var h uint32
	st := responseSend(uint32(ev), req, ptr(head), uint32(len(head)), ptr(body), uint32(len(body)), flags, unsafe.Pointer(&h))
	return h, ev.check("response_send", st)
}

// StreamRead reads into p.
func (ev Event) StreamRead(h uint32, p []byte, flags uint32) (int, error) {
	var n uint32
	st := streamRead(uint32(ev), h, ptr(p), uint32(len(p)), flags, unsafe.Pointer(&n))
	return int(n), ev.check("stream_read", st)
}

// StreamWrite writes p.
func (ev Event) StreamWrite(h uint32, p []byte, flags uint32) (int, error) {
	var n uint32
	st := streamWrite(uint32(ev), h, ptr(p), uint32(len(p)), flags, unsafe.Pointer(&n))
	return int(n), ev.check("stream_write", st)
}

// StreamAbort aborts a stream with a reason and releases its handle.
func (ev Event) StreamAbort(h uint32, reason string) error {
	return ev.check("stream_abort", streamAbort(uint32(ev), h, strPtr(reason), uint32(len(reason))))
}

// Forward splices src into dst on the host and returns a pending handle
// that is ready when the splice ends.
func (ev Event) Forward(src, dst uint32) (uint32, error) {
	var h uint32
	return h, ev.check("forward", forward(uint32(ev), src, dst, unsafe.Pointer(&h)))
}

// TimerStart returns a handle that becomes ready after ns nanoseconds.
func (ev Event) TimerStart(ns int64) (uint32, error) {
	var h uint32
	return h, ev.check("timer_start", timerStart(uint32(ev), ns, unsafe.Pointer(&h)))
}

// Close releases a handle.
func (ev Event) Close(h uint32) error { return ev.check("close", closeHandle(uint32(ev), h)) }

// Fetch starts an outbound request; with abi.FetchBodyStream it also
// returns a writable stream for the request body.
func (ev Event) Fetch(head []byte, flags uint32) (body, pending uint32, err error) {
	st := fetch(uint32(ev), ptr(head), uint32(len(head)), flags, unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, ev.check("fetch", st)
}

// FetchResult takes the response of a finished fetch.
func (ev Event) FetchResult(pending uint32) (uint32, error) {
	var h uint32
	return h, ev.check("fetch_result", fetchResult(uint32(ev), pending, unsafe.Pointer(&h)))
}

// ResponseHead returns the encoded head of a fetched response.
func (ev Event) ResponseHead(resp uint32, buf []byte) ([]byte, error) {
	return ev.readInto("response_head", buf, func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return responseHead(uint32(ev), resp, p, c, n)
	})
}

// ResponseBody takes the body stream of a fetched response.
func (ev Event) ResponseBody(resp uint32) (uint32, error) {
	var h uint32
	return h, ev.check("response_body", responseBody(uint32(ev), resp, unsafe.Pointer(&h)))
}
