package wharf

import (
	"encoding/binary"
	"unsafe"
)

// ContainerStart starts the object's container with encoded options. Only
// the calling goroutine waits for containerd.
func (ev Event) ContainerStart(opts []byte) error {
	_, err := ev.offThread("container_start", func(out unsafe.Pointer) int32 {
		return containerStart(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
	return err
}

// ContainerRunning reports whether the object's container runs.
func (ev Event) ContainerRunning() (bool, error) {
	var v uint32
	err := ev.check("container_running", containerRunning(uint32(ev), unsafe.Pointer(&v)))
	return v == 1, err
}

// ContainerDestroy stops and removes the container; reason reaches Monitor.
// Only the calling goroutine waits for containerd.
func (ev Event) ContainerDestroy(reason string) error {
	_, err := ev.offThread("container_destroy", func(out unsafe.Pointer) int32 {
		return containerDestroy(uint32(ev), strPtr(reason), uint32(len(reason)), out)
	})
	return err
}

// offThread makes call, an import the host runs off the instance's thread
// (it writes a pending handle to out), and waits for its result: only the
// calling goroutine waits for containerd, the agent or the connection.
func (ev Event) offThread(op string, call func(out unsafe.Pointer) int32) ([]byte, error) {
	var p uint32
	if err := ev.check(op, call(unsafe.Pointer(&p))); err != nil {
		return nil, err
	}
	if _, err := ev.Wait([]uint32{p}, -1); err != nil {
		ev.Close(p)
		return nil, err
	}
	return ev.callResult(op, p)
}

// handles reads the n handles at the start of an off-thread result.
func handles(result []byte, n int) []uint32 {
	hs := make([]uint32, n)
	for i := range hs {
		if len(result) >= 4*(i+1) {
			hs[i] = binary.LittleEndian.Uint32(result[4*i:])
		}
	}
	return hs
}

// ContainerSignal sends a signal to the container's main process.
func (ev Event) ContainerSignal(sig uint32) error {
	_, err := ev.offThread("container_signal", func(out unsafe.Pointer) int32 {
		return containerSignal(uint32(ev), sig, out)
	})
	return err
}

// ContainerMonitor returns a pending handle ready when the container exits.
func (ev Event) ContainerMonitor() (uint32, error) {
	var h uint32
	return h, ev.check("container_monitor", containerMonitor(uint32(ev), unsafe.Pointer(&h)))
}

// ContainerExec starts a process; unpiped streams come back as 0.
func (ev Event) ContainerExec(opts []byte) (stdin, stdout, stderr, proc uint32, err error) {
	result, err := ev.offThread("container_exec", func(out unsafe.Pointer) int32 {
		return containerExec(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
	hs := handles(result, 4)
	return hs[0], hs[1], hs[2], hs[3], err
}

// ProcessStatus returns a process's exit code, or abi.StatusAgain while it
// runs.
func (ev Event) ProcessStatus(p uint32) (uint32, error) {
	var code uint32
	return code, ev.check("process_status", processStatus(uint32(ev), p, unsafe.Pointer(&code)))
}

// ProcessKill signals a process.
func (ev Event) ProcessKill(p, sig uint32) error {
	_, err := ev.offThread("process_kill", func(out unsafe.Pointer) int32 {
		return processKill(uint32(ev), p, sig, out)
	})
	return err
}

// ProcessPid returns a process's pid.
func (ev Event) ProcessPid(p uint32) (uint32, error) {
	var pid uint32
	return pid, ev.check("process_pid", processPid(uint32(ev), p, unsafe.Pointer(&pid)))
}

// ContainerConnect opens a TCP connection to a container port.
func (ev Event) ContainerConnect(port uint32) (read, write uint32, err error) {
	result, err := ev.offThread("container_connect", func(out unsafe.Pointer) int32 {
		return containerConnect(uint32(ev), port, out)
	})
	hs := handles(result, 2)
	return hs[0], hs[1], err
}

// ContainerIntercept adds an interception rule of kind for target.
func (ev Event) ContainerIntercept(kind uint32, target, handler string) error {
	st := containerIntercept(uint32(ev), kind, strPtr(target), uint32(len(target)), strPtr(handler), uint32(len(handler)))
	return ev.check("container_intercept", st)
}

// ContainerEgress edits the allow or deny list with encoded hosts.
func (ev Event) ContainerEgress(list, edit uint32, hosts []byte) error {
	return ev.check("container_egress", containerEgress(uint32(ev), list, edit, ptr(hosts), uint32(len(hosts))))
}

// ContainerConfig returns the class's Container settings from wharf.toml.
func (ev Event) ContainerConfig() ([]byte, error) {
	return ev.readInto("container_config", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return containerConfig(uint32(ev), p, c, n)
	})
}

// ContainerFetch starts an HTTP request to a port of the container; see
// Fetch.
func (ev Event) ContainerFetch(port uint32, head []byte, flags uint32) (body, pending uint32, err error) {
	st := containerFetch(uint32(ev), port, ptr(head), uint32(len(head)), flags, unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, ev.check("container_fetch", st)
}

// FileOpen opens a stream on a file of the container; see Files.
func (ev Event) FileOpen(opts []byte) (uint32, error) {
	result, err := ev.offThread("file_open", func(out unsafe.Pointer) int32 {
		return fileOpen(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
	return handles(result, 1)[0], err
}

// FileOp runs a file operation; stat and list return JSON.
func (ev Event) FileOp(opts []byte) ([]byte, error) {
	return ev.offThread("file_op", func(out unsafe.Pointer) int32 {
		return fileOp(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
}

// BackgroundOp runs a background process operation; start, list and get
// return JSON.
func (ev Event) BackgroundOp(opts []byte) ([]byte, error) {
	return ev.offThread("background_op", func(out unsafe.Pointer) int32 {
		return backgroundOp(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
}

// BackgroundLogs opens a stream of a background process's output and
// says how many bytes from its start were overwritten.
func (ev Event) BackgroundLogs(opts []byte) (stream uint32, dropped uint64, err error) {
	result, err := ev.offThread("background_logs", func(out unsafe.Pointer) int32 {
		return backgroundLogs(uint32(ev), ptr(opts), uint32(len(opts)), out)
	})
	if len(result) == 12 {
		dropped = binary.LittleEndian.Uint64(result[4:])
	}
	return handles(result, 1)[0], dropped, err
}

// BackgroundWait returns a pending handle ready when a background process
// has exited; call_result gives its JSON description.
func (ev Event) BackgroundWait(opts []byte) (uint32, error) {
	var h uint32
	return h, ev.check("background_wait", backgroundWait(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&h)))
}
