// Package wharf wraps the raw wharf_v1 imports in Go functions that take
// slices and return errors. It is internal to the SDK; the public API is in
// package sdk.
package wharf

import (
	"fmt"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// Error is a failed import: its status and the host's message.
type Error struct {
	Op      string
	Status  abi.Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" || e.Message == e.Status.String() {
		return fmt.Sprintf("wharf: %s: %s", e.Op, e.Status)
	}
	return fmt.Sprintf("wharf: %s: %s", e.Op, e.Message)
}

// Unwrap makes errors.Is(err, abi.StatusBadHandle) and friends work.
func (e *Error) Unwrap() error { return e.Status }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// check turns a status into an error carrying last_error's message. AGAIN and
// EOF are returned as bare statuses: they are answers, not failures.
func check(op string, st int32) error {
	s := abi.Status(st)
	switch s {
	case abi.StatusOK:
		return nil
	case abi.StatusAgain, abi.StatusEOF:
		return s
	}
	return &Error{Op: op, Status: s, Message: LastError()}
}

// LastError returns the host's message for the last failed import.
func LastError() string {
	var buf [256]byte
	var n uint32
	st := lastError(unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	if abi.Status(st) == abi.StatusBufferSmall {
		big := make([]byte, n)
		if lastError(ptr(big), n, unsafe.Pointer(&n)) == 0 {
			return string(big[:n])
		}
	}
	if st != 0 {
		return ""
	}
	return string(buf[:n])
}

// readInto calls a (buf, cap, n_out) import, growing buf on BUFLEN.
func readInto(op string, buf []byte, call func(p unsafe.Pointer, cap uint32, n unsafe.Pointer) int32) ([]byte, error) {
	for {
		var n uint32
		st := call(ptr(buf[:cap(buf)]), uint32(cap(buf)), unsafe.Pointer(&n))
		if abi.Status(st) == abi.StatusBufferSmall {
			buf = make([]byte, 0, n)
			continue
		}
		if err := check(op, st); err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Log sends a message at level to the host's log.
func Log(level int32, msg string) {
	log(level, strPtr(msg), uint32(len(msg)))
}

// RequestHead returns the encoded head of request req, using buf if it is
// big enough.
func RequestHead(req uint32, buf []byte) ([]byte, error) {
	return readInto("request_head", buf, func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return requestHead(req, p, c, n)
	})
}

// RequestBody takes the body stream of request req.
func RequestBody(req uint32) (uint32, error) {
	var h uint32
	return h, check("request_body", requestBody(req, unsafe.Pointer(&h)))
}

// ResponseSend sends the response head and first body bytes for req. With
// abi.ResponseStream in flags it returns a writable body stream.
func ResponseSend(req uint32, head, body []byte, flags uint32) (uint32, error) {
	var h uint32
	st := responseSend(req, ptr(head), uint32(len(head)), ptr(body), uint32(len(body)), flags, unsafe.Pointer(&h))
	return h, check("response_send", st)
}

// StreamRead reads into p.
func StreamRead(h uint32, p []byte, flags uint32) (int, error) {
	var n uint32
	st := streamRead(h, ptr(p), uint32(len(p)), flags, unsafe.Pointer(&n))
	return int(n), check("stream_read", st)
}

// StreamWrite writes p.
func StreamWrite(h uint32, p []byte, flags uint32) (int, error) {
	var n uint32
	st := streamWrite(h, ptr(p), uint32(len(p)), flags, unsafe.Pointer(&n))
	return int(n), check("stream_write", st)
}

// StreamAbort aborts a stream with a reason and releases its handle.
func StreamAbort(h uint32, reason string) error {
	return check("stream_abort", streamAbort(h, strPtr(reason), uint32(len(reason))))
}

// Forward splices src into dst on the host and returns a pending handle
// that is ready when the splice ends.
func Forward(src, dst uint32) (uint32, error) {
	var h uint32
	return h, check("forward", forward(src, dst, unsafe.Pointer(&h)))
}

// Poll waits up to timeoutNS (abi.PollForever for no limit) until one of
// handles is ready and returns the ready ones in ready's backing array.
func Poll(handles []uint32, timeoutNS int64, ready []uint32) ([]uint32, error) {
	var n uint32
	var hp, rp unsafe.Pointer
	if len(handles) > 0 {
		hp, rp = unsafe.Pointer(&handles[0]), unsafe.Pointer(&ready[:len(handles)][0])
	}
	st := poll(hp, uint32(len(handles)), timeoutNS, rp, unsafe.Pointer(&n))
	if err := check("poll", st); err != nil {
		return nil, err
	}
	return ready[:n], nil
}

// TimerStart returns a handle that becomes ready after ns nanoseconds.
func TimerStart(ns int64) (uint32, error) {
	var h uint32
	return h, check("timer_start", timerStart(ns, unsafe.Pointer(&h)))
}

// Close releases a handle.
func Close(h uint32) error { return check("close", closeHandle(h)) }

// Fetch starts an outbound request; with abi.FetchBodyStream it also
// returns a writable stream for the request body.
func Fetch(head []byte, flags uint32) (body, pending uint32, err error) {
	st := fetch(ptr(head), uint32(len(head)), flags, unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, check("fetch", st)
}

// FetchResult takes the response of a finished fetch.
func FetchResult(pending uint32) (uint32, error) {
	var h uint32
	return h, check("fetch_result", fetchResult(pending, unsafe.Pointer(&h)))
}

// ResponseHead returns the encoded head of a fetched response.
func ResponseHead(resp uint32, buf []byte) ([]byte, error) {
	return readInto("response_head", buf, func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return responseHead(resp, p, c, n)
	})
}

// ResponseBody takes the body stream of a fetched response.
func ResponseBody(resp uint32) (uint32, error) {
	var h uint32
	return h, check("response_body", responseBody(resp, unsafe.Pointer(&h)))
}
