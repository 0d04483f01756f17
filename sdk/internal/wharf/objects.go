package wharf

import (
	"encoding/binary"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// RegisterClass tells the host the module implements a Durable Object class.
func RegisterClass(name string) error {
	return check("register_class", registerClass(strPtr(name), uint32(len(name))))
}

// UseBinding tells the host the module uses a Durable Object binding, so
// one missing from the manifest is refused when the module loads.
func UseBinding(name string) error {
	return check("use_binding", useBinding(strPtr(name), uint32(len(name))))
}

// ObjectID makes an id in the namespace of binding ns; how is one of
// abi.IDFromName, abi.IDUnique and abi.IDFromString.
func ObjectID(ns string, how uint32, arg string) (string, error) {
	var out [abi.ObjectIDLen]byte
	st := objectID(strPtr(ns), uint32(len(ns)), how, strPtr(arg), uint32(len(arg)), unsafe.Pointer(&out[0]))
	if err := check("object_id", st); err != nil {
		return "", err
	}
	return string(out[:]), nil
}

// ObjectSelf returns the encoded class and id of the object the instance
// belongs to.
func ObjectSelf() ([]byte, error) {
	return readInto("object_self", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return objectSelf(p, c, n)
	})
}

// ObjectFetch sends a request to an object; see Fetch.
func ObjectFetch(ns, id string, head []byte, flags uint32) (body, pending uint32, err error) {
	st := objectFetch(strPtr(ns), uint32(len(ns)), strPtr(id), ptr(head), uint32(len(head)), flags,
		unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, check("object_fetch", st)
}

// ObjectCall starts an RPC call and returns its pending handle.
func ObjectCall(ns, id, method string, args []byte) (uint32, error) {
	var h uint32
	st := objectCall(strPtr(ns), uint32(len(ns)), strPtr(id), strPtr(method), uint32(len(method)),
		ptr(args), uint32(len(args)), unsafe.Pointer(&h))
	return h, check("object_call", st)
}

// CallResult takes the answer of a finished call.
func CallResult(pending uint32) ([]byte, error) {
	return readInto("call_result", make([]byte, 0, 512), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return callResult(pending, p, c, n)
	})
}

// CallRequest returns the encoded method and arguments of a call.
func CallRequest(call uint32) ([]byte, error) {
	return readInto("call_request", make([]byte, 0, 512), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return callRequest(call, p, c, n)
	})
}

// CallReturn answers a call: status 0 with the result, or an error status
// with a message.
func CallReturn(call uint32, status abi.Status, data []byte) error {
	return check("call_return", callReturn(call, uint32(status), ptr(data), uint32(len(data))))
}

// StorageGet reads a value; the error is abi.StatusNotFound if absent.
func StorageGet(key string) ([]byte, error) {
	return readInto("storage_get", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageGet(strPtr(key), uint32(len(key)), p, c, n)
	})
}

// StoragePut writes a value.
func StoragePut(key string, value []byte) error {
	return check("storage_put", storagePut(strPtr(key), uint32(len(key)), ptr(value), uint32(len(value))))
}

// StorageDelete removes a key and reports whether it existed.
func StorageDelete(key string) (bool, error) {
	var existed uint32
	err := check("storage_delete", storageDelete(strPtr(key), uint32(len(key)), unsafe.Pointer(&existed)))
	return existed == 1, err
}

// StorageGetMany reads several keys (a field list of names).
func StorageGetMany(keys []byte) ([]byte, error) {
	return readInto("storage_get_many", make([]byte, 0, 1024), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageGetMany(ptr(keys), uint32(len(keys)), p, c, n)
	})
}

// StoragePutMany writes several pairs (a field list).
func StoragePutMany(pairs []byte) error {
	return check("storage_put_many", storagePutMany(ptr(pairs), uint32(len(pairs))))
}

// StorageDeleteMany removes several keys and returns how many existed.
func StorageDeleteMany(keys []byte) (int, error) {
	var n uint32
	err := check("storage_delete_many", storageDeleteMany(ptr(keys), uint32(len(keys)), unsafe.Pointer(&n)))
	return int(n), err
}

// StorageList lists pairs selected by opts (a field list of options).
func StorageList(opts []byte) ([]byte, error) {
	return readInto("storage_list", make([]byte, 0, 4096), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return storageList(ptr(opts), uint32(len(opts)), p, c, n)
	})
}

// StorageDeleteAll removes every key, table and the alarm.
func StorageDeleteAll() error { return check("storage_delete_all", storageDeleteAll()) }

// StorageTransaction begins, commits or rolls back a transaction.
func StorageTransaction(op uint32) error {
	return check("storage_transaction", storageTransaction(op))
}

// SQLExec runs a statement and returns the encoded result.
func SQLExec(query string, args []byte) ([]byte, error) {
	var cur uint32
	if err := check("sql_exec", sqlExec(strPtr(query), uint32(len(query)), ptr(args), uint32(len(args)), unsafe.Pointer(&cur))); err != nil {
		return nil, err
	}
	defer Close(cur)
	return readInto("cursor_read", make([]byte, 0, 1024), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return cursorRead(cur, p, c, n)
	})
}

// AlarmSet schedules the alarm at a Unix time in milliseconds.
func AlarmSet(atMS int64) error { return check("alarm_set", alarmSet(atMS)) }

// AlarmGet returns the alarm time in Unix milliseconds; the error is
// abi.StatusNotFound if none is set.
func AlarmGet() (int64, error) {
	var buf [8]byte
	if err := check("alarm_get", alarmGet(unsafe.Pointer(&buf[0]))); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(buf[:])), nil
}

// AlarmDelete cancels the alarm.
func AlarmDelete() error { return check("alarm_delete", alarmDelete()) }
