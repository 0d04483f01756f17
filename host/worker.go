// Package host is the worker host: HTTP ingress, the plugin's instances, and
// the wharf imports (handle table, streams, poll, timers, fetch) that connect
// guests to services.
package host

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/host/web"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// Config describes a Worker to serve.
type Config struct {
	// Manifest is the plugin's parsed wharf.toml.
	Manifest *manifest.Manifest
	// WasmPath is the compiled module.
	WasmPath string
	// DataDir holds the compilation cache and Durable Object storage.
	DataDir string
	// CacheDir overrides where compiled code is cached (default
	// DataDir/cache).
	CacheDir string
	// Containers runs the manifest's [[containers]] (see package
	// containerd/hostbackend); nil without. The Worker owns it from
	// NewWorker on: Close, or a NewWorker that fails, closes it.
	Containers *containers.Service
	// Logger receives host and guest logs; nil means slog.Default().
	Logger *slog.Logger
	// Client makes guests' outbound fetches; nil means net/http's defaults
	// with each dial bound to its event.
	Client *http.Client
	// StopGrace is how long Close lets containers exit after SIGTERM
	// before killing them; 0 kills them at once.
	StopGrace time.Duration
	// Metrics registers the host's Prometheus metrics; nil registers none.
	Metrics prometheus.Registerer
	// Cluster joins the Worker's objects to a cluster; nil serves them on
	// this host alone.
	Cluster *objects.ClusterConfig
	// CompileApart, if set, compiles a module the compile cache lacks in
	// another process (see plugins.Config.CompileApart).
	CompileApart func(context.Context, plugins.Config) error
	// ServeEarly lets NewWorker and Reload return as soon as one of the
	// plugin's instances is up, the others starting meanwhile, so the first
	// request is answered sooner; by default they wait for every instance.
	ServeEarly bool
	// AcceptLostCommits opens an object's database that lacks commits the
	// commit log has no whole record of at its commit before them, instead
	// of failing its events (see storage.LogOptions).
	AcceptLostCommits bool
}

// services is what the imports need beyond the guest itself.
type services struct {
	base       context.Context // lives as long as the host; parents fetches and forwards
	client     *http.Client
	logger     *slog.Logger
	objects    *objects.Objects    // nil without Durable Object bindings
	containers *containers.Service // nil without [[containers]]
	// leaving holds the containers containerHoldings.Leave destroys (by
	// containerKey): their exit is not told to their objects, which run
	// on another host now.
	leaving sync.Map
}

// Worker serves HTTP requests as events of the plugin's long-running
// instances.
type Worker struct {
	sets      currentSet // the instances of the code being served
	cfg       Config     // with its defaults filled in
	logs      *guestLogs
	manifest  *manifest.Manifest
	stopGrace time.Duration
	logger    *slog.Logger
	services  *services
	cancel    context.CancelFunc
	idPrefix  string
	nextID    atomic.Uint64
	inFlight  atomic.Int64
	// unavailable logs the requests that found no instance up: every
	// request then fails alike, and traffic would flood the log.
	unavailable throttledLog

	reloadMu sync.Mutex     // guards the swap of sets and closed
	closed   bool           // Close has begun: a Reload's new set is discarded
	retiring sync.WaitGroup // sets replaced by Reload, until they close
}

// NewWorker loads the Worker's module, validates it and starts its instances.
func NewWorker(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = web.NewFetchClient()
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.DataDir, "cache")
	}
	m, logger := cfg.Manifest, cfg.Logger
	for _, warning := range m.Warnings {
		logger.Warn(warning, "plugin", m.Name)
	}
	if len(m.Containers) > 0 && cfg.Containers == nil {
		return nil, fmt.Errorf("%s: the manifest declares [[containers]] and Config.Containers is nil (open it with package containerd/hostbackend)", m.Path)
	}
	base, cancel := context.WithCancel(context.Background())
	s := &services{base: base, client: cfg.Client, logger: logger, containers: cfg.Containers}
	var prefix [4]byte
	rand.Read(prefix[:])
	w := &Worker{cfg: cfg, manifest: m, stopGrace: cfg.StopGrace, logger: logger, services: s, cancel: cancel, idPrefix: hex.EncodeToString(prefix[:]),
		logs: newGuestLogs(m.Name, logger, m.Limits.LogLineBytes, m.Limits.LogLinesPerSecond, m.Limits.LogBurst)}
	rt, err := w.startCode(ctx, cfg.WasmPath, false)
	if err != nil {
		s.containers.Close(context.WithoutCancel(ctx), 0)
		cancel()
		return nil, err
	}
	w.sets.Store(rt)
	// Loading left the compiler's garbage (tens of MB for a large module):
	// it goes back to the system now, not at some later collection.
	go debug.FreeOSMemory()
	fail := func(err error) (*Worker, error) {
		s.objects.Close()
		s.containers.Close(context.WithoutCancel(ctx), 0)
		rt.close()
		cancel()
		return nil, err
	}
	if len(m.DurableObjects.Bindings) > 0 {
		cc := cfg.Cluster
		if cc != nil {
			withHoldings := *cc
			withHoldings.Holdings = containerHoldings{s, cfg.StopGrace}
			cc = &withHoldings
		}
		if s.objects, err = objects.New(ctx, objectRuntime{&w.sets}, m, cfg.DataDir, storage.LogOptions{AcceptLostCommits: cfg.AcceptLostCommits}, cc, cfg.Metrics, logger); err != nil {
			return fail(err)
		}
	}
	if s.containers != nil {
		if cfg.Cluster != nil {
			// Containers adopted from a run that ended unclean are of
			// placements that ended with its lease.
			containerHoldings{s, cfg.StopGrace}.leaveAdopted()
		}
		// Exits of containers adopted before the objects existed reach
		// them now, and intercepted requests are answered.
		s.containers.Bind(s.containerExited, func(rw http.ResponseWriter, r *http.Request, class, object, handler string) {
			w.serve(rw, r, abi.EventOutbound, [][2]string{{abi.FieldHandler, handler}, {abi.FieldClass, class}, {abi.FieldID, object}})
		})
	}
	if s.objects != nil {
		// Alarms wait for the whole worker.
		s.objects.StartAlarms()
	}
	return w, nil
}

// CompileConfig is what compiling the module at wasmPath for this Worker
// needs (for plugins.Precompile): a Reload then finds the compiled code in
// the cache.
func (w *Worker) CompileConfig(wasmPath string) plugins.Config {
	return plugins.Config{
		Name:             w.manifest.Name,
		Path:             wasmPath,
		Engine:           w.manifest.Limits.Engine,
		CacheDir:         w.cfg.CacheDir,
		MemoryLimitBytes: uint64(w.manifest.Limits.MemoryMiB) << 20,
	}
}

// startCode loads the module at wasmPath (on wazero's interpreter if
// interpret) and starts its instances, which must register the manifest's
// classes and bindings.
func (w *Worker) startCode(ctx context.Context, wasmPath string, interpret bool) (*instanceSet, error) {
	m, s := w.manifest, w.services
	cfg := w.CompileConfig(wasmPath)
	cfg.Logger = w.logger
	cfg.CPUSlice = m.Limits.InstanceCPUSlice()
	cfg.HostModules = map[string][]plugins.HostFunc{abi.ImportModule: slices.Concat(s.imports(), s.objectImports(), s.containerImports(), s.fileImports(), s.backgroundImports(), s.egressImports())}
	cfg.Interpret = interpret
	cfg.CompileApart = w.cfg.CompileApart
	p, err := plugins.Load(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rt := newInstanceSet(p, w.logs, w.logger, m.Limits.Instances, uint32(cfg.MemoryLimitBytes/4*3), m.Limits.Timeout.Duration)
	err = rt.start(ctx, w.cfg.ServeEarly)
	if err != nil {
		err = fmt.Errorf("plugin %s: %w", wasmPath, err)
	} else {
		err = checkModule(rt.first(), m)
	}
	if err != nil {
		rt.close()
		return nil, err
	}
	return rt, nil
}

// Reload switches the Worker to the module at wasmPath (a new build of the
// same manifest) without failing a request: new events go to its
// instances, events under way end on the old ones, live objects move to
// the new code (rebuilt from storage) at their next event, and containers
// keep running. A module that fails to start leaves the old one serving.
// Once the old code closed, its memory (hundreds of MB for a large module,
// with the compiler's garbage) goes back to the system at once rather than
// at a later garbage collection. With interpret, the module runs on wazero's interpreter: it serves about
// three times sooner and runs several times slower (until a Reload
// without).
//
// The module loads (compiles) while the old code serves, and several
// Reloads may load at once; a Reload whose ctx ended by the time its module
// is ready discards it (a newer build took its place).
func (w *Worker) Reload(ctx context.Context, wasmPath string, interpret bool) error {
	rt, err := w.startCode(ctx, wasmPath, interpret)
	if err != nil {
		return err
	}
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	err = ctx.Err()
	if w.closed {
		err = plugins.ErrPoolClosed
	}
	if err != nil {
		rt.close()
		return err
	}
	old := w.sets.Swap(rt)
	w.retiring.Add(1)
	go func() {
		defer w.retiring.Done()
		old.retire()
		debug.FreeOSMemory()
	}()
	return nil
}

// Plugin is the loaded plugin being served.
func (w *Worker) Plugin() *plugins.Plugin { return w.sets.Load().plugin }

// Instances reports the plugin's instances.
func (w *Worker) Instances() InstanceStats { return w.sets.Load().stats() }

// InFlight is the number of requests being served.
func (w *Worker) InFlight() int64 { return w.inFlight.Load() }

// checkModule refuses a manifest binding a class the module does not
// register, and a module using a binding the manifest lacks (the SDK
// registers classes and bindings while the instance initialises).
func checkModule(in *instance, m *manifest.Manifest) error {
	in.mu.Lock()
	registered, used := in.classes, in.bindings
	in.mu.Unlock()
	var declared []string
	for _, b := range m.DurableObjects.Bindings {
		declared = append(declared, b.Name)
	}
	for _, b := range m.DurableObjects.Bindings {
		if !slices.Contains(registered, b.ClassName) {
			return fmt.Errorf("%s: durable object binding %s: class %q is not registered by the module (it registers: %s)",
				m.Path, b.Name, b.ClassName, cmp.Or(strings.Join(registered, ", "), "none"))
		}
	}
	for _, name := range used {
		if !slices.Contains(declared, name) {
			return fmt.Errorf("%s: the module uses Durable Object binding %q (sdk.GetNamespace), which has no [[durable_objects.bindings]] entry (declared: %s)",
				m.Path, name, cmp.Or(strings.Join(declared, ", "), "none"))
		}
	}
	return nil
}

// Objects is the Durable Object runtime, nil without bindings.
func (w *Worker) Objects() *objects.Objects { return w.services.objects }

// StopContainers stops every object's container (SIGTERM, and SIGKILL
// after the stop grace) and removes it, and the worker serves on: a
// shutdown calls it while in-flight requests drain, since a response that
// streams an exec's output ends only with its container. Close removes any
// container started after it.
func (w *Worker) StopContainers(ctx context.Context) error {
	return w.services.containers.StopAll(ctx, w.stopGrace)
}

// Close stops fetches, forwards and objects, removes the containers it ran
// and stops the instances and releases containerd.
func (w *Worker) Close(ctx context.Context) error {
	var err error
	if w.services.objects != nil {
		err = w.services.objects.Close()
	}
	err = errors.Join(err, w.services.containers.Close(ctx, w.stopGrace))
	w.reloadMu.Lock()
	w.closed = true // no Reload swaps a set in after this
	w.reloadMu.Unlock()
	err = errors.Join(err, w.sets.Load().close())
	w.retiring.Wait()
	w.cancel()
	return err
}

func (w *Worker) newRequestID() guestio.EventID {
	return guestio.EventID{Prefix: w.idPrefix, N: w.nextID.Add(1)}
}

// ServeHTTP runs one request as an event of the least loaded instance (see
// requestRank). A streamed body keeps flowing (e.g. through forward) after
// the event ends, and only then does ServeHTTP return.
func (w *Worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.serve(rw, r, abi.EventFetch, nil)
}

// serve runs one request as an event of kind, with extra pseudo-fields in
// its head.
func (w *Worker) serve(rw http.ResponseWriter, r *http.Request, kind abi.EventKind, pseudo [][2]string) {
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	id := w.newRequestID()
	in := newIncoming(rw, r)
	in.pseudo = pseudo
	ctx, cancel := w.sets.Load().eventContext(r.Context())
	defer cancel()
	var g *guest
	callErr := guestio.ErrNotStarted
	for attempt := 0; errors.Is(callErr, guestio.ErrNotStarted) && attempt < guestio.MaxDeliveries; attempt++ {
		inst, err := w.sets.pick(ctx, requestRank)
		if err != nil {
			w.unavailable.warn(w.logger, "no instance available", "plugin", w.manifest.Name, "request_id", id.String(), "err", err)
			http.Error(rw, "worker unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		g = inst.newEvent(ctx, id, nil)
		callErr = inst.deliver(ctx, g, kind, in)
	}
	if callErr != nil {
		if logger := g.Log(); errors.Is(callErr, plugins.ErrCanceled) {
			logger.Info("client went away", "err", callErr)
		} else {
			logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", callErr)
		}
	}
	// fail answers the client that what failed, naming the request id only:
	// the details are in the log, under the id.
	fail := func(what string, err error, status int) {
		http.Error(rw, (&guestio.Failure{What: what, ID: id.String(), Err: err}).Error(), status)
	}
	switch {
	case !in.responded && callErr != nil:
		fail(guestio.FailedWorker, callErr, failureStatus(callErr))
	case !in.responded:
		g.Log().Error("worker returned without sending a response", "method", r.Method, "path", r.URL.Path)
		http.Error(rw, "worker returned without sending a response (request id "+id.String()+")", http.StatusInternalServerError)
	}
	var streamErr error
	if in.stream != nil {
		streamErr = in.stream.Wait()
	}
	// A stream that failed once the client had gone away (its request's
	// context ended) ended for that, whoever aborted it first: the event's
	// cancellation races the stream's own watch. Read before
	// endRequestBody, whose read deadline may end that context too.
	clientGone := streamErr != nil && r.Context().Err() != nil
	if in.body != nil {
		in.body.Close()
		in.endRequestBody() // the body must not be read once ServeHTTP returns
	}
	if in.upgrade != nil {
		in.endUpgrade()
		return // a switched connection is closed, not aborted
	}
	if clientGone { // ErrReaderGone included: the stream's watch of r's context
		if !errors.Is(callErr, plugins.ErrCanceled) { // else logged above
			g.Log().Info("client went away", "err", streamErr)
		}
		panic(http.ErrAbortHandler) // nobody reads on: close the connection
	}
	if streamErr != nil && !in.headSent { // no byte reached the client: it can get a status
		g.Log().Warn("response body failed before its first byte", "err", streamErr)
		clear(rw.Header())
		in.rc.SetWriteDeadline(time.Time{}) // the abort set it to stop a write in flight
		if callErr == nil {
			fail("the worker's response", streamErr, http.StatusBadGateway)
		} else {
			fail(guestio.FailedWorker, callErr, failureStatus(callErr))
		}
		return
	}
	if streamErr != nil {
		g.Log().Warn("response body cut short", "err", streamErr)
		panic(http.ErrAbortHandler) // close the connection so the client sees a cut body
	}
}

// throttledLog logs a line at most once a second; the next line it logs
// counts those it held back meanwhile (held_back).
type throttledLog struct {
	mu       sync.Mutex
	last     time.Time
	heldBack int
}

func (l *throttledLog) warn(logger *slog.Logger, msg string, args ...any) {
	l.mu.Lock()
	if !l.last.IsZero() && time.Since(l.last) < time.Second {
		l.heldBack++
		l.mu.Unlock()
		return
	}
	held := l.heldBack
	l.last, l.heldBack = time.Now(), 0
	l.mu.Unlock()
	if held > 0 {
		args = append(args, "held_back", held)
	}
	logger.Warn(msg, args...)
}
