// Package abi is the wharf_v2 contract between the wharf host and guest
// modules: import and export names, status codes, handle kinds, flags and the
// encoding of field lists. It is pure Go with no dependencies so that both the
// host and the guest SDK use the same constants. README.md is the spec.
package abi

// Version is the ABI version; its import module is ImportModule. A module
// importing another version's module is refused with a message to rebuild.
const Version = 2

// ImportModule is the Wasm import module name of every host function.
const ImportModule = "wharf_v2"

// ImportModuleV1 is the import module of ABI version 1, whose modules the
// host refuses.
const ImportModuleV1 = "wharf_v1"

// ExportStart is the one export a plugin needs: a WASI command's entry
// point. Its main registers classes and handlers and then calls serve and
// reads events from the descriptor serve returns, forever.
const ExportStart = "_start"

// EventRecordSize is the size of one event record read from the event
// descriptor: four little-endian u32s, EventKind, the event's handle, the
// object's handle (0 for a Worker event) and an argument.
const EventRecordSize = 16

// EventKind says what an event record asks of the guest.
type EventKind uint32

// Event kinds. Each event except EventDrop ends with event_done.
const (
	// EventFetch: an HTTP request; the argument is a KindRequest handle.
	// With an object handle, it is for that object.
	EventFetch EventKind = 1
	// EventCall: an RPC method of an object; the argument is a KindCall.
	EventCall EventKind = 2
	// EventAlarm: an object's alarm; the argument is the retry count.
	EventAlarm EventKind = 3
	// EventConstruct: build the object (object_self names its class and
	// id); a failed construction fails the activation.
	EventConstruct EventKind = 4
	// EventOutbound: a request a container sent that an interception rule
	// routes to the Worker, as EventFetch; the request's head has
	// FieldHandler, FieldClass and FieldID.
	EventOutbound EventKind = 5
	// EventDrop: the object was evicted; forget its value. The event handle
	// is 0 and there is nothing to answer.
	EventDrop EventKind = 6
)

// Names of the host functions in ImportModule. Signatures are in README.md and
// in the host's registration table; every function returns a Status as i32
// and takes as its first parameter the event it acts for (an event handle,
// or 0 for the instance itself outside any event).
const (
	// ImportServe (fd_out: ptr) ends initialisation (classes, bindings and
	// handlers are registered) and gives the event descriptor.
	ImportServe = "serve"
	// ImportEventDone (status: i32) ends the event: 0 succeeded, anything
	// else failed (its writes are rolled back).
	ImportEventDone = "event_done"
	// ImportWaitFD (handles: ptr, n, fd_out: ptr) gives a descriptor that
	// becomes readable once one of the handles is ready (see poll); close
	// it with fd_close.
	ImportWaitFD = "wait_fd"
	// ImportWaitRebind (fd, handles: ptr, n) points the wait descriptor fd
	// at other handles, so a guest keeps its descriptors open between
	// waits.
	ImportWaitRebind = "wait_rebind"
	ImportLastError  = "last_error"
	ImportLog        = "log"
	// ImportLogRecord (level, list: ptr, len) logs a structured record:
	// a field list of FieldMessage, then one field per attribute.
	ImportLogRecord    = "log_record"
	ImportRequestHead  = "request_head"
	ImportRequestBody  = "request_body"
	ImportResponseSend = "response_send"
	ImportStreamRead   = "stream_read"
	ImportStreamWrite  = "stream_write"
	ImportStreamAbort  = "stream_abort"
	ImportForward      = "forward"
	ImportPoll         = "poll"
	ImportTimerStart   = "timer_start"
	ImportClose        = "close"
	ImportFetch        = "fetch"
	ImportFetchResult  = "fetch_result"
	ImportResponseHead = "response_head"
	ImportResponseBody = "response_body"

	// Durable Objects: ids, stubs and the object side of calls.
	ImportRegisterClass = "register_class"
	ImportUseBinding    = "use_binding"
	ImportObjectID      = "object_id"
	ImportObjectSelf    = "object_self"
	ImportObjectFetch   = "object_fetch"
	ImportObjectCall    = "object_call"
	ImportCallResult    = "call_result"
	ImportCallRequest   = "call_request"
	ImportCallReturn    = "call_return"

	// Durable Object storage, for the object an instance belongs to.
	ImportStorageGet         = "storage_get"
	ImportStoragePut         = "storage_put"
	ImportStorageDelete      = "storage_delete"
	ImportStorageGetMany     = "storage_get_many"
	ImportStoragePutMany     = "storage_put_many"
	ImportStorageDeleteMany  = "storage_delete_many"
	ImportStorageList        = "storage_list"
	ImportStorageDeleteAll   = "storage_delete_all"
	ImportStorageTransaction = "storage_transaction"
	ImportSQLExec            = "sql_exec"
	ImportCursorRead         = "cursor_read"
	ImportAlarmSet           = "alarm_set"
	ImportAlarmGet           = "alarm_get"
	ImportAlarmDelete        = "alarm_delete"

	// The container of the Durable Object an instance belongs to. Those
	// that wait for containerd, the agent or a TCP handshake (start,
	// destroy, signal, exec, process_kill, connect, file_*, background_op
	// and background_logs) return a pending handle at once: call_result
	// gives the handles they opened (a u32 each), then their data.
	ImportContainerStart   = "container_start"
	ImportContainerRunning = "container_running"
	ImportContainerDestroy = "container_destroy"
	ImportContainerSignal  = "container_signal"
	ImportContainerMonitor = "container_monitor"
	ImportContainerExec    = "container_exec"
	ImportProcessStatus    = "process_status"
	ImportProcessKill      = "process_kill"
	ImportProcessPid       = "process_pid"
	// ImportContainerConnect (port: i32, pending_out) opens a TCP
	// connection to a port of the container: a readable and a writable
	// stream.
	ImportContainerConnect = "container_connect"
	// ImportContainerIntercept (kind: i32, target: ptr, len, handler: ptr,
	// len) routes the container's outbound HTTP or HTTPS through the
	// Worker's wharf_on_outbound.
	ImportContainerIntercept = "container_intercept"
	// ImportContainerEgress (list: i32, edit: i32, hosts: ptr, len) changes
	// the container's allowedHosts or deniedHosts; hosts is a field list of
	// OptHost.
	ImportContainerEgress = "container_egress"
	// ImportContainerConfig (out: ptr, cap, len_out: ptr) gives the class's
	// Container settings from wharf.toml as a field list of OptSleepAfter,
	// OptHardTimeout and OptReadyOn.
	ImportContainerConfig = "container_config"
	// ImportContainerFetch (port: i32, head: ptr, len, flags, body_out,
	// pending_out) is fetch to a port of the container: the host makes the
	// HTTP request (keeping connections alive), so the response body is a
	// host stream.
	ImportContainerFetch = "container_fetch"
	// ImportFileOpen (opts: ptr, len, pending_out) opens a file of the
	// container (through wharf-init) as a readable stream (OptFileMode
	// "read"), a writable stream ("write": created or truncated), or a
	// readable stream of its changes as JSON lines ("watch").
	ImportFileOpen = "file_open"
	// ImportFileOp (opts: ptr, len, pending_out) runs OptFileOp stat,
	// list, mkdir, remove or rename; stat and list give JSON.
	ImportFileOp = "file_op"
	// ImportBackgroundOp (opts: ptr, len, pending_out) runs
	// OptBackgroundOp start, list, get or kill on the container's
	// background processes (kept by wharf-init across events); start, get
	// and list give JSON.
	ImportBackgroundOp = "background_op"
	// ImportBackgroundLogs (opts: ptr, len, pending_out) streams a
	// background process's combined output, from the start of what is
	// kept or from now (OptFrom); the result ends with the bytes dropped
	// before it (a u64).
	ImportBackgroundLogs = "background_logs"
	// ImportBackgroundWait (opts: ptr, len, pending_out) returns a pending
	// result, ready when a background process has exited.
	ImportBackgroundWait = "background_wait"
)

// MethodContainerExited is the RPC method (wharf_on_call, no arguments)
// the host calls on an object when its container's main process has
// ended, whoever ended it. An object that does not know it may ignore it.
const MethodContainerExited = "wharf.container_exited"

// Kinds of container_intercept.
const (
	InterceptHTTP    = 1 // a hostname, glob, IP, IP:port or CIDR
	InterceptAllHTTP = 2 // every plain HTTP request (target empty)
	InterceptHTTPS   = 3 // a hostname or glob; "*" is every name
)

// Lists and edits of container_egress.
const (
	EgressAllowed = 1
	EgressDenied  = 2

	EgressAdd     = 1
	EgressRemove  = 2
	EgressReplace = 3
)

// Field names of container_start and container_exec option lists.
const (
	OptEnv            = "env"        // KEY=VALUE, repeatable
	OptEntrypoint     = "entrypoint" // one argument, repeatable
	OptEnableInternet = "enable_internet"
	OptArg            = "arg" // one argument, repeatable
	OptCwd            = "cwd"
	OptUser           = "user"
	OptStdin          = "stdin"  // "pipe" or absent (immediate EOF)
	OptStdout         = "stdout" // "pipe" (default) or "ignore"
	OptStderr         = "stderr" // "pipe" (default), "ignore" or "combined"
	OptHost           = "host"   // one host glob of container_egress, repeatable
	OptSecret         = "secret" // container_start: an env var of wharf serve to pass in, repeatable
	OptLabel          = "label"  // container_start: KEY=VALUE put on the container, repeatable
	OptSleepAfter     = "sleep_after"
	OptHardTimeout    = "hard_timeout"
	OptReadyOn        = "ready_on" // "port status path", repeatable
)

// Field names of file_open and file_op option lists (with OptUser).
const (
	OptPath      = "path"      // absolute, resolved in the container
	OptTo        = "to"        // rename's destination
	OptFileOp    = "op"        // file_op: stat, list, mkdir, remove or rename
	OptFileMode  = "mode"      // file_open: read (default), write or watch
	OptRecursive = "recursive" // file_op remove: "true" removes a whole tree
	OptPerm      = "perm"      // file_open write: octal permission bits (default 644)
)

// Field names of background_op, background_logs and background_wait
// option lists (with OptArg, OptEnv, OptCwd and OptUser for start).
const (
	OptBackgroundOp = "op"     // background_op: start, list, get or kill
	OptID           = "id"     // the process's id (start: optional, chosen)
	OptSignal       = "signal" // kill: decimal signal number, default 15
	OptFrom         = "from"   // background_logs: start (default) or now
)

// MaxBackgroundProcesses is how many background processes a container
// keeps at once (running, or exited and not yet replaced);
// BackgroundOutputBuffer is how many bytes of a background process's
// output (stdout and stderr together) are kept.
const (
	MaxBackgroundProcesses = 64
	BackgroundOutputBuffer = 1 << 20
)

// How object_id makes an id.
const (
	IDFromName   uint32 = 0
	IDUnique     uint32 = 1
	IDFromString uint32 = 2
)

// ObjectIDLen is the length of an object id: 64 lowercase hex digits.
const ObjectIDLen = 64

// Operations of storage_transaction.
const (
	TxBegin    uint32 = 0
	TxCommit   uint32 = 1
	TxRollback uint32 = 2
)

// Options of storage_list, as field names of its options list.
const (
	ListStart      = "start"
	ListStartAfter = "startAfter"
	ListEnd        = "end"
	ListPrefix     = "prefix"
	ListReverse    = "reverse" // "1" for descending order
	ListLimit      = "limit"   // decimal
)

// Type tags of SQL values in field lists: the field name is the tag and the
// value its encoding (integers and floats as 8 little-endian bytes).
const (
	SQLNull  = "n"
	SQLInt   = "i"
	SQLFloat = "f"
	SQLText  = "t"
	SQLBlob  = "b"
)

// Pseudo-fields of object_self, call_request and sql results.
const (
	FieldClass       = ":class"
	FieldID          = ":id"
	FieldArgs        = ":args"
	FieldColumn      = ":column"
	FieldRow         = ":row"
	FieldRowsWritten = ":rows_written"
)

// Flags for stream_read and stream_write.
const (
	// StreamNonBlocking makes a read or write return StatusAgain instead of
	// waiting.
	StreamNonBlocking uint32 = 1 << 0
)

// Flags for response_send.
const (
	// ResponseStream asks for a writable body stream: the body given in the
	// call is written first and more may follow through the stream.
	ResponseStream uint32 = 1 << 0
)

// Flags of call_return, or'ed into its status.
const (
	// CallReturnRecord says that call_return's data is a CallError (its
	// message and codes), not the message alone. Its status must be an
	// error's.
	CallReturnRecord uint32 = 1 << 16
)

// Flags for fetch.
const (
	// FetchBodyStream asks for a writable stream carrying the request body.
	FetchBodyStream uint32 = 1 << 0
)

// Log levels for the log import; they match log/slog's levels.
const (
	LogDebug int32 = -4
	LogInfo  int32 = 0
	LogWarn  int32 = 4
	LogError int32 = 8
)

// PollForever as a poll timeout waits without a deadline.
const PollForever int64 = -1

// Limits the host enforces.
const (
	// MaxHeadBytes bounds an encoded request or response head (status or
	// method, URL and all headers).
	MaxHeadBytes = 64 << 10
	// MaxPollHandles bounds the handles one poll call may wait on.
	MaxPollHandles = 1024
)

// Pseudo-field names carried in a head's field list before the headers.
const (
	FieldMethod = ":method"
	FieldURL    = ":url"
	FieldStatus = ":status"
	// FieldRemoteAddr is the client address of an incoming request.
	FieldRemoteAddr = ":remote"
	// FieldHandler, FieldClass and FieldID tell wharf_on_outbound which
	// rule's handler runs and whose container sent the request.
	FieldHandler = ":handler"
	// FieldMessage is the first field of a log_record list: the message.
	// It is the message of a CallError too.
	FieldMessage = ":msg"
	// FieldCode is one code of a CallError.
	FieldCode = ":code"
)
