//go:build wasip1

package wharf

import "unsafe"

//go:wasmimport wharf_v2 last_error
func lastError(ev uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 log
func log(ev uint32, level int32, msg unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 log_record
func logRecord(ev uint32, level int32, list unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 request_head
func requestHead(ev uint32, req uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 request_body
func requestBody(ev uint32, req uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 response_send
func responseSend(ev uint32, req uint32, head unsafe.Pointer, headLen uint32, body unsafe.Pointer, bodyLen uint32, flags uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 stream_read
func streamRead(ev uint32, h uint32, buf unsafe.Pointer, cap uint32, flags uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 stream_write
func streamWrite(ev uint32, h uint32, buf unsafe.Pointer, n uint32, flags uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 stream_abort
func streamAbort(ev uint32, h uint32, msg unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 forward
func forward(ev uint32, src, dst uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 poll
func poll(ev uint32, handles unsafe.Pointer, n uint32, timeout int64, ready unsafe.Pointer, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 timer_start
func timerStart(ev uint32, ns int64, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 close
func closeHandle(ev uint32, h uint32) int32

//go:wasmimport wharf_v2 fetch
func fetch(ev uint32, head unsafe.Pointer, headLen uint32, flags uint32, bodyOut unsafe.Pointer, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 fetch_result
func fetchResult(ev uint32, p uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 response_head
func responseHead(ev uint32, resp uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 response_body
func responseBody(ev uint32, resp uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 register_class
func registerClass(ev uint32, name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 use_binding
func useBinding(ev uint32, name unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 object_id
func objectID(ev uint32, ns unsafe.Pointer, nsLen uint32, how uint32, arg unsafe.Pointer, argLen uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 object_self
func objectSelf(ev uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 object_fetch
func objectFetch(ev uint32, ns unsafe.Pointer, nsLen uint32, id unsafe.Pointer, head unsafe.Pointer, headLen uint32, flags uint32, bodyOut unsafe.Pointer, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 object_call
func objectCall(ev uint32, ns unsafe.Pointer, nsLen uint32, id unsafe.Pointer, method unsafe.Pointer, methodLen uint32, args unsafe.Pointer, argsLen uint32, out unsafe.Pointer, recOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 call_result
func callResult(ev uint32, p uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 call_request
func callRequest(ev uint32, c uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 call_return
func callReturn(ev uint32, c uint32, status uint32, data unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 storage_get
func storageGet(ev uint32, key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 storage_put
func storagePut(ev uint32, key unsafe.Pointer, keyLen uint32, value unsafe.Pointer, valueLen uint32) int32

//go:wasmimport wharf_v2 storage_delete
func storageDelete(ev uint32, key unsafe.Pointer, keyLen uint32, existed unsafe.Pointer) int32

//go:wasmimport wharf_v2 storage_get_many
func storageGetMany(ev uint32, keys unsafe.Pointer, keysLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 storage_put_many
func storagePutMany(ev uint32, pairs unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 storage_delete_many
func storageDeleteMany(ev uint32, keys unsafe.Pointer, n uint32, count unsafe.Pointer) int32

//go:wasmimport wharf_v2 storage_list
func storageList(ev uint32, opts unsafe.Pointer, optsLen uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 storage_delete_all
func storageDeleteAll(ev uint32) int32

//go:wasmimport wharf_v2 storage_transaction
func storageTransaction(ev uint32, op uint32) int32

//go:wasmimport wharf_v2 sql_exec
func sqlExec(ev uint32, query unsafe.Pointer, queryLen uint32, args unsafe.Pointer, argsLen uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 cursor_read
func cursorRead(ev uint32, c uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 alarm_set
func alarmSet(ev uint32, atMS int64) int32

//go:wasmimport wharf_v2 alarm_get
func alarmGet(ev uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 alarm_delete
func alarmDelete(ev uint32) int32

//go:wasmimport wharf_v2 container_start
func containerStart(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_running
func containerRunning(ev uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_destroy
func containerDestroy(ev uint32, reason unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_signal
func containerSignal(ev uint32, sig uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_monitor
func containerMonitor(ev uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_exec
func containerExec(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 process_status
func processStatus(ev uint32, p uint32, code unsafe.Pointer) int32

//go:wasmimport wharf_v2 process_kill
func processKill(ev uint32, p uint32, sig uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 process_pid
func processPid(ev uint32, p uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_connect
func containerConnect(ev uint32, port uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_intercept
func containerIntercept(ev uint32, kind uint32, target unsafe.Pointer, tn uint32, handler unsafe.Pointer, hn uint32) int32

//go:wasmimport wharf_v2 container_egress
func containerEgress(ev uint32, list, edit uint32, hosts unsafe.Pointer, n uint32) int32

//go:wasmimport wharf_v2 container_config
func containerConfig(ev uint32, out unsafe.Pointer, cap uint32, n unsafe.Pointer) int32

//go:wasmimport wharf_v2 container_fetch
func containerFetch(ev uint32, port uint32, head unsafe.Pointer, n uint32, flags uint32, bodyOut, pendingOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 file_open
func fileOpen(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 file_op
func fileOp(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 background_op
func backgroundOp(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 background_logs
func backgroundLogs(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 background_wait
func backgroundWait(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 serve
func serve(ev uint32, fdOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 event_done
func eventDone(ev uint32, status int32) int32

//go:wasmimport wharf_v2 wait_fd
func waitFD(ev uint32, handles unsafe.Pointer, n uint32, fdOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 wait_rebind
func waitRebind(ev uint32, fd uint32, handles unsafe.Pointer, n uint32) int32
