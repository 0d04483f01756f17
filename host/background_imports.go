package host

import (
	"context"
	"encoding/binary"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// backgroundImports are the wharf functions behind the SDK's background
// processes (Container.StartProcess and the rest).
func (s *services) backgroundImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportBackgroundOp, params(i32, i32, i32), s.importBackgroundOp),
		hostFunc(abi.ImportBackgroundLogs, params(i32, i32, i32), s.importBackgroundLogs),
		hostFunc(abi.ImportBackgroundWait, params(i32, i32, i32), s.importBackgroundWait),
	}
}

// backgroundCall returns the calling object's container (see upcoming)
// and the options of a background import.
func (s *services) backgroundCall(g *guest, mem plugins.Memory, ptr, n uint32) (containers.Upcoming, abi.BackgroundOptions, error) {
	u, err := s.upcoming(g)
	if err != nil {
		return u, abi.BackgroundOptions{}, err
	}
	raw, err := readMem(mem, ptr, n)
	if err != nil {
		return u, abi.BackgroundOptions{}, err
	}
	o, err := containers.ParseBackground(raw)
	if err != nil {
		return u, o, err
	}
	return u, o, nil
}

// importBackgroundOp is background_op(opts, len, pending_out):
// call_result gives the JSON of start (the new process's description),
// list (an array of them) and get (one); kill gives nothing.
func (s *services) importBackgroundOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[2]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		out, err := containers.BackgroundOp(ctx, c, o)
		return withData(out), err
	})
}

// importBackgroundLogs is background_logs(opts, len, pending_out):
// call_result hands over a readable stream of a background process's
// output, then how many bytes from its start were overwritten (a u64).
func (s *services) importBackgroundLogs(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[2]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		r, dropped, err := containers.BackgroundLogs(ctx, c, o)
		if err != nil {
			return nil, err
		}
		out := withHandles(handleOf{abi.KindReadStream, guestio.NewReadStream(r, g.wake)})
		out.data = binary.LittleEndian.AppendUint64(nil, uint64(dropped))
		return out, nil
	})
}

// importBackgroundWait is background_wait(opts, len, pending_out): a
// pending result, read with call_result, ready when the process has
// exited; its value is the process's JSON description.
func (s *services) importBackgroundWait(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, u32(a[2]), abi.KindPending, p); err != nil {
		cancel()
		return err
	}
	go func() {
		c, err := u.Container(ctx)
		if err != nil {
			p.Resolve(nil, err)
			return
		}
		p.Resolve(containers.WaitBackground(ctx, c, o.ID))
	}()
	return nil
}
