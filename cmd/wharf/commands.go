package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/host/adminserver"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/host/web"
	"github.com/wharfhq/wharf/internal/jsonlog"
	"github.com/wharfhq/wharf/internal/logtap"
	"github.com/wharfhq/wharf/internal/textlog"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// version is set at link time with -ldflags "-X main.version=..." (make
// build gives it git describe's output).
var version = "dev"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "wharf",
		Short:         "Run Workers compiled to WebAssembly on your own hosts",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInitCommand(), newBuildCommand(), newServeCommand(), newDevCommand(), newCompileCommand(), newVersionCommand(), newImagesCommand(), newClusterCommand())
	root.AddCommand(operatorCommands()...)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print wharf's version and the ABI it implements",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "wharf %s (ABI %s v%d, %s %s/%s)\n",
				versionText(), abi.ImportModule, abi.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

// versionText is version as make build sets it (git describe), else the
// module version go install recorded, else dev.
func versionText() string {
	if info, ok := debug.ReadBuildInfo(); ok && version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return version
}

func newBuildCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "build [dir|wharf.toml]",
		Short: "Compile a Go plugin to Wasm (GOOS=wasip1 GOARCH=wasm, a WASI command)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manifest.Load(argOrDot(args))
			if err != nil {
				return err
			}
			for _, w := range m.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			// Ctrl-C stops go build, and the build removes what it wrote.
			return untilInterrupted(cmd.Context(), func(ctx context.Context) error {
				path, err := manifest.Build(ctx, m, out, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), path)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write the module, or a directory to write <name>.wasm in (default <dir>/.wharf/build/<name>.wasm)")
	return cmd
}

func argOrDot(args []string) string {
	if len(args) == 0 {
		return "."
	}
	return args[0]
}

type serveFlags struct {
	listen        string
	dataDir       string
	logLevel      string
	logFormat     string
	noBuild       bool
	address       string
	dnsUpstream   []string
	metricsListen string
	stopGrace     time.Duration
	engine        string
	storageMB     int64
	// acceptLostCommits: see host.Config.AcceptLostCommits.
	acceptLostCommits bool
	registryFlags
	clusterFlags
	// watch rebuilds and reloads the plugin when its sources change
	// (wharf dev).
	watch bool
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [dir|wharf.toml]",
		Short: "Build (if needed) and serve a plugin over HTTP",
		Args:  cobra.MaximumNArgs(1),
		RunE:  f.run,
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&f.noBuild, "no-build", false, "serve the last build instead of running go build")
	return cmd
}

// newDevCommand is wharf serve that rebuilds and reloads the plugin on
// every save.
func newDevCommand() *cobra.Command {
	f := serveFlags{watch: true}
	cmd := &cobra.Command{
		Use:   "dev [dir|wharf.toml]",
		Short: "Serve a plugin and reload it on every save (requests and containers carry on)",
		Long: `wharf dev serves the plugin like wharf serve, watches its directory, and on
a change to a .go file, go.mod or go.sum rebuilds it and switches to the
new code without failing a request: new events go to the new code, events
under way end on the old, live objects come back from storage at their next
event, and containers keep running. The new build first runs on wazero's
interpreter, which is ready in about a third of the compile time, and
moves to compiled code once a process of its own has compiled it; the
next save stops that process. A build error is printed and the
old code keeps serving. A change to wharf.toml needs a restart.`,
		Args: cobra.MaximumNArgs(1),
		RunE: f.run,
	}
	f.register(cmd)
	return cmd
}

// run serves the plugin named by args until SIGINT or SIGTERM.
func (f *serveFlags) run(cmd *cobra.Command, args []string) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A server outlives whatever reads its log (a pipe to a shipper that
	// restarts, a terminal that closed): without this, Go ends the process
	// at its next log line, before it removes its containers and networks.
	// Notify, not Ignore, so the processes wharf starts keep the default.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	err := serve(ctx, argOrDot(args), *f)
	if err != nil && ctx.Err() != nil {
		// Stopped before serving (serve returns nil once it has served):
		// the step cut short failed with the cancellation ("go build:
		// signal: killed", "containerd did not start: context canceled",
		// "cleaning up after an interrupted build"), which misleads.
		return fmt.Errorf("stopped while starting: %v", context.Cause(ctx))
	}
	return err
}

// register adds the flags wharf serve and wharf dev share.
func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.listen, "listen", "", "HTTP listen address (default: the manifest's listen, else "+manifest.DefaultListen+")")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory (default <dir>/.wharf)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&f.logFormat, "log-format", "text", "text or json")
	cmd.Flags().StringVar(&f.address, "containerd-address", "", "use the containerd at this socket instead of starting one (only with [[containers]])")
	durationFlag(cmd.Flags(), &f.stopGrace, "stop-grace", 5*time.Second, true, "on shutdown, how long containers get to exit after SIGTERM before they are killed (0: at once)")
	cmd.Flags().StringVar(&f.metricsListen, "metrics-listen", "", "also serve Prometheus /metrics on this TCP address (it is always on the admin socket)")
	cmd.Flags().StringVar(&f.engine, "engine", "", "Wasm engine, wazero or wasmtime (default: the manifest's [limits] engine, else wazero)")
	cmd.Flags().Int64Var(&f.storageMB, "storage-memory-mb", storage.DefaultMemoryLimit>>20, "memory SQLite may cache for all Durable Object databases together (0: no limit)")
	cmd.Flags().BoolVar(&f.acceptLostCommits, "accept-lost-commits", false, "open a Durable Object whose commits the commit log has no whole record of (damaged; the start logs them) at its commit before them, instead of failing its events: give it once, after deciding to lose them")
	f.registryFlags.register(cmd.Flags())
	f.clusterFlags.register(cmd.Flags())
	cmd.Flags().StringSliceVar(&f.dnsUpstream, "dns-upstream", nil, "DNS servers (ip:port, or ip for port 53) for names containers may reach (default: the host's /etc/resolv.conf)")
}

// raiseGOMAXPROCS gives Go's scheduler a P per plugin instance on top of
// its one per core, unless GOMAXPROCS is set. An instance runs guest code
// for stretches Go cannot preempt (compiled Wasm on wazero, a call into C
// on wasmtime), so with one P per core the instances can hold them all
// while HTTP and object goroutines wait; with more Ps the kernel shares the
// cores instead. Measured on 2 cores (hello, 32 clients): wasmtime 1.5–1.8×
// the requests/s at less CPU per request, wazero 1.2–1.5×.
func raiseGOMAXPROCS(instances int) {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultGOMAXPROCS + instances)
	}
}

// defaultGOMAXPROCS is Go's own choice for this process (the CPUs it may
// use), taken before any serve raised it.
var defaultGOMAXPROCS = runtime.GOMAXPROCS(0)

// newLogHandler is the handler of wharf serve's log on stderr.
func newLogHandler(level, format string) (slog.Handler, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return textlog.New(os.Stderr, opts), nil
	case "json":
		return jsonlog.New(os.Stderr, opts), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

// acknowledgeEarlyStop says that a signal received before serving was
// heard, and again at every further one, unless wharf has stopped within
// stopAcknowledgeAfter: a step that cannot be cut short (a module compiled
// in wharf's own process, when compiling it apart failed, takes seconds)
// would otherwise make wharf look deaf to Ctrl-C, while every other step
// ends at once. signals are the stop signals, registered
// by the caller before it starts this, so that only they are counted (the
// context they also end is not: it and signals would count one signal
// twice); stopped says one ended the process's context before that.
// started is closed once serve serves or returns.
// stopAcknowledgeAfter is how long a stop before serving may take before
// wharf says it heard it.
const stopAcknowledgeAfter = time.Second

func acknowledgeEarlyStop(signals chan os.Signal, stopped bool, started <-chan struct{}, logger *slog.Logger) {
	defer signal.Stop(signals)
	if !stopped {
		select {
		case <-started:
			return
		case <-signals:
		}
	}
	for {
		select {
		case <-started: // serving already, or stopped: nothing to say
			return
		case <-time.After(stopAcknowledgeAfter):
			logger.Warn("stopping: wharf ends once the step under way does")
		}
		select {
		case <-started:
			return
		case <-signals:
		}
	}
}

func serve(ctx context.Context, target string, f serveFlags) error {
	fileLimit := host.RaiseFileLimit()
	handler, err := newLogHandler(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	tapped, tap := logtap.New(handler) // wharf tail follows it
	logger := slog.New(tapped)
	m, err := manifest.Load(target)
	if err != nil {
		return err
	}
	if f.watch && !m.NeedsBuild() {
		return fmt.Errorf("wharf dev rebuilds the plugin from its Go sources, but %s names a built module (main = %q): use wharf serve", m.Path, m.Main)
	}
	if f.storageMB < 0 || f.storageMB > math.MaxInt64>>20 {
		return fmt.Errorf("--storage-memory-mb must be 0 (no limit) or more, and fit in 64 bits as bytes, got %d", f.storageMB)
	}
	storage.SetMemoryLimit(f.storageMB << 20)
	if f.dnsUpstream, err = egress.UpstreamAddrs(f.dnsUpstream); err != nil {
		return fmt.Errorf("--dns-upstream: %w", err)
	}
	if f.engine != "" {
		if err := plugins.CheckEngine(f.engine); err != nil {
			return fmt.Errorf("--engine: %w", err)
		}
		m.Limits.Engine = f.engine
	}
	clusterCfg, err := f.clusterFlags.check(m.Name) // before the data directory's lock, which a running wharf holds
	if err != nil {
		return err
	}
	raiseGOMAXPROCS(m.Limits.Instances)
	dataDir := f.dataDir
	if dataDir == "" {
		dataDir = filepath.Join(m.Dir, manifest.DefaultStateDir)
	}
	lock, err := lockForServe(ctx, dataDir, hostbackend.StartsContainerd(m, f.address), logger) // before anything touches it
	if err != nil {
		return err
	}
	defer lock.Unlock()
	dataDir = lock.Path
	// Object SQL's sorts and temporary tables spill there, not to the
	// host's /tmp or /var/tmp.
	if err := storage.SetTempDir(filepath.Join(dataDir, storage.TempDirName)); err != nil {
		return err
	}
	if n := objects.OpenDatabases(fileLimit); n < objects.MemoryOpenDatabases/4 {
		logger.Warn("the open-file limit is low and wharf may not raise it: fewer object databases stay open, so more objects reopen theirs on their next event; raise ulimit -n",
			"limit", fileLimit, "open_databases", n)
	}
	var sources *sourceWatcher
	if f.watch { // before the first build, so no save is missed
		if sources, err = newSourceWatcher(m.Dir, dataDir); err != nil {
			return err
		}
		defer sources.Close()
		sources.watchImages(ctx, m)
	}
	listen := f.listen
	if listen == "" {
		listen = m.Listen
	}
	// Requests wait in the listen queue until the plugin is up, and an
	// address in use (this one or --metrics-listen's) is reported before a
	// build.
	ingress, err := web.ListenIngress(listen, m.Limits, logger)
	if err != nil && f.listen != "" {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--listen: %w (another program listens there: stop it, or give --listen another address; make demo: LISTEN=host:port)", err)
		}
		return fmt.Errorf("--listen: %w", err)
	}
	if err != nil {
		return m.ListenError(err)
	}
	defer ingress.Close()
	started := make(chan struct{}) // closed once serving, or failed to
	markStarted := sync.OnceFunc(func() { close(started) })
	defer markStarted()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go acknowledgeEarlyStop(signals, ctx.Err() != nil, started, logger.With("plugin", m.Name))
	var metricsLn net.Listener
	if f.metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", f.metricsListen); err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		defer metricsLn.Close()
	}
	// So are missing cluster certificates and a bad --registry-auth file.
	setup, err := f.clusterFlags.prepare(clusterCfg)
	if err != nil {
		return err
	}
	defer setup.release()
	reg, err := f.load()
	if err != nil {
		return err
	}
	if err := m.CheckModule(); err != nil {
		return err
	}
	wasm := m.WasmPath()
	if m.NeedsBuild() && !f.noBuild {
		logger.Info("building", "plugin", m.Name, "package", m.MainPath())
		if wasm, err = manifest.Build(ctx, m, "", os.Stderr); err != nil {
			return err
		}
	}
	if setup != nil { // the build it serves, which its membership shows
		if module, err := os.ReadFile(wasm); err == nil {
			setup.config.Build = cluster.BuildOf(module)
		}
		// The data directory's objects must hold this cluster's history.
		setup.config.CheckID = func(id string) error {
			where := "the cluster on etcd " + strings.Join(setup.config.Etcd.Endpoints, ",")
			movedTo, err := host.CheckClusterHistory(dataDir, id, where, f.clusterFlags.adopt)
			if movedTo != "" {
				logger.Warn("--cluster-adopt: this host's object data of the cluster it joined before was moved aside (kept, not used); its objects restore from this cluster's log",
					"moved_to", movedTo, "cluster", id)
			}
			return err
		}
	}
	start := time.Now()
	peer, err := setup.join(ctx, logger)
	if err != nil {
		return err
	}
	defer peer.close()
	var cc *objects.ClusterConfig
	if peer != nil {
		cc = peer.config
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var buildOutput io.Writer = os.Stderr
	if f.logFormat == "json" {
		// Every line of the log on stderr is a JSON record: the
		// progress of an image build was written there as docker's
		// plain text, between them.
		buildOutput = &buildLog{logger: logger, plugin: m.Name}
	}
	ctrs, err := hostbackend.Open(ctx, m, hostbackend.Options{DataDir: dataDir, Address: f.address, Logger: logger,
		Metrics: metrics, DNSUpstream: f.dnsUpstream, Registries: reg, BuildOutput: buildOutput})
	if err != nil {
		return err
	}
	worker, err := host.NewWorker(ctx, host.Config{Manifest: m, WasmPath: wasm, DataDir: dataDir, Logger: logger,
		Containers: ctrs, Metrics: metrics, StopGrace: f.stopGrace, Cluster: cc, CompileApart: compileApart, ServeEarly: true,
		AcceptLostCommits: f.acceptLostCommits})
	if err != nil {
		return err
	}
	defer func() {
		if err := worker.Close(context.Background()); err != nil {
			logger.Warn("shutting down", "plugin", m.Name, "err", err)
		}
	}()
	if ctx.Err() != nil { // stopped while the module loaded (a compile is not cut short)
		return context.Cause(ctx)
	}
	if peer != nil {
		if err := peer.serve(ctx, worker); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	srv := ingress.Server()
	errc := make(chan error, 1)
	go func() { errc <- ingress.Serve(worker) }()
	defer srv.Close() // a failure below stops serving before the worker closes
	adm, err := adminserver.Start(dataDir, worker, metrics, tap)
	if err != nil {
		return err
	}
	defer adm.Close()
	if metricsLn != nil {
		msrv := &http.Server{Handler: promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(metricsLn)
		defer msrv.Close()
	}
	markStarted()
	logger.Info("serving", "plugin", m.Name, "url", "http://"+ingress.Addr().String(), "load_time", time.Since(start).Round(time.Millisecond))
	if sources != nil {
		removeUnservedBuild(m)
		logger.Info("watching for changes: a save to a .go file, go.mod or go.sum rebuilds and reloads", "plugin", m.Name, "dir", m.Dir)
		// The watcher ends before the worker closes and wharf exits: a
		// rebuild under way stops and removes its build directory.
		reloadCtx, stopReloads := context.WithCancel(ctx)
		reloads := make(chan struct{})
		go func() {
			defer close(reloads)
			sources.reloadOnChange(reloadCtx, m, worker, logger)
		}()
		defer func() { stopReloads(); <-reloads }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "plugin", m.Name)
	// The containers stop while requests drain: a response streaming an
	// exec's output (never-ending, as a tail or a loop) ends only with its
	// container, and would otherwise hold the drain to its timeout.
	stopped := make(chan error, 1)
	go func() { stopped <- worker.StopContainers(context.Background()) }()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	peerStopped := make(chan struct{})
	go func() { defer close(peerStopped); peer.stopServing(sctx) }() // forwarded requests drain alike
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-peerStopped
	if err := <-stopped; err != nil {
		logger.Warn("stopping containers", "plugin", m.Name, "err", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// lockForServe takes the lock of the data directory dataDir for serve,
// which starts a containerd there if startsContainerd (wharf images
// commands, told it does not, do not wait for one). A wharf images command that
// holds it (started a moment before, or importing still) ends on its own:
// serve waits for it, and says so once, rather than refuse to start.
// Another owner (a wharf serve) is refused.
func lockForServe(ctx context.Context, dataDir string, startsContainerd bool, logger *slog.Logger) (*host.DataDirLock, error) {
	lockDataDir := host.LockDataDirWithoutContainerd
	if startsContainerd {
		lockDataDir = host.LockDataDir
	}
	for said := false; ; {
		lock, err := lockDataDir(dataDir)
		if !errors.Is(err, host.ErrDataDirInUse) {
			return lock, err
		}
		dir, rerr := filepath.EvalSymlinks(dataDir)
		if rerr != nil {
			return nil, err
		}
		pid := host.DataDirOwner(dir).Pid
		command, ok := imagesCommand(pid)
		if !ok {
			return nil, err
		}
		if !said {
			logger.Info("waiting for a wharf images command to finish with the data directory", "pid", pid, "command", command, "data_dir", dir)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// imagesCommand is the command line of process pid if it is a wharf
// images command.
func imagesCommand(pid int) (string, bool) {
	if pid <= 0 {
		return "", false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	if err != nil || len(args) < 2 || args[1] != "images" {
		return "", false
	}
	return "wharf " + strings.Join(args[1:], " "), true
}

// buildLog logs each line of an image build's progress as a record of
// wharf's log ("image build", its text in line), for --log-format json.
// A line is logged once its newline is written; the build's last line
// ends with one.
type buildLog struct {
	logger *slog.Logger
	plugin string
	mu     sync.Mutex
	buf    []byte
}

func (w *buildLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if line := strings.TrimRight(string(w.buf[:i]), "\r"); line != "" {
			w.logger.Info("image build", "plugin", w.plugin, "line", line)
		}
		w.buf = w.buf[i+1:]
	}
}
