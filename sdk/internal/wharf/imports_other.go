//go:build !wasip1

package wharf

import (
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// On other platforms the imports are stubs so packages using the SDK build
// and their pure-Go parts can be tested; every call reports UNSUPPORTED.

const unsupported = int32(abi.StatusUnsupported)

func lastError(unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func log(int32, unsafe.Pointer, uint32) int32                { return unsupported }
func requestHead(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func requestBody(uint32, unsafe.Pointer) int32 { return unsupported }
func responseSend(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamRead(uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamWrite(uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamAbort(uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func forward(uint32, uint32, unsafe.Pointer) int32     { return unsupported }
func poll(unsafe.Pointer, uint32, int64, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func timerStart(int64, unsafe.Pointer) int32 { return unsupported }
func closeHandle(uint32) int32               { return unsupported }
func fetch(unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func fetchResult(uint32, unsafe.Pointer) int32 { return unsupported }
func responseHead(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func responseBody(uint32, unsafe.Pointer) int32 { return unsupported }
