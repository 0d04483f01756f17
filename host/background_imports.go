package host

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// backgroundImports are the wharf functions behind the SDK's background
// processes (Container.StartProcess and the rest).
func (s *services) backgroundImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportBackgroundOp, params(i32, i32, i32, i32, i32), s.importBackgroundOp),
		hostFunc(abi.ImportBackgroundLogs, params(i32, i32, i32, i32), s.importBackgroundLogs),
		hostFunc(abi.ImportBackgroundWait, params(i32, i32, i32), s.importBackgroundWait),
	}
}

// backgroundCall returns the calling object's running container and the
// options of a background import.
func (s *services) backgroundCall(g *guest, mem plugins.Memory, ptr, n uint32) (containers.Container, abi.BackgroundOptions, error) {
	c, err := s.running(g)
	if err != nil {
		return nil, abi.BackgroundOptions{}, err
	}
	raw, err := readMem(mem, ptr, n)
	if err != nil {
		return nil, abi.BackgroundOptions{}, err
	}
	o, err := containers.ParseBackground(raw)
	if err != nil {
		return nil, o, err
	}
	return c, o, nil
}

// importBackgroundOp is background_op(opts, len, out, cap, len_out):
// start (writes the new process's JSON description), list (a JSON array
// of them), get (one) or kill (nothing).
func (s *services) importBackgroundOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	c, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	out, need, err := containers.BackgroundOp(ctx, c, o, u32(a[3]))
	if need > 0 {
		if err := writeU32(mem, u32(a[4]), need); err != nil {
			return err
		}
	}
	if err != nil || o.Op == "kill" {
		return err
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), out)
}

// importBackgroundLogs is background_logs(opts, len, stream_out,
// dropped_out): a readable stream of a background process's output.
func (s *services) importBackgroundLogs(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.running(g); err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[2]), 0); err != nil {
		return err
	}
	var dropped [8]byte
	if !mem.Write(u32(a[3]), dropped[:]) {
		return fmt.Errorf("%w: output pointer %d is outside guest memory (%d bytes)", abi.StatusFault, u32(a[3]), mem.Size())
	}
	c, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	r, n, err := containers.BackgroundLogs(ctx, c, o)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(dropped[:], uint64(n))
	mem.Write(u32(a[3]), dropped[:])
	return g.newHandle(mem, u32(a[2]), abi.KindReadStream, guestio.NewReadStream(r, g.wake))
}

// importBackgroundWait is background_wait(opts, len, pending_out): a
// pending result, read with call_result, ready when the process has
// exited; its value is the process's JSON description.
func (s *services) importBackgroundWait(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	c, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, u32(a[2]), abi.KindPending, p); err != nil {
		cancel()
		return err
	}
	go func() { p.Resolve(containers.WaitBackground(ctx, c, o.ID)) }()
	return nil
}
