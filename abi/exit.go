package abi

import (
	"fmt"
	"strconv"
	"strings"
)

// ContainerNotRunning is the message of the NOTFOUND a container call
// gets when the object's container is not running, whole or followed by
// ": " and why (its start failed: …); the SDK tells it by this text
// (IsContainerNotRunning) from the NOTFOUND of a thing not found (a file,
// a process).
const ContainerNotRunning = "the container is not running"

// IsContainerNotRunning reports whether msg, a NOTFOUND's message, says
// the container is not running (see ContainerNotRunning).
func IsContainerNotRunning(msg string) bool {
	return msg == ContainerNotRunning || strings.HasPrefix(msg, ContainerNotRunning+": ")
}

// ProcessExited is the whole message of the NOTFOUND a kill of an exec'd
// process gets once it has exited (the SDK says it too, once Wait has
// released the process).
const ProcessExited = "the process has exited"

// SignalOutOfRange begins the message of the INVAL a signal outside 1 to
// 64 gets (", got N" follows from a background process's kill).
const SignalOutOfRange = "signal must be from 1 to 64"

// exitPrefix begins container_monitor's message for a non-zero exit.
const exitPrefix = "the container exited with code "

// FormatContainerExit is container_monitor's message (after its IO) for an
// exit with code: "the container exited with code N", then ": why" if why is
// not empty (out of memory, say).
func FormatContainerExit(code int, why string) string {
	msg := exitPrefix + strconv.Itoa(code)
	if why != "" {
		msg += ": " + why
	}
	return msg
}

// ParseContainerExit reads a message made by FormatContainerExit; ok is
// false for any other message (a reason given to container_destroy).
func ParseContainerExit(msg string) (code int, why string, ok bool) {
	rest, found := strings.CutPrefix(msg, exitPrefix)
	if !found {
		return 0, "", false
	}
	digits, why, _ := strings.Cut(rest, ": ")
	code, err := strconv.Atoi(digits)
	if err != nil {
		return 0, "", false
	}
	return code, why, true
}

// ContainerExitError is the IO error container_monitor's result carries for
// an exit with a non-zero code.
func ContainerExitError(code int, why string) error {
	return fmt.Errorf("%w: %s", StatusIO, FormatContainerExit(code, why))
}
