package host

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"syscall"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/containerd"
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

// backgroundStatus maps an error of a background operation on a process
// that exists (or should) to its status.
func backgroundStatus(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", abi.StatusNotFound, err)
	case errors.Is(err, containerd.ErrNoAgentBackground), errors.Is(err, fs.ErrInvalid), errors.Is(err, fs.ErrExist),
		badExec(err):
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	case errors.Is(err, containerd.ErrBackgroundLimit):
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	}
	return fmt.Errorf("%w: %w", abi.StatusIO, err)
}

// startStatus maps an error of a start: a process that could not be
// started (no such program or directory) is IO, as for container_exec.
func startStatus(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: the process could not be started: %w", abi.StatusIO, err)
	}
	return backgroundStatus(err)
}

// backgroundCall returns the calling object's running container and the
// options of a background import; every operation but list and start
// names a process.
func (s *services) backgroundCall(g *guest, mem plugins.Memory, ptr, n uint32) (*containerd.Managed, abi.BackgroundOptions, error) {
	mc, err := s.running(g)
	if err != nil {
		return nil, abi.BackgroundOptions{}, err
	}
	raw, err := readMem(mem, ptr, n)
	if err != nil {
		return nil, abi.BackgroundOptions{}, err
	}
	o, err := abi.DecodeBackgroundOptions(raw)
	if err != nil {
		return nil, o, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	if o.ID == "" && o.Op != "start" && o.Op != "list" {
		return nil, o, fmt.Errorf("%w: a background process operation needs an id", abi.StatusInvalid)
	}
	return mc, o, nil
}

// maxStartResult is the largest description start can write for args:
// the guest's buffer must hold it before anything starts.
func maxStartResult(args []string) int {
	code := math.MaxInt32
	out, _ := json.Marshal(containerd.ProcessInfo{ID: strings.Repeat("x", 64), Pid: math.MaxInt32, Command: args,
		Status: "completed", ExitCode: &code, Started: math.MaxInt64, Exited: math.MaxInt64})
	return len(out)
}

// importBackgroundOp is background_op(opts, len, out, cap, len_out):
// start (writes the new process's JSON description), list (a JSON array
// of them), get (one) or kill (nothing).
func (s *services) importBackgroundOp(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	var result any
	switch o.Op {
	case "start":
		if len(o.Args) == 0 {
			return fmt.Errorf("%w: exec needs a command", abi.StatusInvalid)
		}
		if need := maxStartResult(o.Args); u32(a[3]) < uint32(need) {
			if err := writeU32(mem, u32(a[4]), uint32(need)); err != nil {
				return err
			}
			return fmt.Errorf("%w: start needs a buffer of %d bytes, it has %d (nothing was started)", abi.StatusBufferSmall, need, u32(a[3]))
		}
		info, err := mc.StartBackground(ctx, containerd.ExecSpec{Args: o.Args, Env: o.Env, Cwd: o.Cwd, User: o.User}, o.ID)
		if err != nil {
			return startStatus(err)
		}
		result = info
	case "list":
		list, err := mc.Backgrounds(ctx)
		if err != nil {
			return backgroundStatus(err)
		}
		result = list
	case "get":
		info, err := mc.Background(ctx, o.ID)
		if err != nil {
			return backgroundStatus(err)
		}
		result = info
	case "kill":
		sig := cmp.Or(o.Signal, uint32(syscall.SIGTERM))
		if err := checkSignal(sig); err != nil {
			return err
		}
		if err := mc.KillBackground(ctx, o.ID, int(sig)); err != nil {
			return backgroundStatus(err)
		}
		return nil
	default:
		return fmt.Errorf("%w: op must be start, list, get or kill, got %q", abi.StatusInvalid, o.Op)
	}
	out, _ := json.Marshal(result)
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
	mc, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	if o.From != "" && o.From != "start" && o.From != "now" {
		return fmt.Errorf("%w: from must be \"start\" or \"now\", got %q", abi.StatusInvalid, o.From)
	}
	r, n, err := mc.BackgroundLogs(ctx, o.ID, o.From != "now")
	if err != nil {
		return backgroundStatus(err)
	}
	binary.LittleEndian.PutUint64(dropped[:], uint64(n))
	mem.Write(u32(a[3]), dropped[:])
	return g.newHandle(mem, u32(a[2]), abi.KindReadStream, guestio.NewReadStream(r, nil, g.wake))
}

// importBackgroundWait is background_wait(opts, len, pending_out): a
// pending result, read with call_result, ready when the process has
// exited; its value is the process's JSON description.
func (s *services) importBackgroundWait(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, o, err := s.backgroundCall(g, mem, u32(a[0]), u32(a[1]))
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
		info, err := mc.WaitBackground(ctx, o.ID)
		if err != nil {
			p.Resolve(nil, backgroundStatus(err))
			return
		}
		out, _ := json.Marshal(info)
		p.Resolve(out, nil)
	}()
	return nil
}
