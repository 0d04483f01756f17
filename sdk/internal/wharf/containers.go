package wharf

import "unsafe"

// ContainerStart starts the object's container with encoded options. Only
// the calling goroutine waits for containerd.
func (ev Event) ContainerStart(opts []byte) error {
	var p uint32
	if err := ev.check("container_start", containerStart(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&p))); err != nil {
		return err
	}
	return ev.await(p)
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
	var p uint32
	if err := ev.check("container_destroy", containerDestroy(uint32(ev), strPtr(reason), uint32(len(reason)), unsafe.Pointer(&p))); err != nil {
		return err
	}
	return ev.await(p)
}

// await waits for a pending result with no value and returns its error.
func (ev Event) await(p uint32) error {
	if _, err := ev.Wait([]uint32{p}, -1); err != nil {
		ev.Close(p)
		return err
	}
	_, err := ev.CallResult(p)
	return err
}

// ContainerSignal sends a signal to the container's main process.
func (ev Event) ContainerSignal(sig uint32) error {
	return ev.check("container_signal", containerSignal(uint32(ev), sig))
}

// ContainerMonitor returns a pending handle ready when the container exits.
func (ev Event) ContainerMonitor() (uint32, error) {
	var h uint32
	return h, ev.check("container_monitor", containerMonitor(uint32(ev), unsafe.Pointer(&h)))
}

// ContainerExec starts a process; unpiped streams come back as 0.
func (ev Event) ContainerExec(opts []byte) (stdin, stdout, stderr, proc uint32, err error) {
	st := containerExec(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&stdin), unsafe.Pointer(&stdout),
		unsafe.Pointer(&stderr), unsafe.Pointer(&proc))
	return stdin, stdout, stderr, proc, ev.check("container_exec", st)
}

// ProcessStatus returns a process's exit code, or abi.StatusAgain while it
// runs.
func (ev Event) ProcessStatus(p uint32) (uint32, error) {
	var code uint32
	return code, ev.check("process_status", processStatus(uint32(ev), p, unsafe.Pointer(&code)))
}

// ProcessKill signals a process.
func (ev Event) ProcessKill(p, sig uint32) error {
	return ev.check("process_kill", processKill(uint32(ev), p, sig))
}

// ProcessPid returns a process's pid.
func (ev Event) ProcessPid(p uint32) (uint32, error) {
	var pid uint32
	return pid, ev.check("process_pid", processPid(uint32(ev), p, unsafe.Pointer(&pid)))
}

// ContainerConnect opens a TCP connection to a container port.
func (ev Event) ContainerConnect(port uint32) (read, write uint32, err error) {
	st := containerConnect(uint32(ev), port, unsafe.Pointer(&read), unsafe.Pointer(&write))
	return read, write, ev.check("container_connect", st)
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
	var h uint32
	return h, ev.check("file_open", fileOpen(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&h)))
}

// FileOp runs a file operation; stat and list return JSON.
func (ev Event) FileOp(opts []byte) ([]byte, error) {
	return ev.readInto("file_op", make([]byte, 0, 4096), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return fileOp(uint32(ev), ptr(opts), uint32(len(opts)), p, c, n)
	})
}

// BackgroundOp runs a background process operation; start, list and get
// return JSON.
func (ev Event) BackgroundOp(opts []byte) ([]byte, error) {
	return ev.readInto("background_op", make([]byte, 0, 4096), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return backgroundOp(uint32(ev), ptr(opts), uint32(len(opts)), p, c, n)
	})
}

// BackgroundLogs opens a stream of a background process's output and
// says how many bytes from its start were overwritten.
func (ev Event) BackgroundLogs(opts []byte) (stream uint32, dropped uint64, err error) {
	st := backgroundLogs(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&stream), unsafe.Pointer(&dropped))
	return stream, dropped, ev.check("background_logs", st)
}

// BackgroundWait returns a pending handle ready when a background process
// has exited; call_result gives its JSON description.
func (ev Event) BackgroundWait(opts []byte) (uint32, error) {
	var h uint32
	return h, ev.check("background_wait", backgroundWait(uint32(ev), ptr(opts), uint32(len(opts)), unsafe.Pointer(&h)))
}
