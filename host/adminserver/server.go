// Package adminserver serves the operator API (package admin) of a
// running Worker on a unix socket in the data directory. It reaches the
// Worker only through the Worker interface, so package host does not
// depend on it: cmd/wharf starts it over a host.Worker.
package adminserver

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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/keptlog"
	"github.com/wharfhq/wharf/internal/logtap"
	"github.com/wharfhq/wharf/manifest"
)

// operatorStopGrace is how long `wharf stop` waits after SIGTERM.
const operatorStopGrace = 10 * time.Second

// operatorStopReason is why a container `wharf stop` stopped exited (the
// log's stop line, ps -a, the object's monitor).
const operatorStopReason = "stopped by the operator"

// Worker is what the operator API needs of the Worker it serves
// (host.Worker implements it).
type Worker interface {
	// ObjectBindings are the manifest's Durable Object bindings, in its
	// order; none if the plugin has no Durable Objects.
	ObjectBindings() []manifest.Binding
	// ObjectIDFromName is the id name gives an object of class,
	// remembering the name.
	ObjectIDFromName(class, name string) (string, error)
	// ParseObjectID checks a whole object id of class, in hex.
	ParseObjectID(class, hex string) (string, error)
	// ObjectState is what the host knows of an object apart from its
	// container: the name its id was made from (if known), whether it
	// has an instance now, and its SQLite file.
	ObjectState(class, id string) (name string, live bool, storage string)
	// ContainerBackend runs the objects' containers; nil if the plugin
	// has no [[containers]].
	ContainerBackend() containers.Backend
	// ContainerImage is the image of class's container, if the class has
	// one.
	ContainerImage(class string) (string, bool)
	// Drain moves the host's objects to the other hosts of its cluster.
	Drain(ctx context.Context) error
}

// Server serves the operator API (package admin) on a unix socket in the
// data directory: only its owner (root) can connect.
type Server struct {
	w    Worker
	tap  *logtap.Tap
	srv  *http.Server
	path string
}

// Start listens on the data directory's admin socket. gather, if not nil,
// is served at /metrics; tap, if not nil, is followed by /v1/tail. The
// caller owns the data directory (see host.LockDataDir), so a socket
// already there was left by a crash.
func Start(dataDir string, w Worker, gather prometheus.Gatherer, tap *logtap.Tap) (*Server, error) {
	path := admin.SocketPath(dataDir)
	os.Remove(path)
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s := &Server{w: w, tap: tap, path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/containers", s.containers)
	mux.HandleFunc("GET /v1/stats", s.stats)
	mux.HandleFunc("GET /v1/tail", s.tail)
	mux.HandleFunc("GET /v1/objects/{binding}/{name}", s.inspect)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/stop", s.stop)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/destroy", s.destroy)
	mux.HandleFunc("GET /v1/objects/{binding}/{name}/logs", s.logs)
	mux.HandleFunc("POST /v1/objects/{binding}/{name}/exec", s.exec)
	mux.HandleFunc("POST /v1/cluster/drain", s.drain)
	if gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
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
func (s *Server) Close() error {
	err := s.srv.Close()
	os.Remove(s.path)
	return err
}

func (s *Server) containers(rw http.ResponseWriter, r *http.Request) {
	out := []admin.Container{}
	if be := s.w.ContainerBackend(); be != nil {
		for _, mc := range be.List() {
			out = append(out, s.describe(r.Context(), mc))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	json.NewEncoder(rw).Encode(out)
}

// describe is what ps shows of a container.
func (s *Server) describe(ctx context.Context, mc containers.Container) admin.Container {
	state := admin.StateRunning
	if mc.Paused() {
		state = admin.StatePaused
	} else if mc.Exited() {
		code, _, _ := mc.WaitExit()
		state = fmt.Sprintf("exited (code %d)", code)
		if reason := mc.StopCause(); reason != "" {
			state += ": " + reason
		} else if mc.OutOfMemory() {
			state += ": " + containers.OutOfMemory
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
	address := "" // none: an exited container released
	if info.Address.IsValid() {
		address = info.Address.String()
	}
	return admin.Container{Bindings: s.bindingsOf(info.Class), Class: info.Class, Object: info.Object, Name: all[containers.NameLabel],
		State: state, Started: info.Started, Address: address, Pid: mc.Pid(), Labels: labels}
}

// tail streams the log lines that pass the request's filter until the
// client goes away.
func (s *Server) tail(rw http.ResponseWriter, r *http.Request) {
	f, err := admin.TailFilterFrom(r.URL.Query())
	if err == nil {
		err = s.checkTailFilter(f)
	}
	if err == nil && s.tap == nil {
		err = errors.New("this host's log cannot be followed")
	}
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	lines, stop := s.tap.Listen()
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
func (s *Server) inspect(rw http.ResponseWriter, r *http.Request) {
	class, id, err := s.resolve(r)
	if err != nil {
		answer(rw, err)
		return
	}
	out := admin.Object{Bindings: s.bindingsOf(class), Class: class, Object: id}
	out.Name, out.Live, out.Storage = s.w.ObjectState(class, id)
	if image, ok := s.w.ContainerImage(class); ok {
		out.Image = image
		if mc, ok := s.w.ContainerBackend().Get(class, id); ok {
			c := s.describe(r.Context(), mc)
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
func (s *Server) stats(rw http.ResponseWriter, r *http.Request) {
	out := []admin.ContainerStats{}
	if be := s.w.ContainerBackend(); be != nil {
		for _, mc := range be.List() {
			if mc.Exited() {
				continue
			}
			st, err := mc.Stats(r.Context())
			if err != nil {
				continue // it exited meanwhile
			}
			out = append(out, *statsOf(s.describe(r.Context(), mc), st))
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

func (s *Server) bindingsOf(class string) []string {
	var out []string
	for _, b := range s.w.ObjectBindings() {
		if b.ClassName == class {
			out = append(out, b.Name)
		}
	}
	return out
}

// checkTailFilter refuses a --class or --object no line can match, which
// would otherwise follow the log showing nothing: a class the manifest
// does not have (a typo, or a binding's name given for its class), an
// object that is not the start of an id (a name, say).
func (s *Server) checkTailFilter(f admin.TailFilter) error {
	if f.Class != "" {
		var classes []string
		for _, b := range s.w.ObjectBindings() {
			classes = append(classes, b.ClassName)
		}
		switch {
		case len(classes) == 0:
			return fmt.Errorf("--class %q: this plugin has no Durable Objects", f.Class)
		case !slices.Contains(classes, f.Class):
			slices.Sort(classes)
			return fmt.Errorf("--class: no Durable Object class %q (the manifest has: %s)", f.Class, strings.Join(slices.Compact(classes), ", "))
		}
	}
	if f.Object != "" {
		return notIDPrefix(f.Object, "--object "+strconv.Quote(f.Object))
	}
	return nil
}

// notIDPrefix refuses s, shown as shown in the error, unless it is the
// start of an object id.
func notIDPrefix(s, shown string) error {
	if s != "" && len(s) <= abi.ObjectIDLen && strings.Trim(s, "0123456789abcdef") == "" {
		return nil
	}
	return fmt.Errorf("%s is not the start of an object id (%d lowercase hex digits, as wharf ps shows them)", shown, abi.ObjectIDLen)
}

// anyBinding in place of a binding lets an id prefix alone name an object
// of any class.
const anyBinding = "*"

// resolve finds the class and id of the object {binding}/{name} names: a
// binding and a name, or id:<hex or prefix> with a binding or anyBinding.
func (s *Server) resolve(r *http.Request) (class, id string, err error) {
	bindings := s.w.ObjectBindings()
	binding, name := r.PathValue("binding"), r.PathValue("name")
	if len(bindings) == 0 {
		return "", "", errors.New("this plugin has no Durable Objects")
	}
	hex, isID := strings.CutPrefix(name, "id:")
	if binding == anyBinding {
		if !isID {
			return "", "", fmt.Errorf("%q (any binding) names an object only by id:<hex>, not by a name: got %q", anyBinding, name)
		}
		return s.idFromPrefix("", hex)
	}
	i := slices.IndexFunc(bindings, func(b manifest.Binding) bool { return b.Name == binding })
	if i < 0 {
		return "", "", fmt.Errorf("no Durable Object binding %q (the manifest has: %s)", binding, strings.Join(bindingNames(bindings), ", "))
	}
	class = bindings[i].ClassName
	if isID {
		return s.idFromPrefix(class, hex)
	}
	id, err = s.w.ObjectIDFromName(class, name)
	return class, id, err
}

// object resolves the request's object to its container.
func (s *Server) object(r *http.Request) (containers.Container, error) {
	be := s.w.ContainerBackend()
	if be == nil {
		return nil, errors.New("this plugin has no containers")
	}
	class, id, err := s.resolve(r)
	if err != nil {
		return nil, err
	}
	if _, ok := s.w.ContainerImage(class); !ok {
		return nil, fmt.Errorf("class %s has no container", class)
	}
	mc, ok := be.Get(class, id)
	if !ok {
		return nil, fmt.Errorf("%s %s has no container", r.PathValue("binding"), r.PathValue("name"))
	}
	return mc, nil
}

// idFromPrefix finds the object whose container's id starts with prefix
// (as `wharf ps` shows it), in class or, if empty, in any class; a whole
// id is taken as it is.
func (s *Server) idFromPrefix(class, prefix string) (string, string, error) {
	if class != "" && len(prefix) == abi.ObjectIDLen {
		id, err := s.w.ParseObjectID(class, prefix)
		return class, id, err
	}
	if err := notIDPrefix(prefix, strconv.Quote("id:"+prefix)); err != nil {
		return "", "", err
	}
	where := "any class"
	if class != "" {
		if _, ok := s.w.ContainerImage(class); !ok {
			return "", "", fmt.Errorf("objects of class %s have no containers, so only their whole id (%d hex digits) names them, not %q", class, abi.ObjectIDLen, "id:"+prefix)
		}
		where = "class " + class
	}
	var found []containers.Info
	if be := s.w.ContainerBackend(); be != nil {
		for _, mc := range be.List() {
			info := mc.Info()
			if (class == "" || info.Class == class) && strings.HasPrefix(info.Object, prefix) {
				found = append(found, info)
			}
		}
	}
	switch len(found) {
	case 1:
		return found[0].Class, found[0].Object, nil
	case 0:
		return "", "", fmt.Errorf("no container of %s has an object id starting with %q", where, prefix)
	}
	return "", "", fmt.Errorf("%d containers of %s have an object id starting with %q: give more digits", len(found), where, prefix)
}

func (s *Server) stop(rw http.ResponseWriter, r *http.Request) {
	mc, err := s.object(r)
	if err == nil {
		info := mc.Info()
		err = s.w.ContainerBackend().Stop(r.Context(), info.Class, info.Object, operatorStopGrace, operatorStopReason)
	}
	answer(rw, err)
}

func (s *Server) destroy(rw http.ResponseWriter, r *http.Request) {
	mc, err := s.object(r)
	if err == nil {
		info := mc.Info()
		err = s.w.ContainerBackend().Destroy(r.Context(), info.Class, info.Object, "destroyed by the operator")
	}
	answer(rw, err)
}

// drain moves the host's objects to the other hosts of its cluster, until
// its timeout if it has one: then it answers which objects are left, and
// the host drains on (or, if the timeout passed before the host was marked
// draining, that it serves on).
func (s *Server) drain(rw http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var timeout time.Duration
	if v := r.URL.Query().Get(admin.DrainTimeout); v != "" {
		var err error
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
			http.Error(rw, fmt.Sprintf("drain: %s=%q: want a positive duration", admin.DrainTimeout, v), http.StatusBadRequest)
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err := s.w.Drain(ctx)
	switch {
	case !errors.Is(err, context.DeadlineExceeded) || r.Context().Err() != nil:
	case errors.Is(err, admin.ErrDrainNotBegun):
		err = fmt.Errorf("not drained within %s, which passed before the host was marked draining: it serves on as before, and wharf cluster drain again drains it: %w", timeout, err)
	default:
		err = fmt.Errorf("not drained within %s; this host drains on (it takes no object, and forwards their requests), and wharf cluster drain again waits for the rest: %w", timeout, err)
	}
	answer(rw, err)
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
func (s *Server) logs(rw http.ResponseWriter, r *http.Request) {
	mc, err := s.object(r)
	if err != nil {
		answer(rw, err)
		return
	}
	info := mc.Info()
	// The log and its previous file, read on across rotations.
	f, err := keptlog.Open(s.w.ContainerBackend().LogPath(info.Class, info.Object))
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
func (s *Server) exec(rw http.ResponseWriter, r *http.Request) {
	var req admin.ExecRequest
	mc, err := s.object(r)
	if err == nil {
		err = json.NewDecoder(r.Body).Decode(&req)
	}
	if err == nil && len(req.Cmd) == 0 {
		err = errors.New("exec needs a command")
	}
	if err == nil && mc.Exited() {
		err = fmt.Errorf("%s %s: the container is not running (%s)", r.PathValue("binding"), r.PathValue("name"), s.describe(r.Context(), mc).State)
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
	proc, err := mc.Exec(ctx, containers.ExecSpec{Args: req.Cmd, User: req.User, Stdin: stdinR, Terminal: req.TTY,
		Stdout: admin.FrameWriter{W: conn, Mu: &mu, Typ: admin.FrameStdout},
		Stderr: admin.FrameWriter{W: conn, Mu: &mu, Typ: admin.FrameStderr}})
	if err != nil {
		admin.WriteExecError(conn, admin.ExecError{Message: err.Error(), ExitCode: containers.ExecExitCode(err)})
		return
	}
	s.w.ContainerBackend().CountExec(mc.Info().Class)
	if req.TTY && req.Cols > 0 {
		proc.Resize(ctx, uint32(req.Cols), uint32(req.Rows))
	}
	go func() { // the client's input, resizes and end of input
		defer stdinW.Close()
		for {
			typ, p, err := admin.ReadFrame(brw)
			if err != nil {
				proc.End() // the client is gone: the process goes, with what it started
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
		admin.WriteExecError(conn, admin.ExecError{Message: err.Error()})
		return
	}
	admin.WriteFrame(conn, admin.FrameExit, binary.BigEndian.AppendUint32(nil, code))
}

// bindingNames lists the bindings' names, sorted, for messages.
func bindingNames(bindings []manifest.Binding) []string {
	var out []string
	for _, b := range bindings {
		out = append(out, b.Name)
	}
	slices.Sort(out)
	return out
}
