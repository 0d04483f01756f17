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

func registerClass(unsafe.Pointer, uint32) int32 { return unsupported }
func useBinding(unsafe.Pointer, uint32) int32    { return unsupported }
func objectID(unsafe.Pointer, uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func objectSelf(unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func objectFetch(unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func objectCall(unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func callResult(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32  { return unsupported }
func callRequest(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func callReturn(uint32, uint32, unsafe.Pointer, uint32) int32          { return unsupported }
func storageGet(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storagePut(unsafe.Pointer, uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func storageDelete(unsafe.Pointer, uint32, unsafe.Pointer) int32      { return unsupported }
func storageGetMany(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storagePutMany(unsafe.Pointer, uint32) int32                    { return unsupported }
func storageDeleteMany(unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func storageList(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storageDeleteAll() int32         { return unsupported }
func storageTransaction(uint32) int32 { return unsupported }
func sqlExec(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func cursorRead(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func alarmSet(int64) int32                                            { return unsupported }
func alarmGet(unsafe.Pointer) int32                                   { return unsupported }
func alarmDelete() int32                                              { return unsupported }

func containerStart(unsafe.Pointer, uint32) int32   { return unsupported }
func containerRunning(unsafe.Pointer) int32         { return unsupported }
func containerDestroy(unsafe.Pointer, uint32) int32 { return unsupported }
func containerSignal(uint32) int32                  { return unsupported }
func containerMonitor(unsafe.Pointer) int32         { return unsupported }
func containerExec(unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func processStatus(uint32, unsafe.Pointer) int32 { return unsupported }
func processKill(uint32, uint32) int32           { return unsupported }
func processPid(uint32, unsafe.Pointer) int32    { return unsupported }

func containerConnect(uint32, unsafe.Pointer, unsafe.Pointer) int32 { return unsupported }

func containerIntercept(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) int32 {
	return unsupported
}
func containerEgress(uint32, uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func containerConfig(unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func containerFetch(uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func fileOpen(unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func fileOp(unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
