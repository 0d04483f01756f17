package host

import (
	"cmp"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// labelPrefix marks the labels of [[containers]] labels and the SDK's on
// containerd containers.
const labelPrefix = "wharf.label/"

// nameLabel holds the name the object's id was made from, when the host
// saw it (shown by `wharf ps`, kept across restarts with the container).
const nameLabel = "wharf.name"

// persistDir is where the object's persistent directories live on the
// host; deleting the object's storage removes it.
func persistDir(o *object) string { return filepath.Join(o.ns.dir, "persist", o.id) }

// containerImports are the wharf functions behind ctx.container.
func (s *services) containerImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportContainerStart, params(i32, i32, i32), s.importContainerStart),
		hostFunc(abi.ImportContainerRunning, params(i32), s.importContainerRunning),
		hostFunc(abi.ImportContainerDestroy, params(i32, i32, i32), s.importContainerDestroy),
		hostFunc(abi.ImportContainerSignal, params(i32), s.importContainerSignal),
		hostFunc(abi.ImportContainerMonitor, params(i32), s.importContainerMonitor),
		hostFunc(abi.ImportContainerExec, params(i32, i32, i32, i32, i32, i32), s.importContainerExec),
		hostFunc(abi.ImportProcessStatus, params(i32, i32), importProcessStatus),
		hostFunc(abi.ImportProcessKill, params(i32, i32), importProcessKill),
		hostFunc(abi.ImportProcessPid, params(i32, i32), importProcessPid),
		hostFunc(abi.ImportContainerConnect, params(i32, i32, i32), s.importContainerConnect),
		hostFunc(abi.ImportContainerConfig, params(i32, i32, i32), s.importContainerConfig),
		hostFunc(abi.ImportContainerFetch, params(i32, i32, i32, i32, i32, i32), s.importContainerFetch),
	}
}

// Errors of ctx.container a guest can cause.
var (
	errNoContainer      = errors.New("this Durable Object class has no container ([[containers]] in wharf.toml)")
	errNotRunning       = errors.New("the container is not running")
	errAlreadyRunning   = errors.New("the container is already running")
	errSignalOutOfRange = errors.New("signal must be from 1 to 64")
)

// badExec reports whether an exec (or background start) was refused for
// what the caller asked: a user the image lacks, or what the kernel
// cannot run as given. Such a refusal is INVALID, not an I/O failure.
func badExec(err error) bool {
	return errors.Is(err, containerd.ErrUnknownUser) || errors.Is(err, containerd.ErrBadExec)
}

// containerOf returns the calling object's container config.
func (s *services) containerOf(g *guest) (manifest.Container, error) {
	if g.object == nil {
		return manifest.Container{}, fmt.Errorf("%w: ctx.container exists only in a Durable Object", abi.StatusUnsupported)
	}
	c, ok := s.containerSpecs[g.object.ns.class]
	if !ok || s.containers == nil {
		return manifest.Container{}, fmt.Errorf("%w: %w", abi.StatusUnsupported, errNoContainer)
	}
	return c, nil
}

// running returns the calling object's running container.
func (s *services) running(g *guest) (*containerd.Managed, error) {
	if _, err := s.containerOf(g); err != nil {
		return nil, err
	}
	mc, ok := s.containers.Get(g.object.ns.class, g.object.id)
	if !ok || mc.Exited() {
		return nil, fmt.Errorf("%w: %w", abi.StatusNotFound, errNotRunning)
	}
	return mc, nil
}

func (s *services) importContainerStart(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	cfg, err := s.containerOf(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	spec := containerd.ContainerSpec{Image: cfg.Image, NoInit: !cfg.RunsInit(), Resources: containerd.Resources{
		VCPU: cfg.Resources.VCPU, MemoryBytes: uint64(cfg.Resources.MemoryMiB) << 20, Pids: 1024},
		DiskMB: cfg.Resources.DiskMB,
		Persistent: containerd.PersistentDirs{Paths: cfg.PersistentDirs, SizeMB: cfg.PersistentMB,
			Image: filepath.Join(persistDir(g.object), "disk.img")}}
	for _, c := range cfg.Capabilities {
		spec.Capabilities = append(spec.Capabilities, "CAP_"+c)
	}
	labels := map[string]string{}
	if name, ok := g.object.ns.names.name(g.object.id); ok {
		labels[nameLabel] = name
	}
	for k, v := range cfg.Labels {
		labels[labelPrefix+k] = v
	}
	opts, err := abi.DecodeStartOptions(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	spec.Env = append(spec.Env, opts.Env...)
	spec.Entrypoint = append(spec.Entrypoint, opts.Entrypoint...)
	for _, name := range opts.Secrets {
		if !slices.Contains(cfg.Secrets, name) {
			return fmt.Errorf("%w: secret %q is not declared: list it in secrets of the class's [[containers]] in wharf.toml", abi.StatusInvalid, name)
		}
	}
	for _, kv := range opts.Labels {
		k, val, _ := strings.Cut(kv, "=")
		labels[labelPrefix+k] = val
	}
	for _, name := range cfg.Secrets { // every start gets them all; the SDK may only name them
		v, ok := os.LookupEnv(name)
		if !ok {
			return fmt.Errorf("%w: secret %q is not set: export it in the environment of wharf serve", abi.StatusInvalid, name)
		}
		spec.Env = append(spec.Env, name+"="+v)
	}
	spec.Labels = labels
	policy, err := s.policyOf(g)
	if err != nil {
		return err
	}
	class, id := g.object.ns.class, g.object.id
	mc, running := s.containers.Get(class, id)
	if running && !mc.Exited() {
		return fmt.Errorf("%w: %w", abi.StatusBusy, errAlreadyRunning)
	}
	policy.SetInternet(opts.EnableInternet)
	return s.inBackground(g, mem, u32(a[2]), func() error {
		if running {
			s.containers.Destroy(ctx, class, id) // an exited run makes room for the next
		}
		if _, err := s.containers.Start(ctx, class, id, spec, policy, cfg.MaxInstances); err != nil {
			if errors.Is(err, containerd.ErrMaxInstances) {
				return fmt.Errorf("%w: %w", abi.StatusBusy, err)
			}
			return fmt.Errorf("%w: starting the container: %w", abi.StatusIO, err)
		}
		return nil
	})
}

// inBackground runs slow containerd work off the instance's thread: the
// guest gets a pending handle (at out) that call_result reads once work
// returns, and its other goroutines run meanwhile.
func (s *services) inBackground(g *guest, mem plugins.Memory, out uint32, work func() error) error {
	p := guestio.NewPending(g.wake, nil)
	if err := g.newHandle(mem, out, abi.KindPending, p); err != nil {
		return err
	}
	go func() {
		if err := work(); err != nil {
			p.Resolve(nil, err)
			return
		}
		p.Resolve([]byte{}, nil)
	}()
	return nil
}

func (s *services) importContainerRunning(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	_, err := s.running(g)
	if errors.Is(err, abi.StatusUnsupported) {
		return err
	}
	return writeU32(mem, u32(a[0]), b2u(err == nil))
}

func (s *services) importContainerDestroy(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	reason, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	class, id := g.object.ns.class, g.object.id
	if mc, ok := s.containers.Get(class, id); ok {
		mc.SetDestroyReason(string(reason))
	}
	return s.inBackground(g, mem, u32(a[2]), func() error {
		if err := s.containers.Destroy(ctx, class, id); err != nil {
			return fmt.Errorf("%w: destroying the container: %w", abi.StatusIO, err)
		}
		return nil
	})
}

func checkSignal(n uint32) error {
	if n < 1 || n > 64 {
		return fmt.Errorf("%w: %w, got %d", abi.StatusInvalid, errSignalOutOfRange, n)
	}
	return nil
}

func (s *services) importContainerSignal(ctx context.Context, g *guest, _ plugins.Memory, a []uint64) error {
	if err := checkSignal(u32(a[0])); err != nil {
		return err
	}
	mc, err := s.running(g)
	if err != nil {
		return err
	}
	if sig := u32(a[0]); sig == uint32(syscall.SIGTERM) || sig == uint32(syscall.SIGKILL) || sig == uint32(syscall.SIGINT) {
		mc.MarkStopRequested() // an exit the object asked for is not a failure
	}
	if err := mc.Signal(ctx, syscall.Signal(u32(a[0]))); err != nil {
		return fmt.Errorf("%w: %w", abi.StatusIO, err)
	}
	return nil
}

// importContainerMonitor is container_monitor(pending_out): a pending
// result, read with call_result, that is ready when the container exits:
// OK for exit code 0, else IO with the exit code or the destroy reason.
func (s *services) importContainerMonitor(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	// An exited container is still known until the next start or destroy,
	// so a monitor that comes late gets its exit code.
	mc, ok := s.containers.Get(g.object.ns.class, g.object.id)
	if !ok {
		return fmt.Errorf("%w: %w", abi.StatusNotFound, errNotRunning)
	}
	p := guestio.NewPending(g.wake, func() {})
	if err := g.objectScope().newHandle(mem, u32(a[0]), abi.KindPending, p); err != nil {
		return err
	}
	go func() {
		code, reason, err := mc.WaitExit()
		switch {
		case err != nil:
			p.Resolve(nil, fmt.Errorf("%w: waiting for the container: %w", abi.StatusIO, err))
		case reason != "":
			p.Resolve(nil, fmt.Errorf("%w: %s", abi.StatusIO, reason))
		case code != 0:
			p.Resolve(nil, fmt.Errorf("%w: the container exited with code %d", abi.StatusIO, code))
		default:
			p.Resolve([]byte{}, nil)
		}
	}()
	return nil
}

// process is an exec'd process as a guest sees it; ready once it exited.
type process struct {
	proc containerd.Process
	done chan struct{}
	code uint32
	err  error
}

// Ready reports whether the process has exited.
func (p *process) Ready() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// importContainerExec is container_exec(opts, opts_len, stdin_out,
// stdout_out, stderr_out, proc_out). Unpiped streams get handle 0.
func (s *services) importContainerExec(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, err := s.running(g)
	if err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	for _, out := range a[2:6] {
		if err := writeU32(mem, u32(out), 0); err != nil {
			return err
		}
	}
	opts, err := abi.DecodeExecOptions(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	spec := containerd.ExecSpec{Args: opts.Args, Env: opts.Env, Cwd: opts.Cwd, User: opts.User}
	stdin, stdout, stderr := opts.Stdin, cmp.Or(opts.Stdout, "pipe"), cmp.Or(opts.Stderr, "pipe")
	switch {
	case len(spec.Args) == 0:
		return fmt.Errorf("%w: exec needs a command", abi.StatusInvalid)
	case stdin != "" && stdin != "pipe":
		return fmt.Errorf("%w: stdin must be \"pipe\" or absent, got %q", abi.StatusInvalid, stdin)
	case stdout != "pipe" && stdout != "ignore":
		return fmt.Errorf("%w: stdout must be \"pipe\" or \"ignore\", got %q", abi.StatusInvalid, stdout)
	case stderr != "pipe" && stderr != "ignore" && stderr != "combined":
		return fmt.Errorf("%w: stderr must be \"pipe\", \"ignore\" or \"combined\", got %q", abi.StatusInvalid, stderr)
	case stderr == "combined" && stdout != "pipe":
		return fmt.Errorf("%w: stderr \"combined\" needs stdout \"pipe\"", abi.StatusInvalid)
	}
	// The process writes into pipes whose other ends the guest's streams
	// read; combined is one pipe for both, so their order is kept.
	var theirs []*os.File // closed once the process has exited
	var outR, errR *os.File
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = containerd.Pipe(); err == nil {
			theirs = append(theirs, w)
		}
		return r, w, err
	}
	closeAll := func(files ...*os.File) {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	var outW, errW, inR, inW *os.File
	if stdout == "pipe" {
		if outR, outW, err = pipe(); err != nil {
			return fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		spec.Stdout = outW
	}
	switch stderr {
	case "pipe":
		if errR, errW, err = pipe(); err != nil {
			closeAll(append(theirs, outR)...)
			return fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		spec.Stderr = errW
	case "combined":
		spec.Stderr = outW
	}
	if stdin == "pipe" {
		if inR, inW, err = containerd.Pipe(); err != nil {
			closeAll(append(theirs, outR, errR)...)
			return fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
		theirs = append(theirs, inR) // later writes to stdin fail instead of piling up
		spec.Stdin = inR
	}
	proc, err := mc.Exec(s.base, spec)
	if err != nil {
		closeAll(append(theirs, outR, errR, inW)...)
		if badExec(err) {
			return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
		}
		return fmt.Errorf("%w: the runtime could not start the process: %w", abi.StatusIO, err)
	}
	p := &process{proc: proc, done: make(chan struct{})}
	wake := g.wake
	go func() {
		p.code, p.err = proc.Wait(s.base)
		closeAll(theirs...)
		close(p.done)
		wake()
	}()
	if inW != nil {
		if err := g.newHandle(mem, u32(a[2]), abi.KindWriteStream, guestio.NewWriteStream(fileSink{inW}, g.wake)); err != nil {
			return err
		}
	}
	// Output is read ahead into the streams' buffers from the start, so a
	// process that prints a little can exit even if nobody reads it yet.
	for _, o := range []struct {
		r   *os.File
		out uint64
	}{{outR, a[3]}, {errR, a[4]}} {
		if o.r == nil {
			continue
		}
		rs := guestio.NewReadStream(o.r, nil, g.wake)
		rs.Ready() // starts the pump
		if err := g.newHandle(mem, u32(o.out), abi.KindReadStream, rs); err != nil {
			return err
		}
	}
	return g.newHandle(mem, u32(a[5]), abi.KindProcess, p)
}

// fileSink is a writable stream into a pipe (a process's stdin).
type fileSink struct{ f *os.File }

func (s fileSink) Write(p []byte) error {
	_, err := s.f.Write(p)
	return err
}
func (s fileSink) Finish() error   { return s.f.Close() }
func (s fileSink) Abort(err error) { s.f.Close() }

// importProcessStatus is process_status(proc, code_out): AGAIN while the
// process runs, then OK with its exit code.
func importProcessStatus(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindProcess)
	if err != nil {
		return err
	}
	p := obj.(*process)
	if !p.Ready() {
		return abi.StatusAgain
	}
	if p.err != nil {
		return fmt.Errorf("%w: %w", abi.StatusIO, p.err)
	}
	return writeU32(mem, u32(a[1]), p.code)
}

func importProcessKill(ctx context.Context, g *guest, _ plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindProcess)
	if err != nil {
		return err
	}
	if err := checkSignal(u32(a[1])); err != nil {
		return err
	}
	p := obj.(*process)
	if p.Ready() {
		return fmt.Errorf("%w: the process has exited", abi.StatusNotFound)
	}
	if err := p.proc.Kill(ctx, syscall.Signal(u32(a[1]))); err != nil {
		return fmt.Errorf("%w: %w", abi.StatusIO, err)
	}
	return nil
}

func importProcessPid(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindProcess)
	if err != nil {
		return err
	}
	return writeU32(mem, u32(a[1]), obj.(*process).proc.Pid())
}

// tcpConn is a connection to a container port seen as two streams; each
// closes its own direction and the last one closes the socket.
type tcpConn struct {
	conn *net.TCPConn
	mu   sync.Mutex
	open int
}

func (c *tcpConn) done() {
	c.mu.Lock()
	c.open--
	last := c.open == 0
	c.mu.Unlock()
	if last {
		c.conn.Close()
	}
}

// tcpReader is the readable half.
type tcpReader struct{ *tcpConn }

func (r tcpReader) Read(p []byte) (int, error) { return r.conn.Read(p) }

func (r tcpReader) Close() error {
	r.conn.CloseRead()
	r.done()
	return nil
}

// tcpSink is the writable half.
type tcpSink struct{ *tcpConn }

func (s tcpSink) Write(p []byte) error {
	_, err := s.conn.Write(p)
	return err
}

func (s tcpSink) Finish() error {
	err := s.conn.CloseWrite()
	s.done()
	return err
}

func (s tcpSink) Abort(error) {
	s.conn.SetLinger(0)
	s.done()
}

// connectTimeout bounds a dial to a container port.
const connectTimeout = 5 * time.Second

// runningPort checks a port argument (first, so a bad port is INVAL
// anywhere) and returns the running container.
func (s *services) runningPort(g *guest, arg uint64) (*containerd.Managed, uint32, error) {
	port := u32(arg)
	if port < 1 || port > 65535 {
		return nil, 0, fmt.Errorf("%w: port must be from 1 to 65535, got %d", abi.StatusInvalid, port)
	}
	mc, err := s.running(g)
	return mc, port, err
}

// importContainerConnect is container_connect(port, read_out, write_out):
// a TCP connection to the container's address, as a readable and a
// writable stream. A port nobody listens on is StatusRefused.
func (s *services) importContainerConnect(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, port, err := s.runningPort(g, a[0])
	if err != nil {
		return err
	}
	for _, out := range a[1:3] {
		if err := writeU32(mem, u32(out), 0); err != nil {
			return err
		}
	}
	addr := net.JoinHostPort(mc.Endpoint.ContainerIP.String(), strconv.Itoa(int(port)))
	d := net.Dialer{Timeout: connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: nothing listens on port %d of the container", abi.StatusRefused, port)
	}
	if err != nil {
		return fmt.Errorf("%w: connecting to port %d: %w", abi.StatusIO, port, err)
	}
	tc := &tcpConn{conn: conn.(*net.TCPConn), open: 2}
	if err := g.newHandle(mem, u32(a[1]), abi.KindReadStream, guestio.NewReadStream(tcpReader{tc}, nil, g.wake)); err != nil {
		tc.done() // the write half was never handed out
		return err
	}
	return g.newHandle(mem, u32(a[2]), abi.KindWriteStream, guestio.NewWriteStream(tcpSink{tc}, g.wake))
}

// importContainerConfig is container_config(out, cap, len_out): the
// class's Container settings from wharf.toml as a field list.
func (s *services) importContainerConfig(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	cfg, err := s.containerOf(g)
	if err != nil {
		return err
	}
	out := abi.ContainerConfig{SleepAfter: cfg.SleepAfter, HardTimeout: cfg.HardTimeout}
	for _, p := range cfg.ReadyOn {
		out.ReadyOn = append(out.ReadyOn, abi.ReadyProbe{Port: p.Port, Status: p.Status, Path: p.Path})
	}
	return writeOut(mem, u32(a[0]), u32(a[1]), u32(a[2]), out.Encode(nil))
}

// containerClient makes container_fetch requests: straight to the
// container's address, connections kept alive, redirects not followed.
var containerClient = &http.Client{
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		DialContext: boundDial(&net.Dialer{Timeout: connectTimeout})},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// importContainerFetch is container_fetch(port, head, len, flags,
// body_out, pending_out): fetch to a port of the running container. The
// head's URL may be absolute (its host becomes the Host header) or just a
// path.
func (s *services) importContainerFetch(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	mc, port, err := s.runningPort(g, a[0])
	if err != nil {
		return err
	}
	anyURL := func(u *url.URL) bool { return u.Path != "" || u.Host != "" }
	return s.startFetch(g, mem, a[1:], anyURL, "container_fetch needs a URL or a path", containerClient, func(req *http.Request) (func(*http.Response), error) {
		if req.Host == "" {
			req.Host = cmp.Or(req.URL.Host, "container")
		}
		req.URL.Scheme, req.URL.Host = "http", net.JoinHostPort(mc.Endpoint.ContainerIP.String(), strconv.Itoa(int(port)))
		if !wantsUpgrade(req.Header) {
			return nil, nil
		}
		// A protocol switch (e.g. a WebSocket): the request body is what
		// follows a 101 on the connection, not an HTTP body.
		up := req.Body
		req.Body, req.ContentLength = nil, 0
		req.Header.Del("Transfer-Encoding")
		req.Header.Del("Content-Length")
		return func(resp *http.Response) {
			rwc, ok := resp.Body.(io.ReadWriteCloser)
			if resp.StatusCode != http.StatusSwitchingProtocols || !ok || up == nil {
				if up != nil {
					up.Close()
				}
				return
			}
			go func() { // the client is done: so is the switched connection
				io.Copy(rwc, up)
				up.Close()
				rwc.Close()
			}()
		}, nil
	})
}

// containerExited tells the object its container's main process ended
// (MethodContainerExited), activating it if it was evicted. Nothing
// answers; an object being shut down is not told.
func (s *services) containerExited(class, object string) {
	ns, ok := s.objects.classes[class]
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(s.base, time.Minute)
	c := &callState{method: abi.MethodContainerExited, pending: guestio.NewPending(func() {}, cancel)}
	if err := s.objects.dispatch(ns, object, &objectEvent{kind: callEvent, ctx: ctx, call: c}); err != nil {
		cancel()
	}
}
