package host

import (
	"context"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// fileImports are the wharf functions behind Container.Files().
func (s *services) fileImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportFileOpen, params(i32, i32, i32), s.importFileOpen),
		hostFunc(abi.ImportFileOp, params(i32, i32, i32), s.importFileOp),
	}
}

// importFileOpen is file_open(opts, len, pending_out): call_result hands
// over a readable stream of a file (mode "read"), a writable stream into a
// file it creates or truncates ("write"), or a readable stream of changes
// as JSON lines ("watch").
func (s *services) importFileOpen(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, err := s.upcoming(g)
	if err != nil {
		return err
	}
	raw, err := readCopy(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[2]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		r, w, err := containers.OpenFile(ctx, c, raw)
		if err != nil {
			return nil, err
		}
		if w != nil {
			return withHandles(handleOf{abi.KindWriteStream, guestio.NewWriteStream(fileSink{w}, g.wake)}), nil
		}
		return withHandles(handleOf{abi.KindReadStream, guestio.NewReadStream(r, g.wake)}), nil
	})
}

// importFileOp is file_op(opts, len, pending_out): call_result gives the
// JSON of stat and list (a FileInfo, an array of them); mkdir, remove and
// rename give nothing.
func (s *services) importFileOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, err := s.upcoming(g)
	if err != nil {
		return err
	}
	raw, err := readCopy(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[2]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		out, err := containers.FileOp(ctx, c, raw)
		return withData(out), err
	})
}
