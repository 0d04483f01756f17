// Command abifuzz is a hostile guest for the host's tests: it calls every
// wharf_v2 import with arguments the SDK never passes (pointers and lengths
// out of range or near 2^32, closed, foreign and made-up handles, another
// event's handle), from a Worker event and from an object's event. The
// host must answer each with a status and keep serving.
package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk"
)

// rawImport is one import: its name, the kinds of its arguments after the
// event (I: i32, L: i64) and a call of it.
type rawImport struct {
	name  string
	kinds string
	call  func(ev uint32, a []uint64) int32
}

// scratch is where pointers into guest memory point: the host may read or
// write any of it.
var scratch = make([]byte, 64<<10)

// lastEvent is the handle of the previous event fuzzed: a foreign handle.
var lastEvent uint32

func init() {
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldURL, "http://127.0.0.1:9/")
	b.Add(abi.FieldMessage, "m")
	copy(scratch, b.Bytes())
	copy(scratch[1024:], `{"key":"k","value":"v"}`)
	copy(scratch[2048:], "SELECT 1")
	r := rand.New(rand.NewPCG(1, 2))
	for i := 4096; i < len(scratch); i++ {
		scratch[i] = byte(r.Uint32())
	}
}

// lastErrorLen is the length of the host's message for the last failed
// call of event ev.
func lastErrorLen(ev uint32) uint32 {
	var buf [1]byte
	var n uint32
	rawLastError(ev, uint32(uintptr(unsafe.Pointer(&buf[0]))), 0, uint32(uintptr(unsafe.Pointer(&n))))
	return n
}

// fuzz makes n calls chosen by seed for event ev and counts their statuses.
func fuzz(ev uint32, seed int64, n int) string {
	r := rand.New(rand.NewPCG(uint64(seed), 7))
	base := uint32(uintptr(unsafe.Pointer(&scratch[0])))
	i32s := []uint32{0, 1, 2, 3, 4, 5, 8, 16, 31, 32, 63, 64, 200, 1000, 2048,
		base, base + 16, base + 1024, base + 2048, base + 8192,
		0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 0xFFFFFFFC, 0x10000000, 0x0FFFFFFF}
	i64s := []uint64{0, 1, 1000, 1 << 62, math.MaxInt64, math.MaxUint64, 1 << 63}
	statuses := map[string]int{}
	args := make([]uint64, 10)
	for range n {
		imp := imports[r.IntN(len(imports))]
		for i, k := range imp.kinds {
			if k == 'L' {
				args[i] = i64s[r.IntN(len(i64s))]
			} else {
				args[i] = uint64(i32s[r.IntN(len(i32s))])
			}
		}
		e := ev
		switch x := r.IntN(10); {
		case x == 0:
			e = 0
		case x == 1:
			e = lastEvent
		case x == 2:
			e = uint32(r.IntN(64))
		}
		switch imp.name {
		case "serve":
			continue
		case "event_done":
			if e == ev {
				continue
			}
		case "poll":
			args[2] = 0
		case "wait_rebind":
			args[0] = uint64(3 + r.IntN(2)*100000) // the event's, or none: the SDK's own are kept
		}
		start := time.Now()
		st := imp.call(e, args)
		if d := time.Since(start); d > 500*time.Millisecond {
			fmt.Printf("slow import %s(%d, %v) = %d after %s\n", imp.name, e, args[:len(imp.kinds)], st, d)
		}
		statuses[imp.name+"="+strconv.Itoa(int(st))]++
	}
	lastEvent = ev
	keys := make([]string, 0, len(statuses))
	for k := range statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return fmt.Sprintf("%d calls, %d outcomes", n, len(keys))
}

// Fuzz is an object whose event fuzzes.
type Fuzz struct{ state *sdk.ObjectState }

// Run fuzzes in the object's event.
func (f *Fuzz) Run(ctx context.Context, seed int64) (string, error) {
	return fuzz(sdk.EventHandle(ctx), seed, 2000), nil
}

// BigOption lists its storage with an option list whose one option has
// an unknown name of mib MiB: how long the call takes and how long its
// last_error is.
func (f *Fuzz) BigOption(ctx context.Context, mib int) (string, error) {
	ev := sdk.EventHandle(ctx)
	b := abi.NewFieldsBuilder(nil)
	name := make([]byte, mib<<20)
	for i := range name {
		name[i] = byte(i) | 0x80
	}
	b.Add(string(name), "v")
	list := b.Bytes()
	f.state.Storage.Put("k", []byte("v")) // the database is open before the timed call
	start := time.Now()
	st := rawStorageList(ev, uint32(uintptr(unsafe.Pointer(&list[0]))), uint32(len(list)), uint32(uintptr(unsafe.Pointer(&scratch[0]))), 16,
		uint32(uintptr(unsafe.Pointer(&scratch[16]))))
	took := time.Since(start)
	return fmt.Sprintf("storage_list: status=%d fast=%v last_error_len=%d took=%s", st, took < 200*time.Millisecond, lastErrorLen(ev), took), nil
}

func main() {
	sdk.RegisterClass("Fuzz", func(st *sdk.ObjectState) any { return &Fuzz{state: st} })
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") })
	mux.HandleFunc("/fuzz", func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.ParseInt(r.URL.Query().Get("seed"), 10, 64)
		fmt.Fprint(w, fuzz(sdk.EventHandle(r.Context()), seed, 2000))
	})
	mux.HandleFunc("/object", func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.ParseInt(r.URL.Query().Get("seed"), 10, 64)
		stub, err := sdk.GetNamespace("FUZZ").GetByName("f" + strconv.FormatInt(seed%7, 10))
		var out string
		if err == nil {
			err = stub.Call("Run", seed, &out)
		}
		if err != nil {
			http.Error(w, strings.ReplaceAll(err.Error(), "\n", " "), 500)
			return
		}
		fmt.Fprint(w, out)
	})
	mux.HandleFunc("/bigoption", func(w http.ResponseWriter, r *http.Request) {
		mib, _ := strconv.Atoi(r.URL.Query().Get("mib"))
		stub, err := sdk.GetNamespace("FUZZ").GetByName("big")
		var out string
		if err == nil {
			err = stub.Call("BigOption", mib, &out)
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, out)
	})
	mux.HandleFunc("/bigname", func(w http.ResponseWriter, r *http.Request) {
		// object_id naming a binding of mib MiB: how long the call takes
		// and how long its last_error is.
		mib, _ := strconv.Atoi(r.URL.Query().Get("mib"))
		ev := sdk.EventHandle(r.Context())
		name := make([]byte, mib<<20)
		for i := range name {
			name[i] = byte(i) | 0x80 // quoted, each byte takes four
		}
		p := uint32(uintptr(unsafe.Pointer(&name[0])))
		out := uint32(uintptr(unsafe.Pointer(&scratch[0])))
		binding := []byte("FUZZ")
		bp := uint32(uintptr(unsafe.Pointer(&binding[0])))
		id := make([]byte, 64)
		var idOut [64]byte
		rawObjectId(ev, bp, 4, abi.IDFromName, uint32(uintptr(unsafe.Pointer(&id[0]))), 1, uint32(uintptr(unsafe.Pointer(&idOut[0]))))
		report := func(what string, call func() int32) {
			start := time.Now()
			st := call()
			took := time.Since(start)
			fmt.Fprintf(w, "%s: status=%d fast=%v last_error_len=%d\n", what, st, took < 200*time.Millisecond, lastErrorLen(ev))
		}
		report("object_id", func() int32 { return rawObjectId(ev, p, uint32(len(name)), abi.IDFromName, out, 1, out) })
	})
	sdk.Handle(mux)
	sdk.Serve()
}

//go:wasmimport wharf_v2 last_error
func rawLastError(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 log
func rawLog(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 log_record
func rawLogRecord(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 request_head
func rawRequestHead(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 request_body
func rawRequestBody(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 response_send
func rawResponseSend(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32, a5 uint32, a6 uint32) int32

//go:wasmimport wharf_v2 stream_read
func rawStreamRead(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 stream_write
func rawStreamWrite(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 stream_abort
func rawStreamAbort(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 forward
func rawForward(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 poll
func rawPoll(ev uint32, a0 uint32, a1 uint32, a2 uint64, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 wait_fd
func rawWaitFd(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 wait_rebind
func rawWaitRebind(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 serve
func rawServe(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 event_done
func rawEventDone(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 timer_start
func rawTimerStart(ev uint32, a0 uint64, a1 uint32) int32

//go:wasmimport wharf_v2 close
func rawClose(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 fetch
func rawFetch(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 fetch_result
func rawFetchResult(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 response_head
func rawResponseHead(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 response_body
func rawResponseBody(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 file_open
func rawFileOpen(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 file_op
func rawFileOp(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 register_class
func rawRegisterClass(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 use_binding
func rawUseBinding(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 object_id
func rawObjectId(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32, a5 uint32) int32

//go:wasmimport wharf_v2 object_self
func rawObjectSelf(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 object_fetch
func rawObjectFetch(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32, a5 uint32, a6 uint32, a7 uint32) int32

//go:wasmimport wharf_v2 object_call
func rawObjectCall(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32, a5 uint32, a6 uint32, a7 uint32, a8 uint32) int32

//go:wasmimport wharf_v2 call_result
func rawCallResult(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 call_request
func rawCallRequest(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 call_return
func rawCallReturn(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 storage_get
func rawStorageGet(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 storage_put
func rawStoragePut(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 storage_delete
func rawStorageDelete(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 storage_get_many
func rawStorageGetMany(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 storage_put_many
func rawStoragePutMany(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 storage_delete_many
func rawStorageDeleteMany(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 storage_list
func rawStorageList(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 storage_delete_all
func rawStorageDeleteAll(ev uint32) int32

//go:wasmimport wharf_v2 storage_transaction
func rawStorageTransaction(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 sql_exec
func rawSqlExec(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 cursor_read
func rawCursorRead(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

//go:wasmimport wharf_v2 alarm_set
func rawAlarmSet(ev uint32, a0 uint64) int32

//go:wasmimport wharf_v2 alarm_get
func rawAlarmGet(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 alarm_delete
func rawAlarmDelete(ev uint32) int32

//go:wasmimport wharf_v2 background_op
func rawBackgroundOp(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 background_logs
func rawBackgroundLogs(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 background_wait
func rawBackgroundWait(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 container_start
func rawContainerStart(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 container_running
func rawContainerRunning(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 container_destroy
func rawContainerDestroy(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 container_signal
func rawContainerSignal(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 container_monitor
func rawContainerMonitor(ev uint32, a0 uint32) int32

//go:wasmimport wharf_v2 container_exec
func rawContainerExec(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 process_status
func rawProcessStatus(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 process_kill
func rawProcessKill(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 process_pid
func rawProcessPid(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 container_connect
func rawContainerConnect(ev uint32, a0 uint32, a1 uint32) int32

//go:wasmimport wharf_v2 container_config
func rawContainerConfig(ev uint32, a0 uint32, a1 uint32, a2 uint32) int32

//go:wasmimport wharf_v2 container_fetch
func rawContainerFetch(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32, a5 uint32) int32

//go:wasmimport wharf_v2 container_intercept
func rawContainerIntercept(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32, a4 uint32) int32

//go:wasmimport wharf_v2 container_egress
func rawContainerEgress(ev uint32, a0 uint32, a1 uint32, a2 uint32, a3 uint32) int32

var imports = []rawImport{
	{"last_error", "III", func(ev uint32, a []uint64) int32 { return rawLastError(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"log", "III", func(ev uint32, a []uint64) int32 { return rawLog(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"log_record", "III", func(ev uint32, a []uint64) int32 { return rawLogRecord(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"request_head", "IIII", func(ev uint32, a []uint64) int32 {
		return rawRequestHead(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"request_body", "II", func(ev uint32, a []uint64) int32 { return rawRequestBody(ev, uint32(a[0]), uint32(a[1])) }},
	{"response_send", "IIIIIII", func(ev uint32, a []uint64) int32 {
		return rawResponseSend(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5]), uint32(a[6]))
	}},
	{"stream_read", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawStreamRead(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"stream_write", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawStreamWrite(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"stream_abort", "III", func(ev uint32, a []uint64) int32 { return rawStreamAbort(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"forward", "III", func(ev uint32, a []uint64) int32 { return rawForward(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"poll", "IILII", func(ev uint32, a []uint64) int32 {
		return rawPoll(ev, uint32(a[0]), uint32(a[1]), a[2], uint32(a[3]), uint32(a[4]))
	}},
	{"wait_fd", "III", func(ev uint32, a []uint64) int32 { return rawWaitFd(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"wait_rebind", "III", func(ev uint32, a []uint64) int32 { return rawWaitRebind(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"serve", "I", func(ev uint32, a []uint64) int32 { return rawServe(ev, uint32(a[0])) }},
	{"event_done", "I", func(ev uint32, a []uint64) int32 { return rawEventDone(ev, uint32(a[0])) }},
	{"timer_start", "LI", func(ev uint32, a []uint64) int32 { return rawTimerStart(ev, a[0], uint32(a[1])) }},
	{"close", "I", func(ev uint32, a []uint64) int32 { return rawClose(ev, uint32(a[0])) }},
	{"fetch", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawFetch(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"fetch_result", "II", func(ev uint32, a []uint64) int32 { return rawFetchResult(ev, uint32(a[0]), uint32(a[1])) }},
	{"response_head", "IIII", func(ev uint32, a []uint64) int32 {
		return rawResponseHead(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"response_body", "II", func(ev uint32, a []uint64) int32 { return rawResponseBody(ev, uint32(a[0]), uint32(a[1])) }},
	{"file_open", "III", func(ev uint32, a []uint64) int32 { return rawFileOpen(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"file_op", "III", func(ev uint32, a []uint64) int32 { return rawFileOp(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"register_class", "II", func(ev uint32, a []uint64) int32 { return rawRegisterClass(ev, uint32(a[0]), uint32(a[1])) }},
	{"use_binding", "II", func(ev uint32, a []uint64) int32 { return rawUseBinding(ev, uint32(a[0]), uint32(a[1])) }},
	{"object_id", "IIIIII", func(ev uint32, a []uint64) int32 {
		return rawObjectId(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5]))
	}},
	{"object_self", "III", func(ev uint32, a []uint64) int32 { return rawObjectSelf(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"object_fetch", "IIIIIIII", func(ev uint32, a []uint64) int32 {
		return rawObjectFetch(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5]), uint32(a[6]), uint32(a[7]))
	}},
	{"object_call", "IIIIIIIII", func(ev uint32, a []uint64) int32 {
		return rawObjectCall(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5]), uint32(a[6]), uint32(a[7]), uint32(a[8]))
	}},
	{"call_result", "IIII", func(ev uint32, a []uint64) int32 {
		return rawCallResult(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"call_request", "IIII", func(ev uint32, a []uint64) int32 {
		return rawCallRequest(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"call_return", "IIII", func(ev uint32, a []uint64) int32 {
		return rawCallReturn(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"storage_get", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawStorageGet(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"storage_put", "IIII", func(ev uint32, a []uint64) int32 {
		return rawStoragePut(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"storage_delete", "III", func(ev uint32, a []uint64) int32 {
		return rawStorageDelete(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"storage_get_many", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawStorageGetMany(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"storage_put_many", "II", func(ev uint32, a []uint64) int32 { return rawStoragePutMany(ev, uint32(a[0]), uint32(a[1])) }},
	{"storage_delete_many", "III", func(ev uint32, a []uint64) int32 {
		return rawStorageDeleteMany(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"storage_list", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawStorageList(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"storage_delete_all", "", func(ev uint32, a []uint64) int32 { return rawStorageDeleteAll(ev) }},
	{"storage_transaction", "I", func(ev uint32, a []uint64) int32 { return rawStorageTransaction(ev, uint32(a[0])) }},
	{"sql_exec", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawSqlExec(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"cursor_read", "IIII", func(ev uint32, a []uint64) int32 {
		return rawCursorRead(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
	{"alarm_set", "L", func(ev uint32, a []uint64) int32 { return rawAlarmSet(ev, a[0]) }},
	{"alarm_get", "I", func(ev uint32, a []uint64) int32 { return rawAlarmGet(ev, uint32(a[0])) }},
	{"alarm_delete", "", func(ev uint32, a []uint64) int32 { return rawAlarmDelete(ev) }},
	{"background_op", "III", func(ev uint32, a []uint64) int32 {
		return rawBackgroundOp(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"background_logs", "III", func(ev uint32, a []uint64) int32 {
		return rawBackgroundLogs(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"background_wait", "III", func(ev uint32, a []uint64) int32 {
		return rawBackgroundWait(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"container_start", "III", func(ev uint32, a []uint64) int32 {
		return rawContainerStart(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"container_running", "I", func(ev uint32, a []uint64) int32 { return rawContainerRunning(ev, uint32(a[0])) }},
	{"container_destroy", "III", func(ev uint32, a []uint64) int32 {
		return rawContainerDestroy(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"container_signal", "II", func(ev uint32, a []uint64) int32 { return rawContainerSignal(ev, uint32(a[0]), uint32(a[1])) }},
	{"container_monitor", "I", func(ev uint32, a []uint64) int32 { return rawContainerMonitor(ev, uint32(a[0])) }},
	{"container_exec", "III", func(ev uint32, a []uint64) int32 {
		return rawContainerExec(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"process_status", "II", func(ev uint32, a []uint64) int32 { return rawProcessStatus(ev, uint32(a[0]), uint32(a[1])) }},
	{"process_kill", "III", func(ev uint32, a []uint64) int32 { return rawProcessKill(ev, uint32(a[0]), uint32(a[1]), uint32(a[2])) }},
	{"process_pid", "II", func(ev uint32, a []uint64) int32 { return rawProcessPid(ev, uint32(a[0]), uint32(a[1])) }},
	{"container_connect", "II", func(ev uint32, a []uint64) int32 { return rawContainerConnect(ev, uint32(a[0]), uint32(a[1])) }},
	{"container_config", "III", func(ev uint32, a []uint64) int32 {
		return rawContainerConfig(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]))
	}},
	{"container_fetch", "IIIIII", func(ev uint32, a []uint64) int32 {
		return rawContainerFetch(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]), uint32(a[5]))
	}},
	{"container_intercept", "IIIII", func(ev uint32, a []uint64) int32 {
		return rawContainerIntercept(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]), uint32(a[4]))
	}},
	{"container_egress", "IIII", func(ev uint32, a []uint64) int32 {
		return rawContainerEgress(ev, uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3]))
	}},
}
