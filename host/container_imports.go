package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/host/web"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// containerImports are the wharf functions behind ctx.container.
func (s *services) containerImports() []plugins.HostFunc {
	return []plugins.HostFunc{
		hostFunc(abi.ImportContainerStart, params(i32, i32, i32), s.importContainerStart),
		hostFunc(abi.ImportContainerRunning, params(i32), s.importContainerRunning),
		hostFunc(abi.ImportContainerDestroy, params(i32, i32, i32), s.importContainerDestroy),
		hostFunc(abi.ImportContainerSignal, params(i32, i32), s.importContainerSignal),
		hostFunc(abi.ImportContainerMonitor, params(i32), s.importContainerMonitor),
		hostFunc(abi.ImportContainerExec, params(i32, i32, i32), s.importContainerExec),
		hostFunc(abi.ImportProcessStatus, params(i32, i32), importProcessStatus),
		hostFunc(abi.ImportProcessKill, params(i32, i32, i32), importProcessKill),
		hostFunc(abi.ImportProcessPid, params(i32, i32), importProcessPid),
		hostFunc(abi.ImportContainerConnect, params(i32, i32), s.importContainerConnect),
		hostFunc(abi.ImportContainerConfig, params(i32, i32, i32), s.importContainerConfig),
		hostFunc(abi.ImportContainerFetch, params(i32, i32, i32, i32, i32, i32), s.importContainerFetch),
	}
}

// containerOf returns the calling object's container config.
func (s *services) containerOf(g *guest) (manifest.Container, error) {
	if g.object == nil {
		return manifest.Container{}, fmt.Errorf("%w: ctx.container exists only in a Durable Object", abi.StatusUnsupported)
	}
	return s.containers.Config(g.object.obj.Class())
}

// upcoming returns the calling object's container for a call that needs
// it running: one a start the object asked for is starting is waited for
// (off the instance's thread, by Upcoming.Container).
func (s *services) upcoming(g *guest) (containers.Upcoming, error) {
	if _, err := s.containerOf(g); err != nil {
		return containers.Upcoming{}, err
	}
	return s.containers.Upcoming(g.object.obj.Class(), g.object.obj.ID())
}

// inContainer is offThread for work on the calling object's container, u,
// once the starts and destroys the object asked for before the call have
// ended (Upcoming.Container).
func inContainer(ctx context.Context, g *guest, mem plugins.Memory, out uint32, u containers.Upcoming,
	work func(context.Context, containers.Container) (*outcome, error)) error {
	return offThread(ctx, g, mem, out, func(ctx context.Context) (*outcome, error) {
		c, err := u.Container(ctx)
		if err != nil {
			return nil, err
		}
		return work(ctx, c)
	})
}

func (s *services) importContainerStart(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	policy, err := s.policyOf(g)
	if err != nil {
		return err
	}
	o := g.object.obj
	name, named := o.Name()
	start, err := s.containers.Start(ctx, containers.Object{Class: o.Class(), ID: o.ID(), Name: name, Named: named,
		PersistDir: o.PersistDir()}, raw, policy)
	if err != nil {
		return err
	}
	err = offThread(ctx, g, mem, u32(a[2]), func(context.Context) (*outcome, error) { return nil, start.Run() })
	if err != nil {
		start.Abandon()
	}
	return err
}

func (s *services) importContainerRunning(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	running, err := s.containers.Running(g.object.obj.Class(), g.object.obj.ID())
	if err != nil {
		return err
	}
	return writeU32(mem, u32(a[0]), b2u(running))
}

func (s *services) importContainerDestroy(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	reason, err := readCopy(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	destroy, err := s.containers.Destroy(ctx, g.object.obj.Class(), g.object.obj.ID(), string(reason))
	if err != nil {
		return err
	}
	err = offThread(ctx, g, mem, u32(a[2]), func(context.Context) (*outcome, error) { return nil, destroy.Run() })
	if err != nil {
		destroy.Abandon()
	}
	return err
}

// importContainerSignal is container_signal(sig, pending_out).
func (s *services) importContainerSignal(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	sig := u32(a[0])
	if err := containers.CheckSignal(sig); err != nil {
		return err
	}
	u, err := s.upcoming(g)
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[1]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		return nil, containers.Signal(ctx, c, sig)
	})
}

// importContainerMonitor is container_monitor(pending_out): a pending
// result, read with call_result, that is ready when the container exits:
// OK for exit code 0, else IO with the exit code or the destroy reason.
func (s *services) importContainerMonitor(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	if _, err := s.containerOf(g); err != nil {
		return err
	}
	wait, err := s.containers.Monitor(g.object.obj.Class(), g.object.obj.ID())
	if err != nil {
		return err
	}
	p := guestio.NewPending(g.wake, func() {})
	if err := g.objectScope().newHandle(mem, u32(a[0]), abi.KindPending, p); err != nil {
		return err
	}
	go func() {
		if err := wait(); err != nil {
			p.Resolve(nil, err)
			return
		}
		p.Resolve([]byte{}, nil)
	}()
	return nil
}

// importContainerExec is container_exec(opts, opts_len, pending_out):
// call_result hands over the stdin, stdout, stderr and process handles
// (0 for an unpiped stream).
func (s *services) importContainerExec(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, err := s.upcoming(g)
	if err != nil {
		return err
	}
	raw, err := readCopy(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	// The process counts against the event's cap from now: results left
	// untaken would otherwise run any number of processes.
	settle, err := g.reserveProcess()
	if err != nil {
		return err
	}
	err = offThread(ctx, g, mem, u32(a[2]), func(ctx context.Context) (*outcome, error) {
		c, err := u.Container(ctx)
		if err != nil {
			settle()
			return nil, err
		}
		e, err := containers.Exec(ctx, s.base, c, raw, g.wake)
		if err != nil {
			settle()
			return nil, err
		}
		o := withHandles(handleOf{}, handleOf{}, handleOf{}, handleOf{abi.KindProcess, e})
		o.settle = settle
		if e.Stdin != nil {
			o.handles[0] = handleOf{abi.KindWriteStream, guestio.NewWriteStream(fileSink{e.Stdin}, g.wake)}
		}
		// Output is read ahead into the streams' buffers from the start, so
		// a process that prints a little can exit even if nobody reads it
		// yet.
		for i, r := range []*os.File{e.Stdout, e.Stderr} {
			if r != nil {
				rs := guestio.NewReadStream(r, g.wake)
				rs.Ready() // starts the pump
				o.handles[1+i] = handleOf{abi.KindReadStream, rs}
			}
		}
		return o, nil
	})
	if err != nil {
		settle()
	}
	return err
}

// fileSink is a writable stream into a pipe (a process's stdin).
type fileSink struct{ f *os.File }

// errStdinClosed is a write to the stdin of a process that closed it (or
// exited): the host pipe's EPIPE, said as the object sees it.
var errStdinClosed = errors.New("the process closed its stdin")

func (s fileSink) Write(p []byte) error {
	_, err := s.f.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		return errStdinClosed
	}
	return err
}
func (s fileSink) Finish() error   { return s.f.Close() }
func (s fileSink) Abort(err error) { s.f.Close() }

// importProcessStatus is process_status(proc, code_out): AGAIN while the
// process runs, then OK with its exit code.
func importProcessStatus(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	e, err := lookupProcess(g, a[0])
	if err != nil {
		return err
	}
	code, err := e.Status()
	if err != nil {
		return err
	}
	return writeU32(mem, u32(a[1]), code)
}

// lookupProcess is the guest's process handle h.
func lookupProcess(g *guest, h uint64) (*containers.Execution, error) {
	obj, err := g.table.Lookup(handleArg(h), abi.KindProcess)
	if err != nil {
		return nil, err
	}
	return obj.(*containers.Execution), nil
}

// importProcessKill is process_kill(proc, sig, pending_out).
func importProcessKill(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	e, err := lookupProcess(g, a[0])
	if err != nil {
		return err
	}
	sig := u32(a[1]) // a is the engine's stack: read it before the call returns
	return offThread(ctx, g, mem, u32(a[2]), func(ctx context.Context) (*outcome, error) {
		return nil, e.Kill(ctx, sig)
	})
}

func importProcessPid(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	e, err := lookupProcess(g, a[0])
	if err != nil {
		return err
	}
	return writeU32(mem, u32(a[1]), e.Pid())
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

// upcomingPort checks a port argument (first, so a bad port is INVAL
// anywhere) and returns the container (see upcoming).
func (s *services) upcomingPort(g *guest, arg uint64) (containers.Upcoming, uint32, error) {
	port := u32(arg)
	if err := containers.CheckPort(port); err != nil {
		return containers.Upcoming{}, 0, err
	}
	u, err := s.upcoming(g)
	return u, port, err
}

// importContainerConnect is container_connect(port, pending_out): a TCP
// connection to the container's address, which call_result hands over as
// a readable and a writable stream. A port nobody listens on is
// StatusRefused.
func (s *services) importContainerConnect(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, port, err := s.upcomingPort(g, a[0])
	if err != nil {
		return err
	}
	return inContainer(ctx, g, mem, u32(a[1]), u, func(ctx context.Context, c containers.Container) (*outcome, error) {
		conn, err := containers.Dial(ctx, c, port)
		if err != nil {
			return nil, err
		}
		tc := &tcpConn{conn: conn, open: 2}
		return withHandles(handleOf{abi.KindReadStream, guestio.NewReadStream(tcpReader{tc}, g.wake)},
			handleOf{abi.KindWriteStream, guestio.NewWriteStream(tcpSink{tc}, g.wake)}), nil
	})
}

// importContainerConfig is container_config(out, cap, len_out): the
// class's Container settings from wharf.toml as a field list.
func (s *services) importContainerConfig(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	cfg, err := s.containerOf(g)
	if err != nil {
		return err
	}
	return writeOut(mem, u32(a[0]), u32(a[1]), u32(a[2]), containers.EncodeConfig(cfg))
}

// containerClient makes container_fetch requests: straight to the
// container's address, connections kept alive, redirects not followed.
var containerClient = &http.Client{
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		DialContext: web.BoundDial(&net.Dialer{Timeout: containers.ConnectTimeout})},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// importContainerFetch is container_fetch(port, head, len, flags,
// body_out, pending_out): fetch to a port of the running container. The
// head's URL may be absolute (its host becomes the Host header) or just a
// path.
func (s *services) importContainerFetch(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	u, port, err := s.upcomingPort(g, a[0])
	if err != nil {
		return err
	}
	anyURL := func(u *url.URL) bool { return u.Path != "" || u.Host != "" }
	return s.startFetch(g, mem, a[1:], anyURL, "container_fetch needs a URL or a path", func(req *http.Request) func() (*http.Response, error) {
		if req.Host == "" {
			req.Host = cmp.Or(req.URL.Host, "container")
		}
		after := upgradeAfter(req)
		return func() (*http.Response, error) {
			c, err := u.Container(req.Context())
			if err != nil {
				return nil, err
			}
			req.URL.Scheme, req.URL.Host = "http", containers.Address(c, port)
			resp, err := containerClient.Do(req)
			if err != nil {
				if closed := containers.PortClosed(port, err); closed != nil {
					return nil, closed
				}
				return nil, fetchError(req, err)
			}
			if after != nil {
				after(resp)
			}
			return resp, nil
		}
	})
}

// upgradeAfter readies req, a container_fetch, for a protocol switch it
// asks for (a WebSocket, say): its body is what follows a 101 on the
// connection, not an HTTP body. It returns what to do with the response
// then; nil for a request that asks for no switch.
func upgradeAfter(req *http.Request) func(*http.Response) {
	if !web.WantsUpgrade(req.Header) {
		return nil
	}
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
	}
}

// containerExited tells the object its container's main process ended
// (MethodContainerExited), activating it if it was evicted. Nothing
// answers; an object being shut down is not told.
func (s *services) containerExited(class, object string) {
	ns, ok := s.objects.Class(class)
	if !ok {
		return
	}
	if _, left := s.leaving.LoadAndDelete(containerKey(class, object)); left {
		return
	}
	ctx, cancel := context.WithTimeout(s.base, time.Minute)
	s.objects.SendCall(ctx, ns, object, objects.NewCall(abi.MethodContainerExited, nil, guestio.NewPending(func() {}, cancel)), nil)
}

// leftReason is why the container of an object this host gave up was
// destroyed (ps -a, the log's stop line).
const leftReason = "its object left this host (drained, placed on another host, or this host restarted)"

// containerHoldings are the objects' containers, what they hold on this
// host in a cluster (objects.Holdings).
type containerHoldings struct {
	s *services
	// grace is how long a container of an object this host still owns
	// gets to exit after SIGTERM when the object leaves (the host's stop
	// grace).
	grace time.Duration
}

// Holds reports whether the object's container runs.
func (h containerHoldings) Holds(class, object string) bool {
	running, _ := h.s.containers.Running(class, object)
	return running
}

// Leave destroys the container of an object this host gives up, as the
// object's own Destroy would (also one a start under way boots): its next
// event, on whichever host, starts one there. One whose object this host
// still owns gets SIGTERM and the stop grace first, as at a shutdown;
// otherwise it is killed at once, as another host may run the object's
// container already. Its exit is not told to the object.
func (h containerHoldings) Leave(class, object string, owned bool) {
	s := h.s
	if s.containers == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.base, h.grace+time.Minute)
	defer cancel()
	c, ok := s.containers.Backend().Get(class, object)
	if !ok { // none, unless a start of the object's is under way: its container
		u, err := s.containers.Upcoming(class, object)
		if err != nil {
			return
		}
		if c, err = u.Container(ctx); err != nil {
			return
		}
	}
	key := containerKey(class, object)
	if !c.Exited() { // its exit is yet to be told
		s.leaving.Store(key, struct{}{})
	}
	if owned && !c.Exited() {
		if err := s.containers.Backend().Stop(ctx, class, object, h.grace, leftReason); err != nil {
			s.logger.Warn("stopping the container of an object this host gives up; killing it", "class", class, "object", object, "err", err)
		}
	}
	destroy, err := s.containers.Destroy(ctx, class, object, leftReason)
	if err == nil {
		err = destroy.Run()
	}
	if err != nil {
		s.leaving.Delete(key)
		s.logger.Error("destroying the container of an object this host gave up", "class", class, "object", object, "err", err)
	}
}

// leaveAdopted destroys the containers adopted from a previous run (the
// host was killed), as Leave does: in a cluster this host owns none of
// their objects, whose placements were under that run's lease, and another
// host may run them by now.
func (h containerHoldings) leaveAdopted() {
	list := h.s.containers.Backend().List()
	if len(list) == 0 {
		return
	}
	h.s.logger.Warn("destroying the containers adopted from this host's previous run: their objects' placements ended with it", "containers", len(list))
	for _, c := range list {
		info := c.Info()
		h.Leave(info.Class, info.Object, false)
	}
}

// containerKey names an object's container in services.leaving.
func containerKey(class, object string) string { return class + "/" + object }
