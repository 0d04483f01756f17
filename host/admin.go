package host

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/logtap"
)

// operatorStopGrace is how long `wharf stop` waits after SIGTERM.
const operatorStopGrace = 10 * time.Second

// Admin serves the operator API (package admin) on a unix socket in the
// data directory: only its owner (root) can connect.
type Admin struct {
	w    *Worker
	tap  *logtap.Tap
	srv  *http.Server
	ln   net.Listener
	path string
}

// StartAdmin listens on the data directory's admin socket. gather, if not
// nil, is served at /metrics; tap, if not nil, is followed by /v1/tail.
// The caller owns the data directory (see
// LockDataDir), so a socket already there was left by a crash.
func StartAdmin(dataDir string, w *Worker, gather prometheus.Gatherer, tap *logtap.Tap) (*Admin, error) {
	path := admin.SocketPath(dataDir)
	os.Remove(path)
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	a := &Admin{w: w, tap: tap, ln: ln, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/containers", a.containers)
	mux.HandleFunc("GET /v1/stats", a.stats)
	mux.HandleFunc("GET /v1/tail", a.tail)
	mux.HandleFunc("GET /v1/objects/{binding}/{name}", a.inspect)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/stop", a.stop)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/destroy", a.destroy)
	mux.HandleFunc("GET /v1/objects/{binding}/{name}/logs", a.logs)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/exec", a.exec)
	mux.HandleFunc("POST /v1/cluster/drain", a.drain)
	if gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	}
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

// listenPrivate listens on a unix socket at path that only its owner can
// use: it is made in a directory only the owner can enter, made 0600 and
// only then moved into place, so there is no moment anyone else could
// connect.
func listenPrivate(path string) (net.Listener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".admin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // the path changes below; Close removes it
	if err := errors.Join(os.Chmod(tmp, 0o600), os.Rename(tmp, path)); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Close stops the API and removes the socket.
func (a *Admin) Close() error {
	err := a.srv.Close()
	os.Remove(a.path)
	return err
}

func (a *Admin) containers(rw http.ResponseWriter, r *http.Request) {
	out := []admin.Container{}
	if s := a.w.services; s.containers != nil {
		for _, mc := range s.containers.Backend().List() {
			out = append(out, a.describe(r.Context(), mc))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	json.NewEncoder(rw).Encode(out)
}

// describe is what ps shows of a container.
func (a *Admin) describe(ctx context.Context, mc containers.Container) admin.Container {
	state := "running"
	if mc.Exited() {
		code, reason, _ := mc.WaitExit()
		state = fmt.Sprintf("exited (code %d)", code)
		if reason != "" {
			state += ": " + reason
		}
	}
	labels := map[string]string{}
	all := mc.Labels(ctx)
	for k, v := range all {
		if name, ok := strings.CutPrefix(k, containers.LabelPrefix); ok {
			labels[name] = v
		}
	}
	info := mc.Info()
	return admin.Container{Bindings: a.bindingsOf(info.Class), Class: info.Class, Object: info.Object, Name: all[containers.NameLabel],
		State: state, Started: info.Started, Address: info.Address.String(), Pid: mc.Pid(), Labels: labels}
}

// tail streams the log lines that pass the request's filter until the
// client goes away.
func (a *Admin) tail(rw http.ResponseWriter, r *http.Request) {
	f, err := admin.TailFilterFrom(r.URL.Query())
	if err == nil && a.tap == nil {
		err = errors.New("this host's log cannot be followed")
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	lines, stop := a.tap.Listen()
	defer stop()
	rw.Header().Set("Content-Type", "application/x-ndjson")
	rw.WriteHeader(http.StatusOK)
	flush := http.NewResponseController(rw).Flush
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case line := <-lines:
			if !f.Match(line) {
				continue
			}
			if _, err := rw.Write(line); err != nil {
				return
			}
			flush()
		}
	}
}

// inspect answers an object's full state.
func (a *Admin) inspect(rw http.ResponseWriter, r *http.Request) {
	ns, id, err := a.resolve(r)
	if err != nil {
		answer(rw, err)
		return
	}
	s := a.w.services
	out := admin.Object{Bindings: a.bindingsOf(ns.class), Class: ns.class, Object: id, Live: s.objects.isLive(ns, id),
		Storage: ns.storagePath(id)}
	out.Name, _ = ns.names.Name(id)
	if spec, ok := s.containers.Spec(ns.class); ok {
		out.Image = spec.Image
		if mc, ok := s.containers.Backend().Get(ns.class, id); ok {
			c := a.describe(r.Context(), mc)
			out.Name = cmp.Or(out.Name, c.Name)
			out.Container = &c
			out.ContainerID = mc.Info().ID
			out.AllLabels = mc.Labels(r.Context())
			if !mc.Exited() {
				if st, err := mc.Stats(r.Context()); err == nil {
					out.Stats = statsOf(c, st)
				}
			}
		}
	}
	json.NewEncoder(rw).Encode(out)
}

// stats answers every running container's resource use.
func (a *Admin) stats(rw http.ResponseWriter, r *http.Request) {
	out := []admin.ContainerStats{}
	if s := a.w.services; s.containers != nil {
		for _, mc := range s.containers.Backend().List() {
			if mc.Exited() {
				continue
			}
			st, err := mc.Stats(r.Context())
			if err != nil {
				continue // it exited meanwhile
			}
			out = append(out, *statsOf(a.describe(r.Context(), mc), st))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Object < out[j].Object })
	json.NewEncoder(rw).Encode(out)
}

func statsOf(c admin.Container, st containers.Stats) *admin.ContainerStats {
	return &admin.ContainerStats{Bindings: c.Bindings, Name: c.Name, Class: c.Class, Object: c.Object, At: time.Now(),
		CPUNanos: st.CPUNanos, MemoryBytes: st.MemoryBytes, MemoryLimitBytes: st.MemoryLimitBytes, Pids: st.Pids,
		ReadBytes: st.ReadBytes, WriteBytes: st.WriteBytes}
}

func (a *Admin) bindingsOf(class string) []string {
	var out []string
	for _, b := range a.w.manifest.DurableObjects.Bindings {
		if b.ClassName == class {
			out = append(out, b.Name)
		}
	}
	return out
}

// anyBinding in place of a binding lets an id prefix alone name an object
// of any class.
const anyBinding = "*"

// resolve finds the object {binding}/{name} names: a binding and a name,
// or id:<hex or prefix> with a binding or anyBinding.
func (a *Admin) resolve(r *http.Request) (*namespace, string, error) {
	s := a.w.services
	binding, name := r.PathValue("binding"), r.PathValue("name")
	if s.objects == nil {
		return nil, "", errors.New("this plugin has no Durable Objects")
	}
	hex, isID := strings.CutPrefix(name, "id:")
	if binding == anyBinding {
		if !isID {
			return nil, "", fmt.Errorf("an object is named by <binding> <name>, or by id:<hex> alone; got %q alone", name)
		}
		return a.idFromPrefix(nil, hex)
	}
	ns, ok := s.objects.bindings[binding]
	if !ok {
		return nil, "", fmt.Errorf("no Durable Object binding %q (the manifest has: %s)", binding, strings.Join(s.objects.bindingNames(), ", "))
	}
	if isID {
		return a.idFromPrefix(ns, hex)
	}
	return ns, ns.idFromName(name), nil
}

// object resolves the request's object to its container.
func (a *Admin) object(r *http.Request) (containers.Container, error) {
	s := a.w.services
	if s.containers == nil {
		return nil, errors.New("this plugin has no containers")
	}
	ns, id, err := a.resolve(r)
	if err != nil {
		return nil, err
	}
	if _, ok := s.containers.Spec(ns.class); !ok {
		return nil, fmt.Errorf("class %s has no container", ns.class)
	}
	mc, ok := s.containers.Backend().Get(ns.class, id)
	if !ok {
		return nil, fmt.Errorf("%s %s has no container", r.PathValue("binding"), r.PathValue("name"))
	}
	return mc, nil
}

// idFromPrefix finds the object whose container's id starts with prefix
// (as `wharf ps` shows it), in ns or, if nil, in any class; a whole id is
// taken as it is.
func (a *Admin) idFromPrefix(ns *namespace, prefix string) (*namespace, string, error) {
	objs := a.w.services.objects
	if ns != nil && len(prefix) == abi.ObjectIDLen {
		id, err := ns.ids.Parse(prefix)
		return ns, id, err
	}
	where := "any class"
	if ns != nil {
		where = "class " + ns.class
	}
	var found []containers.Info
	if a.w.services.containers != nil {
		for _, mc := range a.w.services.containers.Backend().List() {
			info := mc.Info()
			if (ns == nil || info.Class == ns.class) && strings.HasPrefix(info.Object, prefix) && prefix != "" {
				found = append(found, info)
			}
		}
	}
	switch len(found) {
	case 1:
		return objs.classes[found[0].Class], found[0].Object, nil
	case 0:
		return nil, "", fmt.Errorf("no container of %s has an object id starting with %q", where, prefix)
	}
	return nil, "", fmt.Errorf("%d containers of %s have an object id starting with %q: give more digits", len(found), where, prefix)
}

func (a *Admin) stop(rw http.ResponseWriter, r *http.Request) {
	mc, err := a.object(r)
	if err == nil {
		info := mc.Info()
		err = a.w.services.containers.Backend().Stop(r.Context(), info.Class, info.Object, operatorStopGrace)
	}
	answer(rw, err)
}

func (a *Admin) destroy(rw http.ResponseWriter, r *http.Request) {
	mc, err := a.object(r)
	if err == nil {
		mc.SetDestroyReason("destroyed by the operator")
		info := mc.Info()
		err = a.w.services.containers.Backend().Destroy(r.Context(), info.Class, info.Object)
	}
	answer(rw, err)
}

// drain moves the host's objects to the other hosts of its cluster.
func (a *Admin) drain(rw http.ResponseWriter, r *http.Request) {
	answer(rw, a.w.Drain(r.Context()))
}

func answer(rw http.ResponseWriter, err error) {
	if err != nil {
		http.Error(rw, err.Error(), http.StatusNotFound)
		return
	}
	rw.WriteHeader(http.StatusNoContent)
}

// logs sends the container's output so far and, with follow, what it
// writes until it exits or the client goes away.
func (a *Admin) logs(rw http.ResponseWriter, r *http.Request) {
	mc, err := a.object(r)
	if err != nil {
		answer(rw, err)
		return
	}
	info := mc.Info()
	f, err := os.Open(a.w.services.containers.Backend().LogPath(info.Class, info.Object))
	if err != nil {
		answer(rw, fmt.Errorf("no output recorded: %w", err))
		return
	}
	defer f.Close()
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(rw)
	follow := r.URL.Query().Get("follow") != ""
	for {
		io.Copy(rw, f)
		rc.Flush()
		if !follow || mc.Exited() {
			io.Copy(rw, f)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exec upgrades the connection and runs a process, framing its streams
// (see package admin).
func (a *Admin) exec(rw http.ResponseWriter, r *http.Request) {
	var req admin.ExecRequest
	mc, err := a.object(r)
	if err == nil {
		err = json.NewDecoder(r.Body).Decode(&req)
	}
	if err == nil && len(req.Cmd) == 0 {
		err = errors.New("exec needs a command")
	}
	if err == nil && mc.Exited() {
		err = errors.New("the container is not running")
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: wharf-exec\r\nConnection: Upgrade\r\n\r\n")
	var mu sync.Mutex
	stdinR, stdinW := io.Pipe()
	defer stdinR.Close() // input that arrives after the exit is dropped
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proc, err := mc.Exec(ctx, containers.ExecSpec{Args: req.Cmd, Stdin: stdinR, Terminal: req.TTY,
		Stdout: admin.FrameWriter{W: conn, Mu: &mu, Typ: admin.FrameStdout},
		Stderr: admin.FrameWriter{W: conn, Mu: &mu, Typ: admin.FrameStderr}})
	if err != nil {
		admin.WriteFrame(conn, admin.FrameError, []byte(err.Error()))
		return
	}
	a.w.services.containers.Backend().CountExec(mc.Info().Class)
	if req.TTY && req.Cols > 0 {
		proc.Resize(ctx, uint32(req.Cols), uint32(req.Rows))
	}
	go func() { // the client's input, resizes and end of input
		defer stdinW.Close()
		for {
			typ, p, err := admin.ReadFrame(brw)
			if err != nil {
				proc.Kill(ctx, 9) // the client is gone
				return
			}
			switch typ {
			case admin.FrameStdin:
				stdinW.Write(p)
			case admin.FrameStdinEOF:
				stdinW.Close()
			case admin.FrameResize:
				if len(p) == 4 {
					proc.Resize(ctx, uint32(binary.BigEndian.Uint16(p[:2])), uint32(binary.BigEndian.Uint16(p[2:])))
				}
			}
		}
	}()
	code, err := proc.Wait(ctx)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		admin.WriteFrame(conn, admin.FrameError, []byte(err.Error()))
		return
	}
	admin.WriteFrame(conn, admin.FrameExit, binary.BigEndian.AppendUint32(nil, code))
}

// bindingNames lists the manifest's bindings, for messages.
func (o *Objects) bindingNames() []string {
	var out []string
	for b := range o.bindings {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}
