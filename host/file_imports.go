package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/containerd"
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

// parseFileOptions decodes the options of file_open and file_op, which
// all need a path.
func parseFileOptions(raw []byte) (abi.FileOptions, error) {
	o, err := abi.DecodeFileOptions(raw)
	if err != nil {
		return o, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	if o.Path == "" {
		return o, fmt.Errorf("%w: a file operation needs a path", abi.StatusInvalid)
	}
	return o, nil
}

// fileStatus maps a files error to its status.
func fileStatus(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", abi.StatusNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", abi.StatusDenied, err)
	case errors.Is(err, containerd.ErrTooManyWatches):
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	case errors.Is(err, containerd.ErrUnknownUser), errors.Is(err, containerd.ErrNoAgent),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, fs.ErrExist),
		errors.Is(err, fs.ErrInvalid):
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return fmt.Errorf("%w: %w", abi.StatusIO, err)
}

// importFileOpen is file_open(opts, len, stream_out): a readable stream of
// a file (mode "read"), a writable stream into a file it creates or
// truncates ("write"), or a readable stream of changes as JSON lines
// ("watch").
func (s *services) importFileOpen(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, err := s.running(g)
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
	o, err := parseFileOptions(raw)
	if err != nil {
		return err
	}
	switch o.Mode {
	case "read", "":
		f, err := mc.OpenFile(ctx, o.Path, o.User, false, 0)
		if err != nil {
			return fileStatus(err)
		}
		return g.newHandle(mem, u32(a[2]), abi.KindReadStream, guestio.NewReadStream(f, nil, g.wake))
	case "write":
		f, err := mc.OpenFile(ctx, o.Path, o.User, true, o.Perm)
		if err != nil {
			return fileStatus(err)
		}
		return g.newHandle(mem, u32(a[2]), abi.KindWriteStream, guestio.NewWriteStream(fileSink{f}, g.wake))
	case "watch":
		r, err := mc.Watch(ctx, o.Path, o.User)
		if err != nil {
			return fileStatus(err)
		}
		return g.newHandle(mem, u32(a[2]), abi.KindReadStream, guestio.NewReadStream(r, nil, g.wake))
	}
	return fmt.Errorf("%w: mode must be \"read\", \"write\" or \"watch\", got %q", abi.StatusInvalid, o.Mode)
}

// importFileOp is file_op(opts, len, out, cap, len_out): stat and list
// write JSON (a FileInfo, an array of them) to out; mkdir, remove and
// rename write nothing.
func (s *services) importFileOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, err := s.running(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	o, err := parseFileOptions(raw)
	if err != nil {
		return err
	}
	var result any
	switch o.Op {
	case "stat":
		result, err = mc.Stat(ctx, o.Path, o.User)
	case "list":
		result, err = mc.ListDir(ctx, o.Path, o.User)
	case "mkdir":
		err = mc.MkdirAll(ctx, o.Path, o.User)
	case "remove":
		err = mc.Remove(ctx, o.Path, o.User, o.Recursive)
	case "rename":
		if o.To == "" {
			return fmt.Errorf("%w: rename needs to", abi.StatusInvalid)
		}
		err = mc.Rename(ctx, o.Path, o.To, o.User)
	default:
		return fmt.Errorf("%w: op must be stat, list, mkdir, remove or rename, got %q", abi.StatusInvalid, o.Op)
	}
	if err != nil {
		return fileStatus(err)
	}
	var out []byte
	if result != nil {
		out, _ = json.Marshal(result)
	}
	return writeOut(mem, u32(a[2]), u32(a[3]), u32(a[4]), out)
}
