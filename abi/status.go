package abi

import "fmt"

// Status is the i32 every import returns. StatusOK is zero; every other value
// is an error whose message the guest can read with last_error.
type Status int32

// Status codes of the wharf ABI.
const (
	StatusOK          Status = 0  // success
	StatusBadHandle   Status = 1  // unknown, stale or wrong-kind handle
	StatusInvalid     Status = 2  // an argument is invalid
	StatusBufferSmall Status = 3  // buffer too small; n_out holds the size needed
	StatusAgain       Status = 4  // not ready; poll and retry
	StatusEOF         Status = 5  // readable stream ended
	StatusFault       Status = 6  // pointer or length outside guest memory
	StatusClosed      Status = 7  // the other end is gone (write after close, client left)
	StatusTimeout     Status = 8  // a deadline passed
	StatusNotFound    Status = 9  // a named thing does not exist
	StatusUnsupported Status = 10 // not available on this host
	StatusIO          Status = 11 // an I/O or network error; see last_error
	StatusTooLarge    Status = 12 // a size limit was exceeded
	StatusAborted     Status = 13 // the stream was aborted by its writer
	StatusBusy        Status = 14 // the object is already in use (e.g. body taken twice)
	StatusRefused     Status = 15 // a connection was refused: nothing listens on the port
	StatusDenied      Status = 16 // permission denied to the user the operation runs as
)

var statusNames = [...]string{
	StatusOK:          "OK",
	StatusBadHandle:   "BADF",
	StatusInvalid:     "INVAL",
	StatusBufferSmall: "BUFLEN",
	StatusAgain:       "AGAIN",
	StatusEOF:         "EOF",
	StatusFault:       "FAULT",
	StatusClosed:      "CLOSED",
	StatusTimeout:     "TIMEOUT",
	StatusNotFound:    "NOTFOUND",
	StatusUnsupported: "UNSUPPORTED",
	StatusIO:          "IO",
	StatusTooLarge:    "TOOLARGE",
	StatusAborted:     "ABORTED",
	StatusBusy:        "BUSY",
	StatusRefused:     "REFUSED",
	StatusDenied:      "DENIED",
}

// String returns the status' short name, such as "BADF".
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("STATUS(%d)", int32(s))
}

// Error makes a Status usable as a sentinel error; the text is its name.
func (s Status) Error() string { return s.String() }
