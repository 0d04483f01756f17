// Command testworker is a guest for the host's tests: besides well-behaved
// routes it misbehaves on purpose (traps, endless loops, bad pointers,
// stale handles, oversized headers) so tests can check the host survives.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk"
)

// Raw imports, declared here so the guest can pass arguments the SDK never
// would. The first parameter of each is the event the call acts for.
//
//go:wasmimport wharf_v2 stream_read
func rawStreamRead(ev uint32, h uint32, buf uint32, cap uint32, flags uint32, nOut uint32) int32

//go:wasmimport wharf_v2 request_body
func rawRequestBody(ev uint32, req uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 close
func rawClose(ev uint32, h uint32) int32

//go:wasmimport wharf_v2 poll
func rawPoll(ev uint32, handles unsafe.Pointer, n uint32, timeout int64, ready unsafe.Pointer, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 fetch
func rawFetch(ev uint32, head unsafe.Pointer, headLen uint32, flags uint32, bodyOut unsafe.Pointer, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 log_record
func rawLogRecord(ev uint32, level int32, list unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 last_error
func rawLastError(ev uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 register_class
func rawRegisterClass(ev uint32, name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 use_binding
func rawUseBinding(ev uint32, name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 wait_fd
func rawWaitFD(ev uint32, handles unsafe.Pointer, n uint32, fdOut unsafe.Pointer) int32

// rawWaitFDAt is wait_fd with raw addresses.
//
//go:wasmimport wharf_v2 wait_fd
func rawWaitFDAt(ev uint32, handles uint32, n uint32, fdOut uint32) int32

//go:wasmimport wharf_v2 wait_rebind
func rawWaitRebind(ev uint32, fd uint32, handles unsafe.Pointer, n uint32) int32

// rawWaitRebindAt is wait_rebind with a raw address.
//
//go:wasmimport wharf_v2 wait_rebind
func rawWaitRebindAt(ev uint32, fd uint32, handles uint32, n uint32) int32

//go:wasmimport wharf_v2 serve
func rawServe(ev uint32, fdOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 event_done
func rawEventDone(ev uint32, status uint32) int32

//go:wasmimport wharf_v2 timer_start
func rawTimerStart(ev uint32, ns int64, out unsafe.Pointer) int32

// lastError is the host's message for the last failed call of event ev.
func lastError(ev uint32) string {
	buf := make([]byte, 512)
	var n uint32
	rawLastError(ev, unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	return string(buf[:n])
}

// served counts requests per instance: it shows whether an instance was
// reused. Requests run concurrently, hence the atomic.
var served atomic.Int64

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprintf(w, "hello %s", r.URL.Query().Get("name"))
	})
	mux.HandleFunc("/served", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, served.Add(1))
	})
	mux.HandleFunc("/barrier", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if err := barrier.wait(n); err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		fmt.Fprint(w, "all ", n, " arrived")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/refuse-upload", func(w http.ResponseWriter, r *http.Request) {
		// Reads a byte of the body, then refuses the rest.
		r.Body.Read(make([]byte, 1))
		http.Error(w, "upload refused", http.StatusRequestEntityTooLarge)
	})
	mux.HandleFunc("/ignore-body", func(w http.ResponseWriter, r *http.Request) {
		// Takes the body's stream, reads none of it and answers.
		if _, err := r.Body.(interface{ Stream() (*sdk.Stream, error) }).Stream(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		io.WriteString(w, "ignored")
	})
	mux.HandleFunc("/close-body-then-stream", func(w http.ResponseWriter, r *http.Request) {
		// Reads a byte of the body, closes it, then streams n lines
		// sleeping d between them.
		r.Body.Read(make([]byte, 1))
		r.Body.Close()
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		d, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
		for i := range n {
			if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(d)
		}
	})
	mux.HandleFunc("/forward", func(w http.ResponseWriter, r *http.Request) {
		if _, err := sdk.Forward(w, r.Body); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s host=%s x=%s cl=%d", r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("X-Test"), r.ContentLength)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("X-Custom", "yes")
		w.WriteHeader(code)
		fmt.Fprint(w, "status set")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// n chunks of 1 KiB, sleeping d between them.
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		d, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
		chunk := strings.Repeat("x", 1023) + "\n"
		for i := 0; i < n; i++ {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(d)
		}
	})
	mux.HandleFunc("/trap-mid", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial ")
		w.(http.Flusher).Flush()
		crash()
	})
	mux.HandleFunc("/trap", func(w http.ResponseWriter, r *http.Request) { crash() })
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) { os.Exit(3) })
	mux.HandleFunc("/panic-after-head", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		panic("handler panicked after its head on purpose")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("handler panicked on purpose") })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; ; i++ {
			spun += i & 1
		}
	})
	mux.HandleFunc("/oom", func(w http.ResponseWriter, r *http.Request) {
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 16<<20))
			spun += len(keep)
		}
	})
	mux.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		// Allocates and touches mib MiB, then lets it go: the linear
		// memory it grew stays.
		mib, _ := strconv.Atoi(r.URL.Query().Get("mib"))
		b := make([]byte, mib<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		spun += int(b[len(b)-4096])
		fmt.Fprint(w, "grown")
	})
	mux.HandleFunc("/exit0", func(w http.ResponseWriter, r *http.Request) { os.Exit(0) })
	mux.HandleFunc("/oom-background", func(w http.ResponseWriter, r *http.Request) {
		// A goroutine outside any event allocates until the memory limit.
		go func() {
			var keep [][]byte
			for {
				keep = append(keep, make([]byte, 1<<20))
				spun += len(keep)
				time.Sleep(time.Millisecond)
			}
		}()
		fmt.Fprint(w, "started")
	})
	mux.HandleFunc("/logrecordbad", func(w http.ResponseWriter, r *http.Request) {
		// log_record with lists the SDK never sends: one not starting with
		// :msg, and one cut in the middle of a field.
		ev := sdk.EventHandle(r.Context())
		b := abi.NewFieldsBuilder(nil)
		b.Add("k", "v")
		b.Add(abi.FieldMessage, "late")
		noMsg := b.Bytes()
		b = abi.NewFieldsBuilder(nil)
		b.Add(abi.FieldMessage, "cut")
		b.Add("k", "value")
		cut := b.Bytes()
		cut = cut[:len(cut)-2]
		for _, list := range [][]byte{noMsg, cut} {
			st := rawLogRecord(ev, 0, unsafe.Pointer(&list[0]), uint32(len(list)))
			fmt.Fprintf(w, "status=%d msg=%s\n", st, lastError(ev))
		}
	})
	mux.HandleFunc("/noresponse", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/oob", func(w http.ResponseWriter, r *http.Request) {
		ev := sdk.EventHandle(r.Context())
		var h uint32
		rawRequestBody(ev, sdk.RequestHandle(r), unsafe.Pointer(&h))
		st := rawStreamRead(ev, h, 0xFFFFFF00, 0x1000, 0, 0)
		fmt.Fprintf(w, "status=%d msg=%s", st, lastError(ev))
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		// n bytes in one write: up to 64 KiB, a body sent whole.
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Write([]byte(strings.Repeat("x", n)))
	})
	mux.HandleFunc("/fdabuse", func(w http.ResponseWriter, r *http.Request) {
		// Misuse of the event descriptor, wait descriptors and the
		// lifecycle imports; one line per try: what the host answered.
		ev := sdk.EventHandle(r.Context())
		say := func(what string, v any) { fmt.Fprintf(w, "%s: %v\n", what, v) }
		say("close event fd", syscall.Close(3))
		_, err := syscall.Read(3, make([]byte, 1))
		say("read event fd 1 byte", err)
		var fd uint32
		say("wait_fd 0 handles", rawWaitFD(ev, nil, 0, unsafe.Pointer(&fd)))
		say("close it", syscall.Close(int(fd)))
		say("close it again", syscall.Close(int(fd)))
		_, err = syscall.Read(int(fd), make([]byte, 1))
		say("read closed wait fd", err)
		many := make([]uint32, 1025)
		say("wait_fd 1025 handles", rawWaitFD(ev, unsafe.Pointer(&many[0]), 1025, unsafe.Pointer(&fd)))
		many[0] = ev
		say("wait_fd on the event", rawWaitFD(ev, unsafe.Pointer(&many[0]), 1, unsafe.Pointer(&fd)))
		var timer uint32
		say("timer max", rawTimerStart(ev, 1<<63-1, unsafe.Pointer(&timer)))
		fds := make([]uint32, 5000)
		opened := 0
		for i := range fds {
			if rawWaitFD(ev, unsafe.Pointer(&timer), 1, unsafe.Pointer(&fds[i])) == 0 {
				opened++
			}
		}
		say("wait fds opened", opened)
		ready := 0
		for _, fd := range fds {
			if _, err := syscall.Read(int(fd), make([]byte, 1)); err == nil {
				ready++
			}
			syscall.Close(int(fd))
		}
		say("wait fds ready", ready)
		rawWaitFD(ev, unsafe.Pointer(&timer), 1, unsafe.Pointer(&fd))
		var soon uint32
		rawTimerStart(ev, 0, unsafe.Pointer(&soon))
		say("wait_rebind to a due timer", rawWaitRebind(ev, fd, unsafe.Pointer(&soon), 1))
		for range 100 { // the timer fires on a host goroutine
			if _, err = syscall.Read(int(fd), make([]byte, 1)); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		say("read the rebound fd", err)
		say("wait_rebind to the event", rawWaitRebind(ev, fd, unsafe.Pointer(&many[0]), 1))
		say("wait_rebind 1025 handles", rawWaitRebind(ev, fd, unsafe.Pointer(&many[0]), 1025))
		say("wait_rebind bad pointer", rawWaitRebindAt(ev, fd, 0xFFFFFFF0, 8))
		syscall.Close(int(fd))
		say("wait_rebind a closed fd", rawWaitRebind(ev, fd, unsafe.Pointer(&soon), 1))
		say("wait_rebind the event fd", rawWaitRebind(ev, 3, unsafe.Pointer(&soon), 1))
		rawClose(ev, soon)
		say("close timer", rawClose(ev, timer))
		say("serve again", rawServe(0, unsafe.Pointer(&fd)))
		say("event_done 0", rawEventDone(0, 0))
		say("close the event", rawClose(ev, ev))
		say("wait_fd bad pointer", rawWaitFDAt(ev, 0xFFFFFFF0, 8, uint32(uintptr(unsafe.Pointer(&fd)))))
	})
	mux.HandleFunc("/declflood", func(w http.ResponseWriter, r *http.Request) {
		// n distinct 1 MiB class and binding names, declared after serve.
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		name := make([]byte, 1<<20)
		var st1, st2 int32
		for i := 0; i < n; i++ {
			copy(name, strconv.Itoa(i))
			st1 = rawRegisterClass(0, unsafe.Pointer(&name[0]), uint32(len(name)))
			st2 = rawUseBinding(0, unsafe.Pointer(&name[0]), uint32(len(name)))
		}
		fmt.Fprintf(w, "%d %d", st1, st2)
	})
	mux.HandleFunc("/stale", func(w http.ResponseWriter, r *http.Request) {
		ev := sdk.EventHandle(r.Context())
		var h uint32
		rawRequestBody(ev, sdk.RequestHandle(r), unsafe.Pointer(&h))
		rawClose(ev, h)
		var n uint32
		buf := make([]byte, 16)
		st1 := rawStreamRead(ev, h, uint32(uintptr(unsafe.Pointer(&buf[0]))), 16, 0, uint32(uintptr(unsafe.Pointer(&n))))
		msg1 := lastError(ev)
		st2 := rawClose(ev, 0xdeadbeef)
		msg2 := lastError(ev)
		handles := []uint32{sdk.RequestHandle(r)}
		ready := make([]uint32, 1)
		st3 := rawPoll(ev, unsafe.Pointer(&handles[0]), 1, 0, unsafe.Pointer(&ready[0]), unsafe.Pointer(&n))
		msg3 := lastError(ev)
		fmt.Fprintf(w, "%d %s\n%d %s\n%d %s\n", st1, msg1, st2, msg2, st3, msg3)
	})
	mux.HandleFunc("/bigheader", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", 70<<10))
		fmt.Fprint(w, "never sent")
	})
	mux.HandleFunc("/badheader", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Bad", "line\r\nInjected: yes")
		fmt.Fprint(w, "never sent")
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		start := time.Now()
		time.Sleep(d) // ?go=1 once chose time.Sleep over the SDK's own sleep: there is one now
		fmt.Fprint(w, time.Since(start).Milliseconds())
	})
	mux.HandleFunc("/goroutines", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, runtime.NumGoroutine())
	})
	mux.HandleFunc("/select", func(w http.ResponseWriter, r *http.Request) {
		short, _ := sdk.NewTimer(20 * time.Millisecond)
		long, _ := sdk.NewTimer(time.Hour)
		defer long.Stop()
		ready, err := sdk.Select(-1, long, short)
		if err != nil || len(ready) != 1 || ready[0] != sdk.Pollable(short) {
			http.Error(w, fmt.Sprintf("select: %v %v", ready, sdk.Within(err)), 500)
			return
		}
		none, err := sdk.Select(0, long)
		fmt.Fprintf(w, "short fired, then %d ready, err=%v", len(none), err)
	})
	mux.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.URL.Query().Get("method"), r.URL.Query().Get("url"), r.Body)
		if r.ContentLength == 0 {
			req.Body = nil
		}
		req.Header.Set("X-From-Guest", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, "fetch failed: "+sdk.Within(err).Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("X-Upstream-Status", strconv.Itoa(resp.StatusCode))
		io.Copy(w, resp.Body)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		sdk.Logger.WarnContext(r.Context(), "guest says", "k", "v", "n", 3, slog.Group("g", "a", "b c"), "plugin", "not-me")
		fmt.Println("to stdout")
		fmt.Fprint(w, "logged")
	})
	mux.HandleFunc("/fetchflood", func(w http.ResponseWriter, r *http.Request) {
		// Starts n fetches of url without waiting for them, reports the
		// first refusal, then sleeps for d (past the deadline, if long).
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		d, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
		head := abi.NewFieldsBuilder(nil)
		head.Add(abi.FieldURL, r.URL.Query().Get("url"))
		raw := head.Bytes()
		ev := sdk.EventHandle(r.Context())
		started, refusal := 0, ""
		for i := 0; i < n; i++ {
			var body, pending uint32
			if st := rawFetch(ev, unsafe.Pointer(&raw[0]), uint32(len(raw)), 0, unsafe.Pointer(&body), unsafe.Pointer(&pending)); st != 0 {
				refusal = fmt.Sprintf("status=%d msg=%s", st, lastError(ev))
				break
			}
			started++
		}
		time.Sleep(d)
		fmt.Fprintf(w, "started %d; %s", started, refusal)
	})
	mux.HandleFunc("/logflood", func(w http.ResponseWriter, r *http.Request) {
		// n lines, alternately through the log import and stdout.
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				sdk.Logger.Info(fmt.Sprintf("flood %d", i))
			} else {
				fmt.Printf("flood %d\n", i)
			}
		}
		fmt.Fprint(w, "flooded")
	})
	mux.HandleFunc("/logbig", func(w http.ResponseWriter, r *http.Request) {
		// A 10 MB line through the log import, then one through stderr in
		// pieces, then a short line.
		big := strings.Repeat("é", 5<<20)
		sdk.Logger.Info("big-import " + big)
		fmt.Fprint(os.Stderr, "big-stderr ")
		for i := 0; i < 10; i++ {
			fmt.Fprint(os.Stderr, big[:1<<20])
		}
		fmt.Fprintln(os.Stderr, " tail")
		fmt.Fprintln(os.Stderr, "after the big lines")
		fmt.Fprint(w, "logged")
	})
	mux.HandleFunc("/bench/roundtrip", benchRoundTrip)
	mux.HandleFunc("/waitstorm", func(w http.ResponseWriter, r *http.Request) {
		// Waits through the SDK's kept wait descriptors: n goroutines at
		// once, half of them timing out; waits woken by a handle closed
		// under them; a wait on a closed handle; then many waits in a row.
		// Each line reports what a wrong descriptor would change.
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		waits, _ := strconv.Atoi(r.URL.Query().Get("waits"))
		openFDs := func() int {
			c := 0
			for fd := 4; fd < 70000; fd++ {
				if syscall.SetNonblock(fd, true) == nil {
					c++
				}
			}
			return c
		}
		before := openFDs()
		never, _ := sdk.NewTimer(time.Hour)
		defer never.Stop()
		var wg sync.WaitGroup
		var fired, timedOut, failed atomic.Int32
		for i := range n {
			wg.Go(func() {
				if i%2 == 1 {
					if ready, err := sdk.Select(time.Duration(1+i%5)*time.Millisecond, never); err != nil || len(ready) > 0 {
						failed.Add(1)
					} else {
						timedOut.Add(1)
					}
					return
				}
				t, _ := sdk.NewTimer(time.Duration(5+i%7) * time.Millisecond)
				defer t.Stop()
				if ready, err := sdk.Select(-1, t); err != nil || len(ready) != 1 {
					failed.Add(1)
				} else {
					fired.Add(1)
				}
			})
		}
		wg.Wait()
		fmt.Fprintf(w, "storm: fired=%d timed-out=%d failed=%d kept=%v\n", fired.Load(), timedOut.Load(), failed.Load(), openFDs()-before <= 64)

		// A deadline of one wait does not cut the next one short.
		sdk.Select(time.Millisecond, never)
		start := time.Now()
		t, _ := sdk.NewTimer(30 * time.Millisecond)
		ready, err := sdk.Select(-1, t)
		t.Stop()
		fmt.Fprintf(w, "after a deadline: ready=%d err=%v waited=%v\n", len(ready), err, time.Since(start) >= 30*time.Millisecond)

		// A handle closed under its waiters wakes them with an error.
		closing, _ := sdk.NewTimer(time.Hour)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := sdk.Select(-1, closing)
				errs <- err
			}()
		}
		time.Sleep(20 * time.Millisecond)
		closing.Stop()
		for range 3 {
			err := <-errs
			fmt.Fprintf(w, "closed under the wait: not-open=%v\n", err != nil && strings.Contains(err.Error(), "is not open"))
		}

		// A wait refused (the handle is closed) keeps the descriptor usable.
		_, err = sdk.Select(-1, closing)
		fmt.Fprintf(w, "wait on a closed handle: not-open=%v\n", err != nil && strings.Contains(err.Error(), "is not open"))
		t, _ = sdk.NewTimer(time.Millisecond)
		ready, err = sdk.Select(-1, t)
		t.Stop()
		fmt.Fprintf(w, "then a wait: ready=%d err=%v\n", len(ready), err)

		for range waits {
			if _, err := sdk.Select(20*time.Microsecond, never); err != nil {
				fmt.Fprintf(w, "wait failed: %v\n", sdk.Within(err))
				return
			}
		}
		fmt.Fprintf(w, "%d waits: kept=%v\n", waits, openFDs()-before <= 64)
	})
	mux.HandleFunc("/poll-body", func(w http.ResponseWriter, r *http.Request) {
		// Non-blocking reads and Select over the request body.
		s, err := r.Body.(interface{ Stream() (*sdk.Stream, error) }).Stream()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		buf := make([]byte, 4096)
		total, waits := 0, 0
		for {
			n, err := s.TryRead(buf)
			total += n
			if err == sdk.ErrWouldBlock {
				waits++
				sdk.Select(-1, s)
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
		}
		fmt.Fprintf(w, "read %d bytes", total)
	})
	sdk.Handle(mux)
}

// crash kills the guest runtime: an unrecovered panic in a goroutine.
func crash() {
	done := make(chan struct{})
	go func() { panic("guest crashed on purpose") }()
	<-done
}

func main() { sdk.Serve() }

// spun keeps the endless loops from being optimised away.
var spun int

var pollOut uint32

// benchRoundTrip answers GET /bench/roundtrip?n=N with the guest's own
// timing of N calls of the cheapest import (a poll on no handles) and of N
// calls of a Go function, in nanoseconds per call: "import go".
func benchRoundTrip(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	n = max(n, 1)
	ev := sdk.EventHandle(r.Context())
	start := time.Now()
	for range n {
		rawPoll(ev, nil, 0, 0, nil, unsafe.Pointer(&pollOut))
	}
	importNS := time.Since(start).Nanoseconds()
	start = time.Now()
	var s int32
	for i := range n {
		s += nothing(int32(i))
	}
	goNS := time.Since(start).Nanoseconds()
	spun += int(s & 1)
	fmt.Fprintf(w, "%.1f %.1f", float64(importNS)/float64(n), float64(goNS)/float64(n))
}

//go:noinline
func nothing(i int32) int32 { return i }

// barrier holds requests until n of them have arrived: only an instance
// that serves events concurrently lets them all finish.
var barrier = &arrivals{all: make(chan struct{})}

type arrivals struct {
	mu   sync.Mutex
	n    int
	all  chan struct{}
	done bool
}

func (a *arrivals) wait(want int) error {
	a.mu.Lock()
	a.n++
	if a.n >= want && !a.done {
		a.done = true
		close(a.all)
	}
	a.mu.Unlock()
	select {
	case <-a.all:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("the other requests never arrived: events are not concurrent")
	}
}
