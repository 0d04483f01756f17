package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/plugins"
)

// objectImports are the wharf functions for Durable Objects.
func (s *services) objectImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportRegisterClass, params(i32, i32), importRegisterClass),
		hostFunc(abi.ImportUseBinding, params(i32, i32), importUseBinding),
		hostFunc(abi.ImportObjectID, params(i32, i32, i32, i32, i32, i32), s.importObjectID),
		hostFunc(abi.ImportObjectSelf, params(i32, i32, i32), importObjectSelf),
		hostFunc(abi.ImportObjectFetch, params(i32, i32, i32, i32, i32, i32, i32, i32), s.importObjectFetch),
		hostFunc(abi.ImportObjectCall, params(i32, i32, i32, i32, i32, i32, i32, i32, i32), s.importObjectCall),
		hostFunc(abi.ImportCallResult, params(i32, i32, i32, i32), importCallResult),
		hostFunc(abi.ImportCallRequest, params(i32, i32, i32, i32), importCallRequest),
		hostFunc(abi.ImportCallReturn, params(i32, i32, i32, i32), importCallReturn),
		hostFunc(abi.ImportStorageGet, params(i32, i32, i32, i32, i32), withDBInput(importStorageGet)),
		hostFunc(abi.ImportStoragePut, params(i32, i32, i32, i32), withDBInput(importStoragePut)),
		hostFunc(abi.ImportStorageDelete, params(i32, i32, i32), withDBInput(importStorageDelete)),
		hostFunc(abi.ImportStorageGetMany, params(i32, i32, i32, i32, i32), withDBInput(importStorageGetMany)),
		hostFunc(abi.ImportStoragePutMany, params(i32, i32), withDBInput(importStoragePutMany)),
		hostFunc(abi.ImportStorageDeleteMany, params(i32, i32, i32), withDBInput(importStorageDeleteMany)),
		hostFunc(abi.ImportStorageList, params(i32, i32, i32, i32, i32), withDBInput(importStorageList)),
		hostFunc(abi.ImportStorageDeleteAll, nil, withDB(importStorageDeleteAll)),
		hostFunc(abi.ImportStorageTransaction, params(i32), withDB(importStorageTransaction)),
		hostFunc(abi.ImportSQLExec, params(i32, i32, i32, i32, i32), withDB(importSQLExec)),
		hostFunc(abi.ImportCursorRead, params(i32, i32, i32, i32), importCursorRead),
		hostFunc(abi.ImportAlarmSet, params(i64), withDB(importAlarmSet)),
		hostFunc(abi.ImportAlarmGet, params(i32), withDB(importAlarmGet)),
		hostFunc(abi.ImportAlarmDelete, nil, withDB(importAlarmDelete)),
	}
}

func importRegisterClass(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	name, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	if len(name) == 0 {
		return fmt.Errorf("%w: empty class name", abi.StatusInvalid)
	}
	return g.inst.declare(&g.inst.classes, "classes", name)
}

// Declarations (register_class, use_binding) bound what a guest makes the
// host keep: the list is read once, after serve, so later ones are dropped.
const (
	maxDeclarations    = 1024
	maxDeclarationSize = 1024
)

// declare adds name to list unless it is there or serve was called.
func (in *instance) declare(list *[]string, what string, name []byte) error {
	if in.serving || slices.Contains(*list, string(name)) {
		return nil
	}
	if len(name) > maxDeclarationSize {
		return fmt.Errorf("%w: name of %d bytes, the limit is %d", abi.StatusTooLarge, len(name), maxDeclarationSize)
	}
	if len(*list) >= maxDeclarations {
		return fmt.Errorf("%w: %d %s declared, the limit is %d", abi.StatusTooLarge, len(*list), what, maxDeclarations)
	}
	*list = append(*list, string(name))
	return nil
}

// binding finds the namespace named by a guest string.
func (s *services) binding(mem plugins.Memory, ptr, n uint32) (*objects.Namespace, error) {
	if s.objects == nil {
		return nil, fmt.Errorf("%w: the manifest declares no Durable Object bindings", abi.StatusNotFound)
	}
	name, err := readMem(mem, ptr, n)
	if err != nil {
		return nil, err
	}
	ns, err := s.objects.NamespaceNamed(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", abi.StatusNotFound, err)
	}
	return ns, nil
}

// objectIDArg reads a 64-byte id and checks it belongs to ns.
func objectIDArg(mem plugins.Memory, ns *objects.Namespace, ptr uint32) (string, error) {
	raw, err := readMem(mem, ptr, abi.ObjectIDLen)
	if err != nil {
		return "", err
	}
	id, err := ns.IDs().Parse(string(raw))
	if err != nil {
		return "", fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return id, nil
}

// importUseBinding records a binding the guest uses; NewWorker checks the
// first instance's list against the manifest.
func importUseBinding(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	name, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	return g.inst.declare(&g.inst.bindings, "bindings", name)
}

func (s *services) importObjectID(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	ns, err := s.binding(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	arg, err := readMem(mem, u32(a[3]), u32(a[4]))
	if err != nil {
		return err
	}
	var id string
	switch u32(a[2]) {
	case abi.IDFromName:
		id = ns.IDFromName(string(arg))
	case abi.IDUnique:
		id = ns.IDs().Unique()
	case abi.IDFromString:
		if id, err = ns.IDs().Parse(string(arg)); err != nil {
			return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
		}
	default:
		return fmt.Errorf("%w: unknown id kind %d", abi.StatusInvalid, u32(a[2]))
	}
	if !mem.Write(u32(a[5]), []byte(id)) {
		return fmt.Errorf("%w: id buffer is outside guest memory", abi.StatusFault)
	}
	return nil
}

func importObjectSelf(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if g.object == nil {
		return fmt.Errorf("%w: the call is not for an event of a Durable Object", abi.StatusNotFound)
	}
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldClass, g.object.obj.Class())
	b.Add(abi.FieldID, g.object.obj.ID())
	return writeOut(mem, u32(a[0]), u32(a[1]), u32(a[2]), b.Bytes())
}

// target reads the (binding, binding_len, id) arguments that start
// object_fetch and object_call.
// An event calling its own object is refused at once: the call would wait
// for an event queued behind the caller's own, until the deadline. So is
// a call to an object whose event waits for this one, through the calls
// that led here (A calls B, which calls A): each would wait for the other.
func (s *services) target(g *guest, mem plugins.Memory, a []uint64) (*objects.Namespace, string, error) {
	ns, err := s.binding(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return nil, "", err
	}
	id, err := objectIDArg(mem, ns, u32(a[2]))
	if err != nil || g.object == nil {
		return ns, id, err
	}
	if g.object.obj.Class() == ns.Class() && g.object.obj.ID() == id {
		return ns, id, fmt.Errorf("%w: %s#%s called itself: an object's events run one at a time, so the call would wait for this one to end; call the method directly", abi.StatusInvalid, ns.Class(), id[:8])
	}
	for w := waitingCaller(g.ctx); w != nil; w = w.next {
		if w.class == ns.Class() && w.id == id && !w.ended() {
			return ns, id, cycleError(g, waitingCaller(g.ctx), w)
		}
	}
	return ns, id, nil
}

// cycleError says that g's object called the object of last, which waits
// for it through the waiters from first to last: the cycle, named only once
// found (every object call checks for one).
func cycleError(g *guest, first, last *waiter) error {
	path := []string{objectName(g.object.obj.Class(), g.object.obj.ID())}
	for w := first; ; w = w.next {
		path = append(path, objectName(w.class, w.id))
		if w == last {
			break
		}
	}
	slices.Reverse(path)
	return fmt.Errorf("%w: %s called %s, whose event waits for this one (%s): an object's events run one at a time, so each would wait for the other until the time limit",
		abi.StatusInvalid, path[len(path)-1], path[0], strings.Join(append(path, path[0]), " -> "))
}

// objectName names an object in errors: its class and the start of its id.
func objectName(class, id string) string { return class + "#" + id[:8] }

// waiter is an object whose event waits for an object call or fetch, which
// carries it in its context (callContext); next is the waiter that object's
// own event was called by, if any.
type waiter struct {
	class, id string
	done      <-chan struct{} // closed when the waiting event ends
	next      *waiter
}

// ended reports whether the waiting event is over (it no longer waits).
func (w *waiter) ended() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

type waiterKey struct{}

// waitingCaller is the object whose event waits for the event ctx belongs
// to (the caller of an object's call or fetch event), or nil.
func waitingCaller(ctx context.Context) *waiter {
	w, _ := ctx.Value(waiterKey{}).(*waiter)
	return w
}

// callContext is the host's context, carrying the chain of objects whose
// events wait for a call or fetch g makes: g's object (if any) and those
// waiting for g. The called object's event context derives from it.
func (s *services) callContext(g *guest) context.Context {
	if g.object == nil {
		return s.base
	}
	return context.WithValue(s.base, waiterKey{}, &waiter{class: g.object.obj.Class(), id: g.object.obj.ID(), done: g.done, next: waitingCaller(g.ctx)})
}

// objectFetch is object_fetch(ns, ns_len, id, head, head_len, flags,
// body_out, pending_out): like fetch, to a Durable Object.
func (s *services) importObjectFetch(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	ns, id, err := s.target(g, mem, a)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[3]), u32(a[4]))
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[7]), 0); err != nil {
		return err
	}
	req, cancel, err := s.outboundRequest(s.callContext(g), g, mem, raw, u32(a[5])&abi.FetchBodyStream != 0, u32(a[6]), (*url.URL).IsAbs, "an object fetch needs an absolute URL")
	if err != nil {
		return err
	}
	req.RequestURI = req.URL.RequestURI()
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, u32(a[7]), abi.KindPending, p); err != nil {
		return err
	}
	s.objects.SendFetch(ns, id, req, objects.NewResponse(func(r *http.Response, err error) {
		if err != nil {
			cancel()
			p.Resolve(nil, fmt.Errorf("%w: %s %s: %w", abi.StatusIO, ns.Class(), id[:8], err))
			return
		}
		p.Resolve(&fetchedResponse{resp: r, cancel: cancel}, nil)
	}))
	return nil
}

func (s *services) importObjectCall(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	ns, id, err := s.target(g, mem, a)
	if err != nil {
		return err
	}
	method, err := readMem(mem, u32(a[3]), u32(a[4]))
	if err != nil {
		return err
	}
	args, err := readMem(mem, u32(a[5]), u32(a[6]))
	if err != nil {
		return err
	}
	if len(method) == 0 {
		return fmt.Errorf("%w: empty method name", abi.StatusInvalid)
	}
	recOut := u32(a[8])
	if _, err := readMem(mem, recOut, abi.EventRecordSize); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(s.callContext(g))
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, u32(a[7]), abi.KindPending, p); err != nil {
		return err
	}
	call := objects.NewCall(string(method), append([]byte(nil), args...), p)
	s.objects.SendCall(ctx, ns, id, call, g.inst)
	var rec [abi.EventRecordSize]byte // kind 0: nothing to run here
	g.inst.takeCall(call, rec[:])
	mem.Write(recOut, rec[:]) // in bounds: checked above
	return nil
}

// importCallResult is call_result(pending, buf, cap, n_out): the answer of
// an object_call.
func importCallResult(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	h := handleArg(a[0])
	obj, err := g.table.Lookup(h, abi.KindPending)
	if err != nil {
		return err
	}
	p := obj.(*guestio.Pending)
	if !p.Ready() {
		return abi.StatusAgain
	}
	v, err := p.Result()
	if err != nil {
		g.table.Remove(h)
		if codes := objects.ErrorCodes(err); codes != nil {
			// The codes of the object's error go with its status, if the
			// buffer holds them (*n_out says their size either way).
			_ = writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), abi.CallError{Codes: codes}.Encode(nil))
		}
		return err
	}
	switch v := v.(type) {
	case []byte:
		if err := writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), v); err != nil {
			return err
		}
	case *outcome:
		// Its handles belong to the scope that made the call, whichever
		// scope takes the result: an exec still ends with its event.
		owner := g
		if e, ok := g.table.Held(h); ok {
			owner = e.Owner
		}
		if err := v.handOver(owner, mem, u32(a[1]), u32(a[2]), u32(a[3])); err != nil {
			if errors.Is(err, abi.StatusTooLarge) { // handOver freed the result
				g.table.Remove(h)
			}
			return err
		}
	default:
		return fmt.Errorf("%w: pending handle %d is not a call (a fetch is read with fetch_result, a forward is only polled)", abi.StatusInvalid, h)
	}
	g.table.Remove(h)
	return nil
}

func importCallRequest(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindCall)
	if err != nil {
		return err
	}
	c := obj.(*objects.Call)
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMethod, c.Method())
	b.Add(abi.FieldArgs, string(c.Args()))
	return writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), b.Bytes())
}

// importCallReturn is call_return(call, status, ptr, len): the result bytes
// for status 0, else an error message, or an abi.CallError with
// abi.CallReturnRecord in status.
func importCallReturn(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindCall)
	if err != nil {
		return err
	}
	data, err := readMem(mem, u32(a[2]), u32(a[3]))
	if err != nil {
		return err
	}
	status := u32(a[1])
	var codes []string
	if status&abi.CallReturnRecord != 0 {
		status &^= abi.CallReturnRecord
		if status == uint32(abi.StatusOK) {
			return fmt.Errorf("%w: call_return: an error record (flag %#x) needs an error status, not 0", abi.StatusInvalid, abi.CallReturnRecord)
		}
		rec, err := abi.DecodeCallError(data)
		if err != nil {
			return fmt.Errorf("%w: call_return's error record: %w", abi.StatusInvalid, err)
		}
		data, codes = []byte(rec.Message), rec.Codes
	}
	return obj.(*objects.Call).Return(abi.Status(status), data, codes)
}

// db returns the storage of the object the guest belongs to.
func (g *guest) db() (*storage.DB, error) {
	if g.object == nil || g.object.obj.DB() == nil {
		return nil, fmt.Errorf("%w: storage is only available inside a Durable Object", abi.StatusUnsupported)
	}
	return g.object.obj.DB(), nil
}

// storageFunc is an import that works on the calling object's storage.
type storageFunc func(db *storage.DB, g *guest, mem plugins.Memory, a []uint64) error

// withDB adapts a storageFunc; a Worker calling it gets UNSUPPORTED.
func withDB(fn storageFunc) importFunc {
	return func(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
		db, err := g.db()
		if err != nil {
			return err
		}
		err = fn(db, g, mem, a)
		if storage.HostFault(err) {
			g.object.obj.StorageFailed(err)
		}
		return err
	}
}

// withDBInput is withDB for imports whose first two arguments are a
// (pointer, length) input, passed to fn as in.
func withDBInput(fn func(db *storage.DB, mem plugins.Memory, in []byte, a []uint64) error) importFunc {
	return withDB(func(db *storage.DB, _ *guest, mem plugins.Memory, a []uint64) error {
		in, err := readMem(mem, u32(a[0]), u32(a[1]))
		if err != nil {
			return err
		}
		return fn(db, mem, in, a)
	})
}

// storageErr maps storage errors a guest can cause to statuses.
func storageErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrKeyTooLarge), errors.Is(err, storage.ErrValueTooLarge),
		errors.Is(err, storage.ErrBatchTooLarge), errors.Is(err, storage.ErrResultTooLarge):
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	}
	if storage.HostFault(err) {
		return fmt.Errorf("%w: %w", abi.StatusIO, err)
	}
	// The caller's mistake: a bad key, reserved name, SQLite's own message.
	return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
}

func importStorageGet(db *storage.DB, mem plugins.Memory, key []byte, a []uint64) error {
	v, ok, err := db.Get(key)
	if err != nil {
		return storageErr(err)
	}
	if !ok {
		if err := writeU32(mem, u32(a[4]), 0); err != nil {
			return err
		}
		return abi.StatusNotFound
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), v)
}

func importStoragePut(db *storage.DB, mem plugins.Memory, key []byte, a []uint64) error {
	value, err := readMem(mem, u32(a[2]), u32(a[3]))
	if err != nil {
		return err
	}
	return storageErr(db.Put(key, value))
}

func importStorageDelete(db *storage.DB, mem plugins.Memory, key []byte, a []uint64) error {
	existed, err := db.Delete(key)
	if err != nil {
		return storageErr(err)
	}
	return writeU32(mem, u32(a[2]), b2u(existed))
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// fieldNames returns the names of an encoded field list (batch keys).
func fieldNames(raw []byte) ([][]byte, error) {
	var keys [][]byte
	err := abi.RangeFields(raw, func(name, _ []byte) bool {
		keys = append(keys, name)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return keys, nil
}

func encodePairs(pairs []storage.Pair) []byte {
	b := abi.NewFieldsBuilder(nil)
	for _, p := range pairs {
		b.Add(string(p.Key), string(p.Value))
	}
	return b.Bytes()
}

func importStorageGetMany(db *storage.DB, mem plugins.Memory, raw []byte, a []uint64) error {
	keys, err := fieldNames(raw)
	if err != nil {
		return err
	}
	pairs, err := db.GetMany(keys)
	if err != nil {
		return storageErr(err)
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), encodePairs(pairs))
}

func importStoragePutMany(db *storage.DB, _ plugins.Memory, raw []byte, _ []uint64) error {
	var pairs []storage.Pair
	if err := abi.RangeFields(raw, func(k, v []byte) bool {
		pairs = append(pairs, storage.Pair{Key: k, Value: v})
		return true
	}); err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return storageErr(db.PutMany(pairs))
}

func importStorageDeleteMany(db *storage.DB, mem plugins.Memory, raw []byte, a []uint64) error {
	keys, err := fieldNames(raw)
	if err != nil {
		return err
	}
	n, err := db.DeleteMany(keys)
	if err != nil {
		return storageErr(err)
	}
	return writeU32(mem, u32(a[2]), uint32(n))
}

func importStorageList(db *storage.DB, mem plugins.Memory, raw []byte, a []uint64) error {
	opts, err := abi.DecodeListOptions(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	pairs, err := db.List(storage.ListOptions(opts))
	if err != nil {
		return storageErr(err)
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), encodePairs(pairs))
}

func importStorageDeleteAll(db *storage.DB, g *guest, _ plugins.Memory, _ []uint64) error {
	// The alarm index keeps its entry: if this event fails the alarm comes
	// back, and a stale entry is dropped when it fires and finds nothing.
	if err := db.DeleteAll(); err != nil {
		return storageErr(err)
	}
	// The object's persistent container directories go with its storage
	// (at once: a failed event does not bring them back).
	if err := os.RemoveAll(g.object.obj.PersistDir()); err != nil {
		return fmt.Errorf("%w: removing persistent directories: %w", abi.StatusIO, err)
	}
	return nil
}

func importStorageTransaction(db *storage.DB, _ *guest, _ plugins.Memory, a []uint64) error {
	switch u32(a[0]) {
	case abi.TxBegin:
		return storageErr(db.BeginTransaction())
	case abi.TxCommit:
		return storageErr(db.EndTransaction(true))
	case abi.TxRollback:
		return storageErr(db.EndTransaction(false))
	}
	return fmt.Errorf("%w: unknown transaction operation %d", abi.StatusInvalid, u32(a[0]))
}

// decodeSQLArgs turns a typed field list into driver values.
func decodeSQLArgs(raw []byte) ([]any, error) {
	var args []any
	var bad error
	err := abi.RangeFields(raw, func(tag, v []byte) bool {
		switch string(tag) {
		case abi.SQLNull:
			args = append(args, nil)
		case abi.SQLInt, abi.SQLFloat:
			if len(v) != 8 {
				bad = fmt.Errorf("%w: %s argument must be 8 bytes", abi.StatusInvalid, tag)
				return false
			}
			u := binary.LittleEndian.Uint64(v)
			if string(tag) == abi.SQLInt {
				args = append(args, int64(u))
			} else {
				args = append(args, math.Float64frombits(u))
			}
		case abi.SQLText:
			args = append(args, string(v))
		case abi.SQLBlob:
			args = append(args, append([]byte{}, v...))
		default:
			bad = fmt.Errorf("%w: unknown SQL value type %q", abi.StatusInvalid, abi.Excerpt(string(tag)))
			return false
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return args, bad
}

// encodeSQLResult lays out columns, rows and counts as a field list:
// ":column" per column, then ":row" before each row's typed values, then
// ":rows_written".
func encodeSQLResult(r *storage.Result) []byte {
	b := abi.NewFieldsBuilder(nil)
	for _, c := range r.Columns {
		b.Add(abi.FieldColumn, c)
	}
	var num [8]byte
	for _, row := range r.Rows {
		b.Add(abi.FieldRow, "")
		for _, v := range row {
			switch x := v.(type) {
			case nil:
				b.Add(abi.SQLNull, "")
			case int64:
				binary.LittleEndian.PutUint64(num[:], uint64(x))
				b.Add(abi.SQLInt, string(num[:]))
			case float64:
				binary.LittleEndian.PutUint64(num[:], math.Float64bits(x))
				b.Add(abi.SQLFloat, string(num[:]))
			case string:
				b.Add(abi.SQLText, x)
			case []byte:
				b.Add(abi.SQLBlob, string(x))
			case bool:
				binary.LittleEndian.PutUint64(num[:], uint64(b2u(x)))
				b.Add(abi.SQLInt, string(num[:]))
			case time.Time:
				b.Add(abi.SQLText, x.Format(time.RFC3339Nano))
			default:
				b.Add(abi.SQLText, fmt.Sprint(x))
			}
		}
	}
	b.Add(abi.FieldRowsWritten, strconv.FormatInt(r.RowsWritten, 10))
	return b.Bytes()
}

// cursor is the encoded result of one SQL statement, kept so a guest can
// retry a read with a bigger buffer without running the statement again.
type cursor struct{ data []byte }

func importSQLExec(db *storage.DB, g *guest, mem plugins.Memory, a []uint64) error {
	query, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[2]), u32(a[3]))
	if err != nil {
		return err
	}
	args, err := decodeSQLArgs(raw)
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[4]), 0); err != nil {
		return err
	}
	res, err := db.ExecContext(g.ctx, string(query), args...)
	if err != nil && g.ctx.Err() != nil { // interrupted: the event is over
		return fmt.Errorf("%w: %w", abi.StatusTimeout, context.Cause(g.ctx))
	}
	if err != nil {
		return storageErr(err)
	}
	return g.newHandle(mem, u32(a[4]), abi.KindCursor, &cursor{data: encodeSQLResult(res)})
}

func importCursorRead(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindCursor)
	if err != nil {
		return err
	}
	return writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), obj.(*cursor).data)
}

func importAlarmSet(db *storage.DB, g *guest, _ plugins.Memory, a []uint64) error {
	at := time.UnixMilli(int64(a[0]))
	if err := db.SetAlarm(at); err != nil {
		return storageErr(err)
	}
	if err := g.object.obj.ScheduleAlarm(at); err != nil {
		return fmt.Errorf("%w: alarm index: %w", abi.StatusIO, err)
	}
	return nil
}

func importAlarmGet(db *storage.DB, _ *guest, mem plugins.Memory, a []uint64) error {
	at, ok, err := db.Alarm()
	if err != nil {
		return storageErr(err)
	}
	if !ok {
		return abi.StatusNotFound
	}
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(at.UnixMilli()))
	if !mem.Write(u32(a[0]), buf[:]) {
		return fmt.Errorf("%w: alarm output is outside guest memory", abi.StatusFault)
	}
	return nil
}

func importAlarmDelete(db *storage.DB, _ *guest, _ plugins.Memory, _ []uint64) error {
	return storageErr(db.DeleteAlarm()) // the index entry goes when it fires (see storage_delete_all)
}
