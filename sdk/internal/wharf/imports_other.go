//go:build !wasip1

package wharf

import (
	"unsafe"

	"github.com/wharfhq/wharf/abi"
)

// On other platforms the imports are stubs so packages using the SDK build
// and their pure-Go parts can be tested; every call reports UNSUPPORTED.

const unsupported = int32(abi.StatusUnsupported)

func lastError(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func log(uint32, int32, unsafe.Pointer, uint32) int32                { return unsupported }
func logRecord(uint32, int32, unsafe.Pointer, uint32) int32          { return unsupported }
func requestHead(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func requestBody(uint32, uint32, unsafe.Pointer) int32 { return unsupported }
func responseSend(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamRead(uint32, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamWrite(uint32, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func streamAbort(uint32, uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func forward(uint32, uint32, uint32, unsafe.Pointer) int32     { return unsupported }
func poll(uint32, unsafe.Pointer, uint32, int64, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func timerStart(uint32, int64, unsafe.Pointer) int32 { return unsupported }
func closeHandle(uint32, uint32) int32               { return unsupported }
func fetch(uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func fetchResult(uint32, uint32, unsafe.Pointer) int32 { return unsupported }
func responseHead(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func responseBody(uint32, uint32, unsafe.Pointer) int32 { return unsupported }

func registerClass(uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func useBinding(uint32, unsafe.Pointer, uint32) int32    { return unsupported }
func objectID(uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func objectSelf(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func objectFetch(uint32, unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func objectCall(uint32, unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func callResult(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32  { return unsupported }
func callRequest(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func callReturn(uint32, uint32, uint32, unsafe.Pointer, uint32) int32          { return unsupported }
func storageGet(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storagePut(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func storageDelete(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32      { return unsupported }
func storageGetMany(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storagePutMany(uint32, unsafe.Pointer, uint32) int32                    { return unsupported }
func storageDeleteMany(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func storageList(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func storageDeleteAll(uint32) int32           { return unsupported }
func storageTransaction(uint32, uint32) int32 { return unsupported }
func sqlExec(uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func cursorRead(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func alarmSet(uint32, int64) int32                                            { return unsupported }
func alarmGet(uint32, unsafe.Pointer) int32                                   { return unsupported }
func alarmDelete(uint32) int32                                                { return unsupported }

func containerStart(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func containerRunning(uint32, unsafe.Pointer) int32                       { return unsupported }
func containerDestroy(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 {
	return unsupported
}
func containerSignal(uint32, uint32, unsafe.Pointer) int32               { return unsupported }
func containerMonitor(uint32, unsafe.Pointer) int32                      { return unsupported }
func containerExec(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func processStatus(uint32, uint32, unsafe.Pointer) int32                 { return unsupported }
func processKill(uint32, uint32, uint32, unsafe.Pointer) int32           { return unsupported }
func processPid(uint32, uint32, unsafe.Pointer) int32                    { return unsupported }

func containerConnect(uint32, uint32, unsafe.Pointer) int32 { return unsupported }

func containerIntercept(uint32, uint32, unsafe.Pointer, uint32, unsafe.Pointer, uint32) int32 {
	return unsupported
}
func containerEgress(uint32, uint32, uint32, unsafe.Pointer, uint32) int32 { return unsupported }
func containerConfig(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func containerFetch(uint32, uint32, unsafe.Pointer, uint32, uint32, unsafe.Pointer, unsafe.Pointer) int32 {
	return unsupported
}
func fileOpen(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32       { return unsupported }
func fileOp(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32         { return unsupported }
func backgroundOp(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32   { return unsupported }
func backgroundLogs(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func backgroundWait(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }

func serve(uint32, unsafe.Pointer) int32                          { return unsupported }
func eventDone(uint32, int32) int32                               { return unsupported }
func waitFD(uint32, unsafe.Pointer, uint32, unsafe.Pointer) int32 { return unsupported }
func waitRebind(uint32, uint32, unsafe.Pointer, uint32) int32     { return unsupported }
