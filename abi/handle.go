package abi

// Handle is a u32 naming a host-owned object in one guest instance. Zero is
// never a valid handle. The low IndexBits bits index the instance's handle
// table and the rest is a generation that changes each time a slot is reused,
// so a stale handle yields StatusBadHandle rather than another object.
type Handle uint32

// IndexBits is the number of low bits of a Handle that index the table.
const IndexBits = 20

// IndexMask extracts the table index of a Handle.
const IndexMask = 1<<IndexBits - 1

// MakeHandle builds a handle from a table index and a generation.
func MakeHandle(index uint32, generation uint32) Handle {
	return Handle(generation<<IndexBits | index&IndexMask)
}

// Index returns the table index of h.
func (h Handle) Index() uint32 { return uint32(h) & IndexMask }

// Generation returns the generation part of h.
func (h Handle) Generation() uint32 { return uint32(h) >> IndexBits }

// Kind says what a handle refers to.
type Kind uint8

// Handle kinds.
const (
	KindRequest     Kind = 1  // an incoming HTTP request
	KindResponse    Kind = 2  // a response received from fetch
	KindReadStream  Kind = 3  // a readable byte stream
	KindWriteStream Kind = 4  // a writable byte stream
	KindPending     Kind = 5  // a result that is not ready yet (fetch, forward)
	KindTimer       Kind = 6  // a timer that becomes ready when it fires
	KindCall        Kind = 7  // an RPC call being served by an object
	KindCursor      Kind = 8  // the result of a SQL statement
	KindProcess     Kind = 9  // a process started in a container
	KindEvent       Kind = 10 // an event being served (see EventKind)
	KindObject      Kind = 11 // a live Durable Object hosted by the instance
)

// String names the kind for error messages.
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	case KindReadStream:
		return "readable stream"
	case KindWriteStream:
		return "writable stream"
	case KindPending:
		return "pending result"
	case KindTimer:
		return "timer"
	case KindCall:
		return "call"
	case KindCursor:
		return "cursor"
	case KindProcess:
		return "process"
	case KindEvent:
		return "event"
	case KindObject:
		return "object"
	}
	return "unknown"
}
