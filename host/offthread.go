package host

import (
	"context"
	"encoding/binary"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// offThread runs work, a call that waits for containerd, a container's
// agent or a TCP handshake, off the instance's thread: the guest gets a
// pending handle (at out) and its other goroutines and objects run
// meanwhile. call_result hands work's outcome over on the instance's
// thread. Closing the pending handle first cancels work's context and
// frees what it made.
func offThread(ctx context.Context, g *guest, mem plugins.Memory, out uint32, work func(context.Context) (*outcome, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, out, abi.KindPending, p); err != nil {
		cancel()
		return err
	}
	go func() {
		o, err := work(ctx)
		switch {
		case err != nil:
			p.Resolve(nil, err)
		case o == nil:
			p.Resolve(&outcome{}, nil)
		default:
			p.Resolve(o, nil)
		}
	}()
	return nil
}

// outcome is what a call run off the instance's thread made: objects that
// become the guest's handles when call_result hands them over (written
// first, a u32 each, 0 for a nil object), then data.
type outcome struct {
	handles []handleOf
	data    []byte
	// settle, if set, ends the reservation the call made for its handles
	// (guest.reserveProcess): they count as handles once opened.
	settle func()
}

// handleOf is an object to open as a handle of kind.
type handleOf struct {
	kind abi.Kind
	obj  any
}

// withHandles returns an outcome of objects to open as handles.
func withHandles(handles ...handleOf) *outcome { return &outcome{handles: handles} }

// withData returns an outcome of bytes.
func withData(data []byte) *outcome { return &outcome{data: data} }

// size is the number of bytes call_result writes.
func (o *outcome) size() int { return 4*len(o.handles) + len(o.data) }

// handOver opens o's handles for g and writes the result to [ptr,
// ptr+cap). A buffer too small (BUFLEN) or out of bounds (FAULT) keeps o
// for another try; if a handle cannot be opened (TOOLARGE), all of o is
// freed.
func (o *outcome) handOver(g *guest, mem plugins.Memory, ptr, cap, nOut uint32) error {
	result := make([]byte, o.size())
	if err := writeOut(mem, ptr, cap, nOut, result); err != nil { // the size, and that the buffer is in memory
		return err
	}
	o.settleNow()
	opened := make([]abi.Handle, 0, len(o.handles))
	for i, h := range o.handles {
		if h.obj == nil {
			continue
		}
		handle, err := g.openHandle(h.kind, h.obj)
		if err != nil { // openHandle released h.obj
			for _, handle := range opened {
				_, obj, _ := g.table.Remove(handle)
				releaseObject(obj, err)
			}
			o.handles = o.handles[i+1:]
			o.release()
			return err
		}
		opened = append(opened, handle)
		binary.LittleEndian.PutUint32(result[4*i:], uint32(handle))
	}
	copy(result[4*len(o.handles):], o.data)
	mem.Write(ptr, result)
	return nil
}

// settleNow ends the outcome's reservation, if it made one.
func (o *outcome) settleNow() {
	if o.settle != nil {
		o.settle()
	}
}

// release frees the objects of an outcome nobody will read.
func (o *outcome) release() {
	o.settleNow()
	for _, h := range o.handles {
		if h.obj != nil {
			releaseObject(h.obj, nil)
		}
	}
	o.handles = nil
}
