package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"
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
// so the object's fields need no locks; events of different objects run in
// parallel in their own instances. An event that fails (a panic, a trap, a
// timeout) loses the object's in-memory state and that event's storage
// writes; the next event constructs the object again from its storage. The
// response to an event leaves only once the storage writes made before it
// are durable.

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
}

// Constructor makes an object from its state. The object may implement
// http.Handler (fetch), AlarmHandler (alarms), and exported methods called
// with Stub.Call: func(Args) (Result, error), func(Args) error,
// func() (Result, error) or func() error, with JSON-encodable types.
type Constructor func(state *ObjectState) any

// AlarmHandler is implemented by objects that use alarms. retry counts the
// earlier failed attempts; returning an error schedules another.
type AlarmHandler interface {
	Alarm(retry int) error
}

var (
	classes = map[string]Constructor{}
	current any // the object this instance is dedicated to
)

// RegisterClass registers a Durable Object class. Call it from an init
// function, like Serve.
func RegisterClass(name string, ctor Constructor) {
	classes[name] = ctor
	if err := wharf.RegisterClass(name); err != nil && !errors.Is(err, abi.StatusUnsupported) {
		panic(fmt.Sprintf("registering class %s: %v", name, err))
	}
}

// onObjectNew is the body of wharf_object_new: it constructs the object.
func onObjectNew() (status int32) {
	defer recoverTo(&status, "constructor")
	raw, err := wharf.ObjectSelf()
	if err != nil {
		wharf.Log(abi.LogError, err.Error())
		return 1
	}
	st := &ObjectState{Storage: &Storage{}, Container: &Container{}}
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
		wharf.Log(abi.LogError, fmt.Sprintf("class %q is not registered in this module", st.Class))
		return 1
	}
	current = ctor(st)
	return 0
}

// recoverTo turns a panic in an object's code into a failed event.
func recoverTo(status *int32, what string) {
	if p := recover(); p != nil {
		wharf.Log(abi.LogError, fmt.Sprintf("panic in %s: %v\n%s", what, p, debug.Stack()))
		*status = 1
	}
}

// onObjectFetch routes a fetch to the object's ServeHTTP.
func objectHandler() http.Handler {
	if h, ok := current.(http.Handler); ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("%T does not handle fetch (implement http.Handler)", current), http.StatusNotImplemented)
	})
}

// onCall is the body of wharf_on_call.
func onCall(call uint32) (status int32) {
	defer func() {
		if p := recover(); p != nil { // fail the event; the host tells the caller its request id, never the panic
			wharf.Log(abi.LogError, fmt.Sprintf("panic in %T call: %v\n%s", current, p, debug.Stack()))
			status = 1
		}
	}()
	raw, err := wharf.CallRequest(call)
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
		if h, ok := current.(interface{ containerExited() }); ok {
			h.containerExited()
		}
		wharf.CallReturn(call, abi.StatusOK, nil)
		return 0
	}
	result, st, err := invoke(current, method, args)
	if err != nil {
		wharf.CallReturn(call, st, []byte(err.Error()))
		return 0
	}
	wharf.CallReturn(call, abi.StatusOK, result)
	return 0
}

var errorType = reflect.TypeFor[error]()

// notCallable are methods with a role of their own, not for RPC.
var notCallable = map[string]bool{"ServeHTTP": true, "Alarm": true, "Bind": true}

// invoke calls an exported method by name with JSON arguments.
func invoke(obj any, method string, args []byte) ([]byte, abi.Status, error) {
	m := reflect.ValueOf(obj).MethodByName(method)
	if !m.IsValid() || notCallable[method] {
		var names []string
		t := reflect.TypeOf(obj)
		for i := 0; i < t.NumMethod(); i++ {
			if !notCallable[t.Method(i).Name] {
				names = append(names, t.Method(i).Name)
			}
		}
		return nil, abi.StatusNotFound, fmt.Errorf("%T has no method %q that can be called (it has: %s)", obj, method, strings.Join(names, ", "))
	}
	t := m.Type()
	if t.NumIn() > 1 || t.NumOut() == 0 || t.NumOut() > 2 || !t.Out(t.NumOut()-1).Implements(errorType) {
		return nil, abi.StatusInvalid, fmt.Errorf("%T.%s cannot be called: it must look like func([Args]) ([Result,] error)", obj, method)
	}
	var in []reflect.Value
	if t.NumIn() == 1 {
		arg := reflect.New(t.In(0))
		if len(args) > 0 && string(args) != "null" {
			if err := json.Unmarshal(args, arg.Interface()); err != nil {
				return nil, abi.StatusInvalid, fmt.Errorf("arguments of %s: %w", method, err)
			}
		}
		in = append(in, arg.Elem())
	}
	out := m.Call(in)
	if err, _ := out[len(out)-1].Interface().(error); err != nil {
		status := abi.StatusIO
		errors.As(err, &status) // a host error keeps its status for the caller
		return nil, status, err
	}
	if len(out) == 1 {
		return []byte("null"), abi.StatusOK, nil
	}
	b, err := json.Marshal(out[0].Interface())
	if err != nil {
		return nil, abi.StatusIO, fmt.Errorf("result of %s: %w", method, err)
	}
	return b, abi.StatusOK, nil
}

// onAlarm is the body of wharf_on_alarm.
func onAlarm(retry int32) (status int32) {
	defer recoverTo(&status, "alarm")
	a, ok := current.(AlarmHandler)
	if !ok {
		wharf.Log(abi.LogError, fmt.Sprintf("%T has an alarm but does not implement Alarm(retry int) error", current))
		return 1
	}
	if err := a.Alarm(int(retry)); err != nil {
		wharf.Log(abi.LogWarn, "alarm failed: "+err.Error())
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
	wharf.UseBinding(binding) // the host checks the list at load
	return &Namespace{binding: binding}
}

// IDFromName returns the id the name maps to: always the same in this
// namespace.
func (ns *Namespace) IDFromName(name string) (string, error) {
	return wharf.ObjectID(ns.binding, abi.IDFromName, name)
}

// NewUniqueID returns a new random id.
func (ns *Namespace) NewUniqueID() (string, error) {
	return wharf.ObjectID(ns.binding, abi.IDUnique, "")
}

// IDFromString checks an id received as text; malformed ids and ids of
// other namespaces are errors.
func (ns *Namespace) IDFromString(s string) (string, error) {
	return wharf.ObjectID(ns.binding, abi.IDFromString, s)
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
// host is up to you, e.g. http://object/path).
func (s *Stub) Fetch(req *http.Request) (*http.Response, error) {
	if err := s.checkID(); err != nil {
		return nil, err
	}
	return roundTrip(req, func(head []byte, flags uint32) (uint32, uint32, error) {
		return wharf.ObjectFetch(s.ns, s.id, head, flags)
	})
}

// Call invokes an exported method of the object with args encoded as JSON
// and decodes its result into result (which may be nil).
func (s *Stub) Call(method string, args, result any) error {
	if err := s.checkID(); err != nil {
		return err
	}
	data, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("arguments of %s: %w", method, err)
	}
	h, err := wharf.ObjectCall(s.ns, s.id, method, data)
	if err != nil {
		return err
	}
	if _, err := Select(-1, &Pending{handle: h}); err != nil {
		wharf.Close(h)
		return err
	}
	out, err := wharf.CallResult(h)
	if err != nil {
		return fmt.Errorf("call %s: %w", method, calleeError(err))
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(out, result)
}

// calleeError is what a failed call's result says: the called object's own
// error text (the host puts its status in front, which the error matches
// instead), not wrapped again in the name of the import that fetched it.
func calleeError(err error) error {
	var e *wharf.Error
	if !errors.As(err, &e) || e.Op != abi.ImportCallResult {
		return err
	}
	return &remoteError{status: e.Status, msg: strings.TrimPrefix(e.Message, e.Status.String()+": ")}
}

// remoteError is an error returned by a called object.
type remoteError struct {
	status abi.Status
	msg    string
}

func (e *remoteError) Error() string { return e.msg }

// Unwrap makes errors.Is(err, abi.StatusTooLarge) and friends work.
func (e *remoteError) Unwrap() error { return e.status }

// Storage is an object's durable storage: key-value pairs, SQL tables and
// one alarm. Keys are at most 2 KiB, values at most 128 KiB.
type Storage struct{}

// Entry is one key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// Get returns the value of key and whether it exists.
func (*Storage) Get(key string) ([]byte, bool, error) {
	v, err := wharf.StorageGet(key)
	if errors.Is(err, abi.StatusNotFound) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// GetMany returns the values of the keys that exist.
func (*Storage) GetMany(keys ...string) (map[string][]byte, error) {
	b := abi.NewFieldsBuilder(nil)
	for _, k := range keys {
		b.Add(k, "")
	}
	raw, err := wharf.StorageGetMany(b.Bytes())
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
func (*Storage) Put(key string, value []byte) error { return wharf.StoragePut(key, value) }

// PutMany stores all entries, or none if one is invalid.
func (*Storage) PutMany(entries map[string][]byte) error {
	b := abi.NewFieldsBuilder(nil)
	for k, v := range entries {
		b.Add(k, string(v))
	}
	return wharf.StoragePutMany(b.Bytes())
}

// Delete removes key and reports whether it existed.
func (*Storage) Delete(key string) (bool, error) { return wharf.StorageDelete(key) }

// DeleteMany removes keys and returns how many existed.
func (*Storage) DeleteMany(keys ...string) (int, error) {
	b := abi.NewFieldsBuilder(nil)
	for _, k := range keys {
		b.Add(k, "")
	}
	return wharf.StorageDeleteMany(b.Bytes())
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

// List returns entries in key order (descending with Reverse).
func (*Storage) List(o ListOptions) ([]Entry, error) {
	b := abi.NewFieldsBuilder(nil)
	for name, v := range map[string]string{abi.ListStart: o.Start, abi.ListStartAfter: o.StartAfter, abi.ListEnd: o.End, abi.ListPrefix: o.Prefix} {
		if v != "" {
			b.Add(name, v)
		}
	}
	if o.Reverse {
		b.Add(abi.ListReverse, "1")
	}
	if o.Limit > 0 {
		b.Add(abi.ListLimit, fmt.Sprint(o.Limit))
	}
	raw, err := wharf.StorageList(b.Bytes())
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
func (*Storage) DeleteAll() error { return wharf.StorageDeleteAll() }

// Transaction runs fn atomically: its writes are kept if it returns nil and
// undone if it returns an error or panics.
func (*Storage) Transaction(fn func() error) (err error) {
	if err := wharf.StorageTransaction(abi.TxBegin); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			wharf.StorageTransaction(abi.TxRollback)
			panic(p)
		}
		if err != nil {
			wharf.StorageTransaction(abi.TxRollback)
			return
		}
		err = wharf.StorageTransaction(abi.TxCommit)
	}()
	return fn()
}

// SetAlarm schedules the object's alarm (one per object) at t.
func (*Storage) SetAlarm(t time.Time) error { return wharf.AlarmSet(t.UnixMilli()) }

// GetAlarm returns the scheduled alarm, if any.
func (*Storage) GetAlarm() (time.Time, bool, error) {
	ms, err := wharf.AlarmGet()
	if errors.Is(err, abi.StatusNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.UnixMilli(ms), true, nil
}

// DeleteAlarm cancels the alarm.
func (*Storage) DeleteAlarm() error { return wharf.AlarmDelete() }
