package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Durable Objects
//
// A class is registered by name with a constructor; the manifest binds it
// ([[durable_objects.bindings]]). The host runs at most one live instance of
// each object, gives it its own storage, and delivers its events (fetch,
// RPC call, alarm) one at a time in arrival order. "Single-threaded" means
// exactly that: while an event runs no other event of the same object runs,
// so the object's fields need no locks (unless goroutines it starts touch
// them); events of different objects run concurrently, many objects living
// in one instance as ordinary Go values. Storage, container and alarm calls
// act for the object's current event: made from a goroutine after the event
// ended, they return ErrEventOver. A failed event (a panic, a timeout) rolls
// back that event's storage writes; an instance that ends (a trap) loses the
// in-memory state of its objects, which are constructed again from their
// storage on their next event. The response to an event leaves only once
// the storage writes made before it are durable.

// ObjectState is what the host gives an object: its id and its storage.
type ObjectState struct {
	// ID is the object's id (64 hex digits).
	ID string
	// Class is the object's class name.
	Class string
	// Storage is the object's own durable storage.
	Storage *Storage
	// Container is the object's container, if its class has one.
	Container *Container
	// Logger is Logger for the object: its lines carry the request id of
	// the object's current event without a context (an alarm, a method),
	// and name the object's class and id when made between its events
	// (from a goroutine), so wharf tail --class and --object find them.
	Logger *slog.Logger
}

// Constructor makes an object from its state. The object may implement
// http.Handler (fetch), AlarmHandler (alarms), and exported methods called
// with Stub.Call: func(Args) (Result, error), func(Args) error,
// func() (Result, error) or func() error, with JSON-encodable types. A
// method may take a context.Context first: it carries the call's event, to
// pass on to calls the method makes (Stub.CallContext,
// http.NewRequestWithContext).
type Constructor func(state *ObjectState) any

// AlarmHandler is implemented by objects that use alarms. retry counts the
// earlier failed attempts; returning an error schedules another.
type AlarmHandler interface {
	Alarm(retry int) error
}

var classes = map[string]Constructor{}

// callMethod calls an object's method by name (invoke); RegisterClass sets
// it. Looking methods up by name makes Go's linker keep every exported
// method of every type in the module, not only those called: a plugin
// without classes leaves it out, and its module is a fifth smaller
// (examples/hello: 15.0 MB without this, 11.7 MB with).
var callMethod func(ctx context.Context, obj any, method string, args []byte) ([]byte, abi.Status, error)

// RegisterClass registers a Durable Object class. Call it before Serve, from
// main or an init function.
func RegisterClass(name string, ctor Constructor) {
	classes[name] = ctor
	callMethod = invoke
	if err := wharf.Event(0).RegisterClass(name); err != nil && !errors.Is(err, abi.StatusUnsupported) {
		panic(fmt.Sprintf("registering class %s: %v", name, err))
	}
}

// construct serves EventConstruct: it builds the object with handle h and
// keeps it among the live objects.
func construct(ev wharf.Event, h uint32) (status int32) {
	defer recoverTo(ev, &status, "constructor")
	raw, err := ev.ObjectSelf()
	if err != nil {
		ev.Log(abi.LogError, err.Error())
		return 1
	}
	o := &object{handle: h}
	o.ev.Store(uint32(ev))
	defer o.ev.Store(0)
	st := &ObjectState{Storage: &Storage{obj: o}, Container: &Container{obj: o}}
	o.state = st
	st.Logger = slog.New(logHandler{obj: o})
	abi.RangeFields(string(raw), func(n, v string) bool {
		switch n {
		case abi.FieldClass:
			st.Class = v
		case abi.FieldID:
			st.ID = v
		}
		return true
	})
	ctor, ok := classes[st.Class]
	if !ok {
		ev.Log(abi.LogError, fmt.Sprintf("class %q is not registered in this module", st.Class))
		return 1
	}
	o.value = ctor(st)
	objects.Store(h, o)
	return 0
}

// recoverTo turns a panic in an object's code into a failed event.
func recoverTo(ev wharf.Event, status *int32, what string) {
	if p := recover(); p != nil {
		ev.Log(abi.LogError, fmt.Sprintf("panic in %s: %v\n%s", what, p, debug.Stack()))
		*status = 1
	}
}

// handler routes a fetch to the object's ServeHTTP.
func (o *object) handler() http.Handler {
	if h, ok := o.value.(http.Handler); ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("%T does not handle fetch (implement http.Handler)", o.value), http.StatusNotImplemented)
	})
}

// call serves EventCall: the RPC call with handle call.
func (o *object) call(call uint32) (status int32) {
	ev := o.event()
	defer func() {
		if p := recover(); p != nil { // fail the event; the host tells the caller its request id, never the panic
			ev.Log(abi.LogError, fmt.Sprintf("panic in %T call: %v\n%s", o.value, p, debug.Stack()))
			status = 1
		}
	}()
	raw, err := ev.CallRequest(call)
	if err != nil {
		return 1
	}
	var method string
	var args []byte
	abi.RangeFields(raw, func(n, v []byte) bool {
		switch string(n) {
		case abi.FieldMethod:
			method = string(v)
		case abi.FieldArgs:
			args = v
		}
		return true
	})
	if method == abi.MethodContainerExited { // from the host, not a caller
		o.state.Container.exited()
		if h, ok := o.value.(interface{ containerExited() }); ok {
			h.containerExited()
		}
		ev.CallReturn(call, abi.StatusOK, nil)
		return 0
	}
	result, st, err := callMethod(withEvent(context.Background(), ev), o.value, method, args)
	if err != nil {
		callReturnError(ev, call, st, err)
		return 0
	}
	ev.CallReturn(call, abi.StatusOK, result)
	return 0
}

var (
	errorType   = reflect.TypeFor[error]()
	contextType = reflect.TypeFor[context.Context]()
)

// notCallable are methods with a role of their own, not for RPC.
var notCallable = map[string]bool{"ServeHTTP": true, "Alarm": true, "Bind": true}

// invoke calls an exported method by name with JSON arguments.
func invoke(ctx context.Context, obj any, method string, args []byte) ([]byte, abi.Status, error) {
	rm := rpcMethodOf(reflect.TypeOf(obj), method)
	if rm.index < 0 {
		var names []string
		t := reflect.TypeOf(obj)
		for i := 0; i < t.NumMethod(); i++ {
			if !notCallable[t.Method(i).Name] {
				names = append(names, t.Method(i).Name)
			}
		}
		return nil, abi.StatusNotFound, fmt.Errorf("%T has no method %q that can be called (it has: %s)", obj, method, strings.Join(names, ", "))
	}
	if !rm.shaped {
		return nil, abi.StatusInvalid, fmt.Errorf("%T.%s cannot be called: it must look like func([ctx context.Context,] [Args]) ([Result,] error)", obj, method)
	}
	in := make([]reflect.Value, 0, 2)
	if rm.ctx {
		in = append(in, reflect.ValueOf(ctx))
	}
	if rm.arg != nil {
		arg := reflect.New(rm.arg)
		if len(args) > 0 && string(args) != "null" {
			if err := unmarshalJSON(args, arg.Interface()); err != nil {
				return nil, abi.StatusInvalid, fmt.Errorf("arguments of %s: %w", method, err)
			}
		}
		in = append(in, arg.Elem())
	}
	m := reflect.ValueOf(obj).Method(rm.index)
	out := m.Call(in)
	if err, _ := out[len(out)-1].Interface().(error); err != nil {
		return nil, wharf.AnswerStatus(err), err // a host error or a sentinel keeps its status for the caller
	}
	if len(out) == 1 {
		return []byte("null"), abi.StatusOK, nil
	}
	b, err := marshalJSON(out[0].Interface())
	if err != nil {
		return nil, abi.StatusIO, fmt.Errorf("result of %s: %w", method, err)
	}
	return b, abi.StatusOK, nil
}

// alarm serves EventAlarm; retry counts the earlier failed attempts.
func (o *object) alarm(retry int) (status int32) {
	ev := o.event()
	defer recoverTo(ev, &status, "alarm")
	a, ok := o.value.(AlarmHandler)
	if !ok {
		ev.Log(abi.LogError, fmt.Sprintf("%T has an alarm but does not implement Alarm(retry int) error", o.value))
		return 1
	}
	if err := a.Alarm(retry); err != nil {
		ev.Log(abi.LogWarn, "alarm failed: "+wharf.Within(err).Error())
		return 1
	}
	return 0
}

// Namespace is a Durable Object binding as seen from a Worker or object.
type Namespace struct{ binding string }

// GetNamespace returns the namespace of a binding declared in wharf.toml.
// Called from init (or a package-level variable), a binding the manifest
// lacks makes the host refuse the module when it loads; called later, the
// binding's first use fails.
func GetNamespace(binding string) *Namespace {
	if _, told := toldBindings.LoadOrStore(binding, true); !told {
		wharf.Event(0).UseBinding(binding) // the host checks the list at load
	}
	return &Namespace{binding: binding}
}

// toldBindings are the bindings GetNamespace has told the host of: once
// is enough, for a handler that gets its namespace per request.
var toldBindings sync.Map // string → bool

// IDFromName returns the id the name maps to: always the same in this
// namespace.
func (ns *Namespace) IDFromName(name string) (string, error) {
	return wharf.Event(0).ObjectID(ns.binding, abi.IDFromName, name)
}

// NewUniqueID returns a new random id.
func (ns *Namespace) NewUniqueID() (string, error) {
	return wharf.Event(0).ObjectID(ns.binding, abi.IDUnique, "")
}

// IDFromString checks an id received as text; malformed ids and ids of
// other namespaces are errors.
func (ns *Namespace) IDFromString(s string) (string, error) {
	return wharf.Event(0).ObjectID(ns.binding, abi.IDFromString, s)
}

// Get returns a stub for the object with the given id.
func (ns *Namespace) Get(id string) *Stub { return &Stub{ns: ns.binding, id: id} }

// GetByName is Get(IDFromName(name)).
func (ns *Namespace) GetByName(name string) (*Stub, error) {
	id, err := ns.IDFromName(name)
	if err != nil {
		return nil, err
	}
	return ns.Get(id), nil
}

// Stub sends events to one object.
type Stub struct{ ns, id string }

// ID is the object's id.
func (s *Stub) ID() string { return s.id }

// checkID refuses an id that is not 64 characters before it reaches the
// host, which reads exactly that many bytes.
func (s *Stub) checkID() error {
	if len(s.id) != abi.ObjectIDLen {
		return fmt.Errorf("invalid Durable Object id %q: must be %d lowercase hexadecimal digits", s.id, abi.ObjectIDLen)
	}
	return nil
}

// Fetch sends an HTTP request to the object. The URL must be absolute (its
// host is up to you, e.g. http://object/path), but a request the Worker
// received may be passed on as it is: it goes with its own URL, made
// absolute from its Host (http://host/path?query).
func (s *Stub) Fetch(req *http.Request) (*http.Response, error) {
	if err := s.checkID(); err != nil {
		return nil, err
	}
	if req.URL != nil && !req.URL.IsAbs() && req.Host != "" {
		received, u := *req, *req.URL
		u.Scheme, u.Host = "http", req.Host
		received.URL, received.RequestURI = &u, ""
		req = &received
	}
	resp, err := roundTrip(req, func(ev wharf.Event, head []byte, flags uint32) (uint32, uint32, error) {
		return ev.ObjectFetch(s.ns, s.id, head, flags)
	})
	return resp, requestError(req, err)
}

// Call invokes an exported method of the object with args encoded as JSON
// and decodes its result into result (which may be nil). It is CallContext
// with context.Background().
//
// An error the method returns comes back as "call Method: " and its
// message, and it matches (errors.Is) each error of this package it
// matched in the method, returned as it is or wrapped
// (fmt.Errorf("loading config: %w", sdk.Within(err)), where err is what
// an Exec returned): ErrNotFound,
// ErrNotRunning, ErrTimeout and every other exported Err* value, and the
// abi.Status of a host error. Other values, your own sentinels and error
// types among them, do not travel: their message does.
func (s *Stub) Call(method string, args, result any) error {
	return s.CallContext(context.Background(), method, args, result)
}

// CallContext is Call on behalf of the request ctx belongs to (pass
// r.Context() in a handler): the host ties the call to that request's
// event, and ctx's end (a deadline, a cancel) stops the wait.
func (s *Stub) CallContext(ctx context.Context, method string, args, result any) error {
	if err := s.checkID(); err != nil {
		return err
	}
	data, err := marshalJSON(args)
	if err != nil {
		return fmt.Errorf("arguments of %s: %w", method, err)
	}
	ev := eventOf(ctx)
	h, rec, err := ev.ObjectCall(s.ns, s.id, method, data)
	if err != nil {
		return fmt.Errorf("call %s: %w", method, wharf.Within(err))
	}
	var out []byte
	var codes []string
	err = abi.StatusAgain // no answer yet
	if e := eventOfRecord(rec[:]); e.kind != 0 {
		// The object is idle on this instance: its event runs now, and the
		// caller waits for it like any event's (its writes may still have
		// to become durable before the answer is ready). It runs here
		// unless ctx can end: then on a runner of its own, so that ctx's
		// end stops the wait while the method runs on.
		if ctx.Done() == nil {
			e.run()
			out, codes, err = ev.ObjectCallResult(h) // answered as it ended, unless its writes are syncing
		} else {
			dispatch(e)
		}
	}
	if errors.Is(err, abi.StatusAgain) {
		if err := waitContext(ctx, &Pending{ev: ev, handle: h}); err != nil {
			ev.Close(h)
			return fmt.Errorf("call %s: %w", method, wharf.Within(err))
		}
		out, codes, err = ev.ObjectCallResult(h)
	}
	if err != nil {
		return fmt.Errorf("call %s: %w", method, wharf.Within(calleeError(err, codes)))
	}
	if result == nil {
		return nil
	}
	if err := unmarshalJSON(out, result); err != nil {
		return fmt.Errorf("call %s: decoding its result: %w", method, err)
	}
	return nil
}

// calleeError is what a failed call's result says: the called object's own
// error text, not wrapped again in the name of the import that fetched it,
// matching its status and the travelling errors of its codes.
func calleeError(err error, codes []string) error {
	var e *wharf.Error
	if !errors.As(err, &e) || e.Op != abi.ImportCallResult {
		return err
	}
	return MethodError(e.Status, e.Message, codes)
}

// MethodError is the error a Durable Object method's failure is at its
// caller, for a caller outside a plugin that gets the answer's status,
// message and codes (abi.CallError) from the host itself, as package
// wharftest does: it says message and matches status, the status's
// sentinel (ErrNotFound for NOTFOUND) and each of this package's errors
// the codes name, as Stub.Call's error does.
func MethodError(status abi.Status, message string, codes []string) error {
	return &remoteError{status: status, msg: message, travelled: travelled(codes)}
}

// remoteError is an error returned by a called object.
type remoteError struct {
	status    abi.Status
	msg       string
	travelled []error // the SDK's errors it matched in the object
}

func (e *remoteError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, ErrTooLarge) and friends work: the status,
// its sentinel and the errors that travelled.
func (e *remoteError) Unwrap() []error { return append(wharf.Causes(e.status), e.travelled...) }

// Storage is an object's durable storage: key-value pairs, SQL tables and
// one alarm. Keys are at most 2 KiB, values at most 128 KiB.
type Storage struct{ obj *object }

// Entry is one key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// Get returns the value of key and whether it exists.
func (s *Storage) Get(key string) ([]byte, bool, error) {
	ev, err := s.obj.current()
	if err != nil {
		return nil, false, err
	}
	v, err := ev.StorageGet(key)
	if errors.Is(err, abi.StatusNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// GetMany returns the values of the keys that exist.
func (s *Storage) GetMany(keys ...string) (map[string][]byte, error) {
	b := abi.NewFieldsBuilder(nil)
	for _, k := range keys {
		b.Add(k, "")
	}
	ev, err := s.obj.current()
	if err != nil {
		return nil, err
	}
	raw, err := ev.StorageGetMany(b.Bytes())
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	return out, abi.RangeFields(raw, func(k, v []byte) bool {
		out[string(k)] = v
		return true
	})
}

// Put stores value under key.
func (s *Storage) Put(key string, value []byte) error {
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	return ev.StoragePut(key, value)
}

// PutMany stores all entries, or none if one is invalid.
func (s *Storage) PutMany(entries map[string][]byte) error {
	b := abi.NewFieldsBuilder(nil)
	for k, v := range entries {
		b.Add(k, string(v))
	}
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	return ev.StoragePutMany(b.Bytes())
}

// Delete removes key and reports whether it existed.
func (s *Storage) Delete(key string) (bool, error) {
	ev, err := s.obj.current()
	if err != nil {
		return false, err
	}
	return ev.StorageDelete(key)
}

// DeleteMany removes keys and returns how many existed.
func (s *Storage) DeleteMany(keys ...string) (int, error) {
	b := abi.NewFieldsBuilder(nil)
	for _, k := range keys {
		b.Add(k, "")
	}
	ev, err := s.obj.current()
	if err != nil {
		return 0, err
	}
	return ev.StorageDeleteMany(b.Bytes())
}

// ListOptions select keys for List. Empty strings mean "not set".
type ListOptions struct {
	Start      string // first key included
	StartAfter string // first key excluded; wins over Start
	End        string // end key, excluded
	Prefix     string
	Reverse    bool
	Limit      int // 0 = all
}

// keyOpt is a ListOptions key as abi.ListOptions has it: nil when not set.
func keyOpt(k string) []byte {
	if k == "" {
		return nil
	}
	return []byte(k)
}

// List returns entries in key order (descending with Reverse). A list whose
// keys and values exceed 32 MiB fails, saying so: list a large object in
// parts (Limit, then StartAfter the last key).
func (s *Storage) List(o ListOptions) ([]Entry, error) {
	opts := abi.ListOptions{Start: keyOpt(o.Start), StartAfter: keyOpt(o.StartAfter), End: keyOpt(o.End),
		Prefix: keyOpt(o.Prefix), Reverse: o.Reverse, Limit: max(o.Limit, 0)}
	ev, err := s.obj.current()
	if err != nil {
		return nil, err
	}
	raw, err := ev.StorageList(opts.Encode(nil))
	if err != nil {
		return nil, err
	}
	var out []Entry
	return out, abi.RangeFields(raw, func(k, v []byte) bool {
		out = append(out, Entry{string(k), v})
		return true
	})
}

// DeleteAll removes every key, every SQL table and the alarm.
func (s *Storage) DeleteAll() error {
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	return ev.StorageDeleteAll()
}

// Transaction runs fn atomically: its writes are kept if it returns nil and
// undone if it returns an error or panics. It must end within its event: an
// event that ends with a transaction open (one a goroutine began) fails and
// loses its writes, and the late commit returns ErrEventOver (writes fn
// makes after that act for whichever event runs then, outside any
// transaction). Transactions nest when one runs inside another's fn; two
// goroutines must not run transactions of one object at the same time (the
// host ends the innermost one open, whichever goroutine asks).
func (s *Storage) Transaction(fn func() error) (err error) {
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	if err := ev.StorageTransaction(abi.TxBegin); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			ev.StorageTransaction(abi.TxRollback)
			panic(p)
		}
		if err != nil {
			ev.StorageTransaction(abi.TxRollback)
			return
		}
		err = s.obj.outlived(ev, ev.StorageTransaction(abi.TxCommit))
	}()
	return fn()
}

// SetAlarm schedules the object's alarm (one per object) at t.
func (s *Storage) SetAlarm(t time.Time) error {
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	return ev.AlarmSet(t.UnixMilli())
}

// GetAlarm returns the scheduled alarm, if any.
func (s *Storage) GetAlarm() (time.Time, bool, error) {
	ev, err := s.obj.current()
	if err != nil {
		return time.Time{}, false, err
	}
	ms, err := ev.AlarmGet()
	if errors.Is(err, abi.StatusNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.UnixMilli(ms), true, nil
}

// DeleteAlarm cancels the alarm.
func (s *Storage) DeleteAlarm() error {
	ev, err := s.obj.current()
	if err != nil {
		return err
	}
	return ev.AlarmDelete()
}
