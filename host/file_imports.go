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
		hostFunc(abi.ImportFileOp, params(i32, i32, i32, i32, i32), s.importFileOp),
	}
}

// importFileOpen is file_open(opts, len, stream_out): a readable stream of
// a file (mode "read"), a writable stream into a file it creates or
// truncates ("write"), or a readable stream of changes as JSON lines
// ("watch").
func (s *services) importFileOpen(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	c, err := s.running(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[2]), 0); err != nil {
		return err
	}
	r, w, err := containers.OpenFile(ctx, c, raw)
	if err != nil {
		return err
	}
	if w != nil {
		return g.newHandle(mem, u32(a[2]), abi.KindWriteStream, guestio.NewWriteStream(fileSink{w}, g.wake))
	}
	return g.newHandle(mem, u32(a[2]), abi.KindReadStream, guestio.NewReadStream(r, g.wake))
}

// importFileOp is file_op(opts, len, out, cap, len_out): stat and list
// write JSON (a FileInfo, an array of them) to out; mkdir, remove and
// rename write nothing.
func (s *services) importFileOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	c, err := s.running(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	out, err := containers.FileOp(ctx, c, raw)
	if err != nil {
		return err
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), out)
}
