package wharf

import (
	"encoding/binary"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// RegisterClass tells the host the module implements a Durable Object class.
func (ev Event) RegisterClass(name string) error {
	return ev.check("register_class", registerClass(uint32(ev), strPtr(name), uint32(len(name))))
}

// UseBinding tells the host the module uses a Durable Object binding, so
// one missing from the manifest is refused when the module loads.
func (ev Event) UseBinding(name string) error {
	return ev.check("use_binding", useBinding(uint32(ev), strPtr(name), uint32(len(name))))
}

// ObjectID makes an id in the namespace of binding ns; how is one of
// abi.IDFromName, abi.IDUnique and abi.IDFromString.
func (ev Event) ObjectID(ns string, how uint32, arg string) (string, error) {
	var out [abi.ObjectIDLen]byte
	st := objectID(uint32(ev), strPtr(ns), uint32(len(ns)), how, strPtr(arg), uint32(len(arg)), unsafe.Pointer(&out[0]))
	if err := ev.check("object_id", st); err != nil {
		return "", err
	}
	return string(out[:]), nil
}

// ObjectSelf returns the encoded class and id of the object the instance
// belongs to.
func (ev Event) ObjectSelf() ([]byte, error) {
	return ev.readInto("object_self", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return objectSelf(uint32(ev), p, c, n)
	})
}

// ObjectFetch sends a request to an object; see Fetch.
func (ev Event) ObjectFetch(ns, id string, head []byte, flags uint32) (body, pending uint32, err error) {
	st := objectFetch(uint32(ev), strPtr(ns), uint32(len(ns)), strPtr(id), ptr(head), uint32(len(head)), flags,
		unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, ev.check("object_fetch", st)
}

// ObjectCall starts an RPC call and returns its pending handle, and the
// record of the call's event if the host hands it to the caller to run
// now (the object is idle on this instance); its kind is 0 otherwise.
func (ev Event) ObjectCall(ns, id, method string, args []byte) (pending uint32, rec [abi.EventRecordSize]byte, err error) {
	st := objectCall(uint32(ev), strPtr(ns), uint32(len(ns)), strPtr(id), strPtr(method), uint32(len(method)),
		ptr(args), uint32(len(args)), unsafe.Pointer(&pending), unsafe.Pointer(&rec[0]))
	return pending, rec, ev.check("object_call", st)
}

// CallResult takes the result of a finished call off the instance's
// thread or container monitor.
func (ev Event) CallResult(pending uint32) ([]byte, error) {
	return ev.callResult("call_result", pending)
}

// ObjectCallResult takes the answer of a finished object call: its result,
// or its error and the codes of the object's abi.CallError (nil if it gave
// none, or if they do not decode: a newer host's).
func (ev Event) ObjectCallResult(pending uint32) (result []byte, codes []string, err error) {
	buf := make([]byte, 0, 512)
	for {
		var n uint32
		st := callResult(uint32(ev), pending, ptr(buf[:cap(buf)]), uint32(cap(buf)), unsafe.Pointer(&n))
		switch abi.Status(st) {
		case abi.StatusOK:
			return buf[:n], nil, nil
		case abi.StatusBufferSmall:
			buf = make([]byte, 0, n)
			continue
		}
		err := ev.check(abi.ImportCallResult, st)
		if n > 0 && int(n) <= cap(buf) { // the host wrote the codes with the error
			if rec, derr := abi.DecodeCallError(buf[:n]); derr == nil {
				codes = rec.Codes
			}
		}
		return nil, codes, err
	}
}

// callResult reads pending's result with call_result; op names the call in
// an error the host gave no words for.
func (ev Event) callResult(op string, pending uint32) ([]byte, error) {
	return ev.readInto(op, make([]byte, 0, 512), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return callResult(uint32(ev), pending, p, c, n)
	})
}

// CallRequest returns the encoded method and arguments of a call.
func (ev Event) CallRequest(call uint32) ([]byte, error) {
	return ev.readInto("call_request", make([]byte, 0, 512), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return callRequest(uint32(ev), call, p, c, n)
	})
}

// CallReturn answers a call: status 0 with the result, or an error status
// with a message.
func (ev Event) CallReturn(call uint32, status abi.Status, data []byte) error {
	return ev.check("call_return", callReturn(uint32(ev), call, uint32(status), ptr(data), uint32(len(data))))
}

// CallReturnError answers a call with an error status and e, its message
// and codes.
func (ev Event) CallReturnError(call uint32, status abi.Status, e abi.CallError) error {
	data := e.Encode(nil)
	return ev.check("call_return", callReturn(uint32(ev), call, uint32(status)|abi.CallReturnRecord, ptr(data), uint32(len(data))))
}

// StorageGet reads a value; the error is abi.StatusNotFound if absent.
func (ev Event) StorageGet(key string) ([]byte, error) {
	return ev.readInto("storage_get", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageGet(uint32(ev), strPtr(key), uint32(len(key)), p, c, n)
	})
}

// StoragePut writes a value.
func (ev Event) StoragePut(key string, value []byte) error {
	return ev.check("storage_put", storagePut(uint32(ev), strPtr(key), uint32(len(key)), ptr(value), uint32(len(value))))
}

// StorageDelete removes a key and reports whether it existed.
func (ev Event) StorageDelete(key string) (bool, error) {
	var existed uint32
	err := ev.check("storage_delete", storageDelete(uint32(ev), strPtr(key), uint32(len(key)), unsafe.Pointer(&existed)))
	return existed == 1, err
}

// StorageGetMany reads several keys (a field list of names).
func (ev Event) StorageGetMany(keys []byte) ([]byte, error) {
	return ev.readInto("storage_get_many", make([]byte, 0, 1024), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageGetMany(uint32(ev), ptr(keys), uint32(len(keys)), p, c, n)
	})
}

// StoragePutMany writes several pairs (a field list).
func (ev Event) StoragePutMany(pairs []byte) error {
	return ev.check("storage_put_many", storagePutMany(uint32(ev), ptr(pairs), uint32(len(pairs))))
}

// StorageDeleteMany removes several keys and returns how many existed.
func (ev Event) StorageDeleteMany(keys []byte) (int, error) {
	var n uint32
	err := ev.check("storage_delete_many", storageDeleteMany(uint32(ev), ptr(keys), uint32(len(keys)), unsafe.Pointer(&n)))
	return int(n), err
}

// StorageList lists pairs selected by opts (a field list of options).
func (ev Event) StorageList(opts []byte) ([]byte, error) {
	return ev.readInto("storage_list", make([]byte, 0, 4096), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageList(uint32(ev), ptr(opts), uint32(len(opts)), p, c, n)
	})
}

// StorageDeleteAll removes every key, table and the alarm.
func (ev Event) StorageDeleteAll() error {
	return ev.check("storage_delete_all", storageDeleteAll(uint32(ev)))
}

// StorageTransaction begins, commits or rolls back a transaction.
func (ev Event) StorageTransaction(op uint32) error {
	return ev.check("storage_transaction", storageTransaction(uint32(ev), op))
}

// SQLExec runs a statement and returns the encoded result.
func (ev Event) SQLExec(query string, args []byte) ([]byte, error) {
	var cur uint32
	if err := ev.check("sql_exec", sqlExec(uint32(ev), strPtr(query), uint32(len(query)), ptr(args), uint32(len(args)), unsafe.Pointer(&cur))); err != nil {
		return nil, err
	}
	defer ev.Close(cur)
	return ev.readInto("cursor_read", make([]byte, 0, 1024), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return cursorRead(uint32(ev), cur, p, c, n)
	})
}

// AlarmSet schedules the alarm at a Unix time in milliseconds.
func (ev Event) AlarmSet(atMS int64) error { return ev.check("alarm_set", alarmSet(uint32(ev), atMS)) }

// AlarmGet returns the alarm time in Unix milliseconds; the error is
// abi.StatusNotFound if none is set.
func (ev Event) AlarmGet() (int64, error) {
	var buf [8]byte
	if err := ev.check("alarm_get", alarmGet(uint32(ev), unsafe.Pointer(&buf[0]))); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(buf[:])), nil
}

// AlarmDelete cancels the alarm.
func (ev Event) AlarmDelete() error { return ev.check("alarm_delete", alarmDelete(uint32(ev))) }
