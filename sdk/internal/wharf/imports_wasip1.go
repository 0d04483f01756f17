//go:build wasip1

package wharf

import "unsafe"

//go:wasmimport wharf_v1 last_error
func lastError(buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 log
func log(level int32, msg unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 request_head
func requestHead(req uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 request_body
func requestBody(req uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 response_send
func responseSend(req uint32, head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32, flags uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 stream_read
func streamRead(h uint32, buf unsafe.Pointer, cap uint32, flags uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 stream_write
func streamWrite(h uint32, buf unsafe.Pointer, n uint32, flags uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 stream_abort
func streamAbort(h uint32, msg unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 forward
func forward(src, dst uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 poll
func poll(handles unsafe.Pointer, n uint32, timeout int64, ready unsafe.Pointer, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 timer_start
func timerStart(ns int64, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 close
func closeHandle(h uint32) int32

//go:wasmimport wharf_v1 fetch
func fetch(head unsafe.Pointer, headLen uint32, flags uint32, bodyOut unsafe.Pointer, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 fetch_result
func fetchResult(p uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 response_head
func responseHead(resp uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 response_body
func responseBody(resp uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 register_class
func registerClass(name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 use_binding
func useBinding(name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 object_id
func objectID(ns unsafe.Pointer, nsLen uint32, how uint32, arg unsafe.Pointer, argLen uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 object_self
func objectSelf(buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 object_fetch
func objectFetch(ns unsafe.Pointer, nsLen uint32, id unsafe.Pointer, head unsafe.Pointer, headLen uint32, flags uint32, bodyOut unsafe.Pointer, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 object_call
func objectCall(ns unsafe.Pointer, nsLen uint32, id unsafe.Pointer, method unsafe.Pointer, methodLen uint32, args unsafe.Pointer, argsLen uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 call_result
func callResult(p uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 call_request
func callRequest(c uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 call_return
func callReturn(c uint32, status uint32, data unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 storage_get
func storageGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 storage_put
func storagePut(key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) int32

//go:wasmimport wharf_v1 storage_delete
func storageDelete(key unsafe.Pointer, keyLen uint32, existed unsafe.Pointer) int32

//go:wasmimport wharf_v1 storage_get_many
func storageGetMany(keys unsafe.Pointer, keysLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 storage_put_many
func storagePutMany(pairs unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 storage_delete_many
func storageDeleteMany(keys unsafe.Pointer, n uint32, count unsafe.Pointer) int32

//go:wasmimport wharf_v1 storage_list
func storageList(opts unsafe.Pointer, optsLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 storage_delete_all
func storageDeleteAll() int32

//go:wasmimport wharf_v1 storage_transaction
func storageTransaction(op uint32) int32

//go:wasmimport wharf_v1 sql_exec
func sqlExec(query unsafe.Pointer, queryLen uint32, args unsafe.Pointer, argsLen uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 cursor_read
func cursorRead(c uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 alarm_set
func alarmSet(atMS int64) int32

//go:wasmimport wharf_v1 alarm_get
func alarmGet(out unsafe.Pointer) int32

//go:wasmimport wharf_v1 alarm_delete
func alarmDelete() int32

//go:wasmimport wharf_v1 container_start
func containerStart(opts unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 container_running
func containerRunning(out unsafe.Pointer) int32

//go:wasmimport wharf_v1 container_destroy
func containerDestroy(reason unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 container_signal
func containerSignal(sig uint32) int32

//go:wasmimport wharf_v1 container_monitor
func containerMonitor(out unsafe.Pointer) int32

//go:wasmimport wharf_v1 container_exec
func containerExec(opts unsafe.Pointer, n uint32, stdin, stdout, stderr, proc unsafe.Pointer) int32

//go:wasmimport wharf_v1 process_status
func processStatus(p uint32, code unsafe.Pointer) int32

//go:wasmimport wharf_v1 process_kill
func processKill(p uint32, sig uint32) int32

//go:wasmimport wharf_v1 process_pid
func processPid(p uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 container_connect
func containerConnect(port uint32, readOut, writeOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 container_intercept
func containerIntercept(kind uint32, target unsafe.Pointer, tn uint32, handler unsafe.Pointer, hn uint32) int32

//go:wasmimport wharf_v1 container_egress
func containerEgress(list, edit uint32, hosts unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v1 container_config
func containerConfig(out unsafe.Pointer, cap uint32, n unsafe.Pointer) int32

//go:wasmimport wharf_v1 container_fetch
func containerFetch(port uint32, head unsafe.Pointer, n uint32, flags uint32, bodyOut, pendingOut unsafe.Pointer) int32

//go:wasmimport wharf_v1 file_open
func fileOpen(opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v1 file_op
func fileOp(opts unsafe.Pointer, n uint32, out unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32
