package wharf

import "unsafe"

// ContainerStart starts the object's container with encoded options.
func ContainerStart(opts []byte) error {
	return check("container_start", containerStart(ptr(opts), uint32(len(opts))))
}

// ContainerRunning reports whether the object's container runs.
func ContainerRunning() (bool, error) {
	var v uint32
	err := check("container_running", containerRunning(unsafe.Pointer(&v)))
	return v == 1, err
}

// ContainerDestroy stops and removes the container; reason reaches Monitor.
func ContainerDestroy(reason string) error {
	return check("container_destroy", containerDestroy(strPtr(reason), uint32(len(reason))))
}

// ContainerSignal sends a signal to the container's main process.
func ContainerSignal(sig uint32) error { return check("container_signal", containerSignal(sig)) }

// ContainerMonitor returns a pending handle ready when the container exits.
func ContainerMonitor() (uint32, error) {
	var h uint32
	return h, check("container_monitor", containerMonitor(unsafe.Pointer(&h)))
}

// ContainerExec starts a process; unpiped streams come back as 0.
func ContainerExec(opts []byte) (stdin, stdout, stderr, proc uint32, err error) {
	st := containerExec(ptr(opts), uint32(len(opts)), unsafe.Pointer(&stdin), unsafe.Pointer(&stdout),
		unsafe.Pointer(&stderr), unsafe.Pointer(&proc))
	return stdin, stdout, stderr, proc, check("container_exec", st)
}

// ProcessStatus returns a process's exit code, or abi.StatusAgain while it
// runs.
func ProcessStatus(p uint32) (uint32, error) {
	var code uint32
	return code, check("process_status", processStatus(p, unsafe.Pointer(&code)))
}

// ProcessKill signals a process.
func ProcessKill(p, sig uint32) error { return check("process_kill", processKill(p, sig)) }

// ProcessPid returns a process's pid.
func ProcessPid(p uint32) (uint32, error) {
	var pid uint32
	return pid, check("process_pid", processPid(p, unsafe.Pointer(&pid)))
}

// ContainerConnect opens a TCP connection to a container port.
func ContainerConnect(port uint32) (read, write uint32, err error) {
	st := containerConnect(port, unsafe.Pointer(&read), unsafe.Pointer(&write))
	return read, write, check("container_connect", st)
}

// ContainerIntercept adds an interception rule of kind for target.
func ContainerIntercept(kind uint32, target, handler string) error {
	st := containerIntercept(kind, strPtr(target), uint32(len(target)), strPtr(handler), uint32(len(handler)))
	return check("container_intercept", st)
}

// ContainerEgress edits the allow or deny list with encoded hosts.
func ContainerEgress(list, edit uint32, hosts []byte) error {
	return check("container_egress", containerEgress(list, edit, ptr(hosts), uint32(len(hosts))))
}

// ContainerConfig returns the class's Container settings from wharf.toml.
func ContainerConfig() ([]byte, error) {
	return readInto("container_config", make([]byte, 0, 256), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return containerConfig(p, c, n)
	})
}

// ContainerFetch starts an HTTP request to a port of the container; see
// Fetch.
func ContainerFetch(port uint32, head []byte, flags uint32) (body, pending uint32, err error) {
	st := containerFetch(port, ptr(head), uint32(len(head)), flags, unsafe.Pointer(&body), unsafe.Pointer(&pending))
	return body, pending, check("container_fetch", st)
}

// FileOpen opens a stream on a file of the container; see Files.
func FileOpen(opts []byte) (uint32, error) {
	var h uint32
	return h, check("file_open", fileOpen(ptr(opts), uint32(len(opts)), unsafe.Pointer(&h)))
}

// FileOp runs a file operation; stat and list return JSON.
func FileOp(opts []byte) ([]byte, error) {
	return readInto("file_op", make([]byte, 0, 4096), func(p unsafe.Pointer, c uint32, n unsafe.Pointer) int32 {
		return fileOp(ptr(opts), uint32(len(opts)), p, c, n)
	})
}
