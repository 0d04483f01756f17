package containerd

import (
	"context"
	"errors"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wharfhq/wharf/containerd/agent"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// ErrNoInit is a missing agent binary.
var ErrNoInit = errors.New("the container agent " + wire.InitName + " was not found")

// FindInit returns the path of the agent binary: $WHARF_INIT, or
// wharf-init next to the running executable (where `make build` puts it).
func FindInit() (string, error) {
	if p := os.Getenv(wire.InitEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %w", ErrNoInit, wire.InitEnv, p, err)
		}
		return filepath.Abs(p)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoInit, err)
	}
	p := filepath.Join(filepath.Dir(exe), wire.InitName)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w next to %s: build it with `make build` (CGO_ENABLED=0 go build -o %s ./cmd/wharf-init), set %s, or set init = false for the class",
			ErrNoInit, exe, p, wire.InitEnv)
	}
	return p, nil
}

// uidFlag is the agent's argument that names the user it runs the
// entrypoint, and execs without a user, as.
const uidFlag = "--uid"

// withInit makes the agent the container's PID 1: it runs as root with the
// image's entrypoint as its child, run as the image's user, with *home as
// HOME if the environment sets none (runc sets the agent's, root's). dir
// is the host directory holding the agent's socket.
func withInit(binary, dir string, home *string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		u := s.Process.User
		args := []string{wire.Binary, uidFlag, strconv.FormatUint(uint64(u.UID), 10), "--gid", strconv.FormatUint(uint64(u.GID), 10)}
		if !setsEnv(s.Process.Env, "HOME") {
			args = append(args, "--home", *home)
		}
		if len(u.AdditionalGids) > 0 {
			gids := make([]string, len(u.AdditionalGids))
			for i, g := range u.AdditionalGids {
				gids[i] = strconv.FormatUint(uint64(g), 10)
			}
			args = append(args, "--groups", strings.Join(gids, ","))
		}
		s.Process.Args = append(append(args, "--"), s.Process.Args...)
		s.Process.User = specs.User{UID: 0, GID: 0}
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: wire.SocketDir, Type: "bind", Source: dir, Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: wire.Binary, Type: "bind", Source: binary, Options: []string{"bind", "ro", "nosuid", "nodev"}})
		return nil
	}
}

// entrypoint is the main process of p, a process withInit made: the
// arguments after the agent's own.
func entrypoint(p *specs.Process) []string {
	if i := slices.Index(p.Args, "--"); i >= 0 {
		return p.Args[i+1:]
	}
	return p.Args
}

// setsEnv reports whether env sets the variable name.
func setsEnv(env []string, name string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
}

// agentUID is the user the agent of p (a process withInit made) runs the
// entrypoint, and execs without a user, as.
func agentUID(p specs.Process) uint32 {
	i := slices.Index(p.Args, uidFlag)
	if i < 0 || i+1 >= len(p.Args) {
		return 0
	}
	uid, _ := strconv.ParseUint(p.Args[i+1], 10, 32)
	return uint32(uid)
}

// captureUser records the user the spec's process runs as (before withInit
// changes it).
func captureUser(u *specs.User) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		*u = s.Process.User
		return nil
	}
}

// captureProcess records the spec's process (once every option before it
// has changed it).
func captureProcess(p **specs.Process) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		*p = s.Process
		return nil
	}
}

// agentDir returns the host directory of the agent of a container whose
// spec runs one, or "".
func agentDir(s *oci.Spec) string {
	if s.Process == nil || len(s.Process.Args) == 0 || s.Process.Args[0] != wire.Binary {
		return ""
	}
	for _, m := range s.Mounts {
		if m.Destination == wire.SocketDir {
			return m.Source
		}
	}
	return ""
}

// makeAgentDir creates the agent's host directory; only root may enter it
// and its parent.
func makeAgentDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	// A start error left by an earlier container would be taken for this one's.
	if err := os.Remove(filepath.Join(dir, wire.StartErrorName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// agentProcess is a process the container's agent started.
type agentProcess struct {
	p *agent.Process
	// copies are the goroutines moving data between the caller's readers
	// and writers and the process's pipes or terminal; Wait waits for the
	// output ones.
	output sync.WaitGroup
}

// agentExec starts a process through the agent. Streams that are files
// (pipes) are handed to the process as they are; other readers and writers
// are connected through pipes.
func (c *Container) agentExec(ctx context.Context, spec ExecSpec, x wire.Exec) (Process, error) {
	x.Stdin, x.Stdout, x.Stderr = -1, -1, -1
	// files go to the process; theirs are the ends of our pipes the
	// process has once started, ours the other ends.
	var files, theirs, ours []*os.File
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	ap := &agentProcess{}
	var copies []func()
	add := func(f *os.File) int {
		files = append(files, f)
		return len(files) - 1
	}
	if !x.Terminal {
		switch in := spec.Stdin.(type) {
		case nil:
		case *os.File:
			x.Stdin = add(in)
		default:
			r, w, err := hostcontainers.Pipe()
			if err != nil {
				return nil, err
			}
			theirs, ours = append(theirs, r), append(ours, w)
			x.Stdin = add(r)
			copies = append(copies, func() { io.Copy(w, in); w.Close() })
		}
		var outFile *os.File
		for i, o := range []struct {
			w   io.Writer
			idx *int
		}{{spec.Stdout, &x.Stdout}, {spec.Stderr, &x.Stderr}} {
			switch out := o.w.(type) {
			case nil:
			case *os.File:
				if i == 1 && out == outFile {
					x.Stderr = x.Stdout // combined: one pipe keeps the order
					continue
				}
				outFile = out
				*o.idx = add(out)
			default:
				r, w, err := hostcontainers.Pipe()
				if err != nil {
					return nil, err
				}
				theirs, ours = append(theirs, w), append(ours, r)
				*o.idx = add(w)
				ap.output.Add(1)
				copies = append(copies, func() { defer ap.output.Done(); io.Copy(out, r); r.Close() })
			}
		}
	}
	p, err := c.agent.Exec(ctx, x, files...)
	if err != nil {
		for _, f := range ours {
			f.Close()
		}
		return nil, err
	}
	ap.p = p
	if x.Terminal {
		if spec.Stdout != nil {
			ap.output.Add(1)
			copies = append(copies, func() { defer ap.output.Done(); io.Copy(spec.Stdout, p.Terminal) })
		}
		if spec.Stdin != nil {
			copies = append(copies, func() { io.Copy(p.Terminal, spec.Stdin) })
		}
	}
	for _, run := range copies {
		go run()
	}
	return ap, nil
}

func (a *agentProcess) Pid() uint32 { return uint32(a.p.Pid) }

func (a *agentProcess) Resize(_ context.Context, cols, rows uint32) error {
	return a.p.Resize(uint16(cols), uint16(rows))
}

func (a *agentProcess) Wait(ctx context.Context) (uint32, error) {
	code, err := a.p.Wait(ctx)
	if ctx.Err() != nil {
		return 0, err
	}
	a.output.Wait() // all output delivered
	a.p.Close()
	return uint32(code), err
}

func (a *agentProcess) Kill(ctx context.Context, sig syscall.Signal) error {
	return a.p.Signal(ctx, sig)
}

// End hangs up: the agent kills the process's group.
func (a *agentProcess) End() { a.p.Close() }

// removeAgentDir removes a container's agent directory, if it has one.
func removeAgentDir(dir string) error {
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}
