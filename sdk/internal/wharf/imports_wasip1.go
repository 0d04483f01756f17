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
