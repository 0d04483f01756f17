package plugins

import (
	"context"
	"encoding/binary"
	"io"
	"time"
)

// Guest I/O. A long-running guest waits on host resources through WASI file
// descriptors: the host serves fd_read, fd_write, fd_close, fd_fdstat_get,
// fd_fdstat_set_flags and poll_oneoff itself, for both engines, so Go's
// netpoller parks a goroutine on EAGAIN and the instance blocks in
// poll_oneoff only when nothing is runnable.

// Errno is a WASI preview 1 error number.
type Errno uint16

// The WASI errors guest descriptors use.
const (
	ErrnoSuccess Errno = 0
	ErrnoAgain   Errno = 6
	ErrnoBadf    Errno = 8
	ErrnoFault   Errno = 21
	ErrnoInval   Errno = 28
	ErrnoNotsup  Errno = 58
)

// Descriptors are the host resources an instance sees as file descriptors
// numbered from 3 (a plugin has no preopened directories). Every descriptor
// is non-blocking: Read returns ErrnoAgain when nothing is there yet and 0
// bytes at the end. Methods are called from the instance's own goroutine,
// one at a time.
type Descriptors interface {
	Read(fd uint32, p []byte) (int, Errno)
	Write(fd uint32, p []byte) (int, Errno)
	Close(fd uint32) Errno
	// Open reports whether fd is one of these descriptors.
	Open(fd uint32) bool
	// Ready reports, level-triggered, whether a read (or write) of fd would
	// not return ErrnoAgain; a closed descriptor is ready (its call fails).
	Ready(fd uint32, write bool) bool
	// Wait blocks until a descriptor may have become ready, timeout passes
	// (negative: no limit) or ctx ends.
	Wait(ctx context.Context, timeout time.Duration)
}

// noDescriptors serves an instance without any: poll_oneoff only sleeps.
type noDescriptors struct{}

func (noDescriptors) Read(uint32, []byte) (int, Errno)  { return 0, ErrnoBadf }
func (noDescriptors) Write(uint32, []byte) (int, Errno) { return 0, ErrnoBadf }
func (noDescriptors) Close(uint32) Errno                { return ErrnoBadf }
func (noDescriptors) Open(uint32) bool                  { return false }
func (noDescriptors) Ready(uint32, bool) bool           { return true }
func (noDescriptors) Wait(ctx context.Context, timeout time.Duration) {
	WaitFor(ctx, nil, timeout)
}

// WaitFor is a Descriptors.Wait over a wake-up channel: it blocks until
// wake delivers (a nil wake never does), timeout passes (negative: no
// limit) or ctx ends.
func WaitFor(ctx context.Context, wake <-chan struct{}, timeout time.Duration) {
	var expired <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-wake:
	case <-expired:
	case <-ctx.Done():
	}
}

func descriptorsOr(d Descriptors) Descriptors {
	if d == nil {
		return noDescriptors{}
	}
	return d
}

// guestIO is what the WASI functions below need from an instance.
type guestIO interface {
	Caller
	descriptors() Descriptors
	output(fd uint32) io.Writer
	// monotonicZero is when the guest's monotonic clock (WASI's, as the
	// engine provides it) read zero.
	monotonicZero() time.Time
}

// WASI layout constants (wasi_snapshot_preview1).
const (
	fdStdin, fdStdout, fdStderr = 0, 1, 2

	filetypeCharacterDevice = 2
	filetypeSocketStream    = 6
	fdflagNonblock          = 1 << 2

	subscriptionSize = 48
	eventSize        = 32
	eventClock       = 0
	eventFdRead      = 1
	eventFdWrite     = 2
	subclockAbstime  = 1
	clockRealtime    = 0
	clockMonotonic   = 1

	// maxSubscriptions bounds one poll_oneoff: Go's wasip1 netpoller asks
	// for at most 65,535 descriptors and a clock.
	maxSubscriptions = 1 << 17
)

// wasiFuncs are the WASI functions the host serves itself, with
// pollOneoff; the rest of WASI comes from the engine.
var wasiFuncs = []HostFunc{
	{Name: "fd_read", Params: []ValueType{I32, I32, I32, I32}, Results: []ValueType{I32}, Fn: wasiFdRead},
	{Name: "fd_write", Params: []ValueType{I32, I32, I32, I32}, Results: []ValueType{I32}, Fn: wasiFdWrite},
	{Name: "fd_close", Params: []ValueType{I32}, Results: []ValueType{I32}, Fn: wasiFdClose},
	{Name: "fd_fdstat_get", Params: []ValueType{I32, I32}, Results: []ValueType{I32}, Fn: wasiFdstatGet},
	{Name: "fd_fdstat_set_flags", Params: []ValueType{I32, I32}, Results: []ValueType{I32}, Fn: wasiFdstatSetFlags},
}

// pollOneoff is WASI's poll_oneoff as a host function that blocks until
// it is done (the wasmtime engine suspends the guest instead: startPoll).
var pollOneoff = HostFunc{Name: "poll_oneoff", Params: []ValueType{I32, I32, I32, I32}, Results: []ValueType{I32}, Fn: wasiPollOneoff}

// iovecs calls fn with each buffer of a WASI iovec array until fn stops
// taking whole buffers; it returns the total fn reported.
func iovecs(mem Memory, iovs, n uint32, fn func([]byte) (int, Errno)) (uint32, Errno) {
	var total uint32
	for i := range n {
		ptr, ok1 := mem.ReadUint32(iovs + 8*i)
		size, ok2 := mem.ReadUint32(iovs + 8*i + 4)
		b, ok3 := mem.Read(ptr, size)
		if !ok1 || !ok2 || !ok3 {
			return total, ErrnoFault
		}
		if size == 0 {
			continue
		}
		got, errno := fn(b)
		if errno != ErrnoSuccess {
			if total > 0 {
				break // report what was done; the next call sees the error
			}
			return total, errno
		}
		total += uint32(got)
		if got < len(b) {
			break
		}
	}
	return total, ErrnoSuccess
}

func finish(mem Memory, out, total uint32, errno Errno, s []uint64) {
	if errno == ErrnoSuccess && !mem.WriteUint32(out, total) {
		errno = ErrnoFault
	}
	s[0] = uint64(errno)
}

func wasiFdRead(_ context.Context, c Caller, s []uint64) {
	g := c.(guestIO)
	fd := uint32(s[0])
	if fd <= fdStderr {
		finish(g.Memory(), uint32(s[3]), 0, ErrnoSuccess, s) // stdin is empty
		return
	}
	total, errno := iovecs(g.Memory(), uint32(s[1]), uint32(s[2]), func(b []byte) (int, Errno) {
		return g.descriptors().Read(fd, b)
	})
	finish(g.Memory(), uint32(s[3]), total, errno, s)
}

func wasiFdWrite(_ context.Context, c Caller, s []uint64) {
	g := c.(guestIO)
	fd := uint32(s[0])
	write := func(b []byte) (int, Errno) { return g.descriptors().Write(fd, b) }
	switch fd {
	case fdStdin:
		s[0] = uint64(ErrnoBadf)
		return
	case fdStdout, fdStderr:
		w := g.output(fd)
		write = func(b []byte) (int, Errno) {
			if w != nil {
				w.Write(b)
			}
			return len(b), ErrnoSuccess
		}
	}
	total, errno := iovecs(g.Memory(), uint32(s[1]), uint32(s[2]), write)
	finish(g.Memory(), uint32(s[3]), total, errno, s)
}

func wasiFdClose(_ context.Context, c Caller, s []uint64) {
	fd := uint32(s[0])
	if fd <= fdStderr {
		s[0] = uint64(ErrnoSuccess)
		return
	}
	s[0] = uint64(c.(guestIO).descriptors().Close(fd))
}

func wasiFdstatGet(_ context.Context, c Caller, s []uint64) {
	g := c.(guestIO)
	fd, out := uint32(s[0]), uint32(s[1])
	var stat [24]byte
	switch {
	case fd <= fdStderr:
		stat[0] = filetypeCharacterDevice
	case g.descriptors().Open(fd):
		stat[0] = filetypeSocketStream
		binary.LittleEndian.PutUint16(stat[2:], fdflagNonblock)
	default:
		s[0] = uint64(ErrnoBadf)
		return
	}
	binary.LittleEndian.PutUint64(stat[8:], ^uint64(0)) // every right
	binary.LittleEndian.PutUint64(stat[16:], ^uint64(0))
	if !g.Memory().Write(out, stat[:]) {
		s[0] = uint64(ErrnoFault)
		return
	}
	s[0] = uint64(ErrnoSuccess)
}

// wasiFdstatSetFlags accepts what the descriptors already are.
func wasiFdstatSetFlags(_ context.Context, c Caller, s []uint64) {
	fd := uint32(s[0])
	if fd > fdStderr && !c.(guestIO).descriptors().Open(fd) {
		s[0] = uint64(ErrnoBadf)
		return
	}
	s[0] = uint64(ErrnoSuccess)
}

// subscription is one decoded poll_oneoff subscription.
type subscription struct {
	userdata uint64
	kind     byte
	fd       uint32
	deadline time.Time // clock subscriptions
}

// wasiPollOneoff waits until a subscribed descriptor is ready or a clock
// passes. Readiness is level-triggered; the instance blocks here, using no
// CPU, when every goroutine of the guest waits.
func wasiPollOneoff(ctx context.Context, c Caller, s []uint64) {
	g := c.(guestIO)
	p, errno := startPoll(g, s)
	for errno == ErrnoSuccess {
		var timeout time.Duration
		if errno, timeout = p.check(ctx, g); timeout == 0 {
			break
		}
		g.descriptors().Wait(ctx, timeout)
	}
	s[0] = uint64(errno)
}

// poll is one poll_oneoff call: its decoded subscriptions and where its
// events go.
type poll struct {
	subs      []subscription
	out, nOut uint32
}

// startPoll decodes poll_oneoff(in, out, n, n_out); an errno other than
// ErrnoSuccess ends the call at once.
func startPoll(g guestIO, s []uint64) (*poll, Errno) {
	mem := g.Memory()
	in, out, n, nOut := uint32(s[0]), uint32(s[1]), uint32(s[2]), uint32(s[3])
	if n == 0 || n > maxSubscriptions { // n*subscriptionSize must not wrap
		return nil, ErrnoInval
	}
	raw, ok := mem.Read(in, n*subscriptionSize)
	if !ok {
		return nil, ErrnoFault
	}
	if _, ok := mem.Read(out, n*eventSize); !ok {
		return nil, ErrnoFault
	}
	now := time.Now()
	p := &poll{subs: make([]subscription, n), out: out, nOut: nOut}
	for i := range p.subs {
		b := raw[i*subscriptionSize:]
		sub := subscription{userdata: binary.LittleEndian.Uint64(b), kind: b[8]}
		switch sub.kind {
		case eventClock:
			timeout := time.Duration(min(binary.LittleEndian.Uint64(b[24:]), 1<<62))
			if binary.LittleEndian.Uint16(b[40:])&subclockAbstime == 0 {
				sub.deadline = now.Add(timeout)
				break
			}
			switch binary.LittleEndian.Uint32(b[16:]) {
			case clockRealtime:
				sub.deadline = time.Unix(0, int64(timeout))
			case clockMonotonic:
				sub.deadline = g.monotonicZero().Add(timeout)
			} // CPU-time clocks: due at once (the zero deadline)
		case eventFdRead, eventFdWrite:
			sub.fd = binary.LittleEndian.Uint32(b[16:])
		default:
			return nil, ErrnoInval
		}
		p.subs[i] = sub
	}
	return p, ErrnoSuccess
}

// check writes the events of the subscriptions that are ready. With none
// ready and ctx not ended, it returns how long to wait before checking
// again (negative: until woken); a zero wait means the call is over, with
// errno its result.
func (p *poll) check(ctx context.Context, g guestIO) (errno Errno, wait time.Duration) {
	mem, d := g.Memory(), g.descriptors()
	var ev [eventSize]byte
	events := uint32(0)
	var next time.Time
	now := time.Now()
	for _, sub := range p.subs {
		ready := false
		switch sub.kind {
		case eventClock:
			ready = !now.Before(sub.deadline)
			if !ready && (next.IsZero() || sub.deadline.Before(next)) {
				next = sub.deadline
			}
		case eventFdRead:
			ready = sub.fd <= fdStderr || d.Ready(sub.fd, false)
		case eventFdWrite:
			ready = sub.fd <= fdStderr || d.Ready(sub.fd, true)
		}
		if !ready {
			continue
		}
		clear(ev[:])
		binary.LittleEndian.PutUint64(ev[0:], sub.userdata)
		ev[10] = sub.kind
		if sub.kind != eventClock && sub.fd > fdStderr && !d.Open(sub.fd) {
			binary.LittleEndian.PutUint16(ev[8:], uint16(ErrnoBadf))
		}
		mem.Write(p.out+events*eventSize, ev[:])
		events++
	}
	if events > 0 || ctx.Err() != nil {
		if !mem.WriteUint32(p.nOut, events) {
			return ErrnoFault, 0
		}
		return ErrnoSuccess, 0
	}
	if next.IsZero() {
		return ErrnoSuccess, -1
	}
	return ErrnoSuccess, max(time.Until(next), time.Nanosecond)
}
