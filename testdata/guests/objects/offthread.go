package main

// Raw off-thread container calls, for tests that use the ABI as a careless
// or hostile guest would: pending results never taken, taken for another
// scope, or closed at once.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"
	"unsafe"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk"
)

//go:wasmimport wharf_v2 container_exec
func rawContainerExec(ev uint32, opts unsafe.Pointer, n uint32, out unsafe.Pointer) int32

//go:wasmimport wharf_v2 call_result
func rawCallResult(ev uint32, p uint32, buf unsafe.Pointer, cap uint32, nOut unsafe.Pointer) int32

//go:wasmimport wharf_v2 close
func rawCloseHandle(ev uint32, h uint32) int32

// rawExec starts cmd (output ignored) and returns its pending handle.
func rawExec(ev uint32, cmd ...string) (uint32, error) {
	opts := abi.ExecOptions{Args: cmd, Stdout: "ignore", Stderr: "ignore"}.Encode(nil)
	var p uint32
	if st := rawContainerExec(ev, unsafe.Pointer(&opts[0]), uint32(len(opts)), unsafe.Pointer(&p)); st != 0 {
		return 0, fmt.Errorf("container_exec: status %d", st)
	}
	return p, nil
}

// rawTake polls call_result of p for scope ev until it is ready and
// returns the process handle.
func rawTake(ev, p uint32) (uint32, error) {
	var buf [16]byte
	for range 1000 {
		var n uint32
		st := rawCallResult(ev, p, unsafe.Pointer(&buf[0]), 16, unsafe.Pointer(&n))
		switch {
		case abi.Status(st) == abi.StatusAgain:
			time.Sleep(10 * time.Millisecond)
			continue
		case st != 0:
			return 0, fmt.Errorf("call_result: status %d", st)
		}
		return binary.LittleEndian.Uint32(buf[12:]), nil
	}
	return 0, fmt.Errorf("call_result: not ready after 10 s")
}

// count counts the processes of the container whose command line is
// pattern (a basic regular expression), with ps: the image has no pgrep.
func (b *Box) count(pattern string) (string, error) {
	p, err := b.state.Container.Exec([]string{"sh", "-c", "ps -o args | grep -c '^" + pattern + "$'"}, sdk.ExecOptions{Stderr: sdk.StdioIgnore})
	if err != nil {
		return "", err
	}
	out, _ := io.ReadAll(p.Stdout)
	p.Wait() // grep -c exits 1 for 0
	return string(out), nil
}

// RawExecMany starts up to n `sleep 600` with container_exec, never
// taking their results, until one is refused; then it gives one up (the
// count's own exec needs room under the event's cap) and counts the sleeps
// in the container.
func (b *Box) RawExecMany(ctx context.Context, n int) (string, error) {
	ev := sdk.EventHandle(ctx)
	var pendings []uint32
	var refused error
	for range n {
		p, err := rawExec(ev, "sleep", "600")
		if err != nil {
			refused = err
			break
		}
		pendings = append(pendings, p)
	}
	if len(pendings) > 0 {
		rawCloseHandle(ev, pendings[0])
	}
	time.Sleep(2 * time.Second)
	running, err := b.count("sleep 600")
	return fmt.Sprintf("started %d, then %v; running: %s", len(pendings), refused, running), err
}

// RawExecForScope starts `sleep 601` and takes its result for scope 0 (the
// instance), not for its event; it returns the process handle.
func (b *Box) RawExecForScope(ctx context.Context) (string, error) {
	p, err := rawExec(sdk.EventHandle(ctx), "sleep", "601")
	if err != nil {
		return "", err
	}
	h, err := rawTake(0, p)
	return fmt.Sprint(h), err
}

// RawExecCloseEarly starts n `sleep 602` and closes each pending handle at
// once (after delay ms).
func (b *Box) RawExecCloseEarly(ctx context.Context, args [2]int) error {
	ev := sdk.EventHandle(ctx)
	for range args[0] {
		p, err := rawExec(ev, "sleep", "602")
		if err != nil {
			return err
		}
		if args[1] > 0 {
			time.Sleep(time.Duration(args[1]) * time.Millisecond)
		}
		if st := rawCloseHandle(ev, p); st != 0 {
			return fmt.Errorf("close: status %d", st)
		}
	}
	return nil
}

// Count counts the processes matching pattern in the container.
func (b *Box) Count(pattern string) (string, error) { return b.count(pattern) }
