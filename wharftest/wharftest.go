// Package wharftest runs a plugin in a real wharf from the plugin's own
// `go test`: it builds the plugin to Wasm, serves it in-process on
// loopback with real object storage (and real containers when the machine
// can run them), and gives the test a URL and ways to reach objects by
// name.
//
//	func TestHello(t *testing.T) {
//		p := wharftest.Start(t, wharftest.Options{})
//		resp, err := http.Get(p.URL + "/")
//		...
//		var n int64
//		err = p.Call("COUNTER", "alice", "Increment", 1, &n)
//	}
//
// A plugin whose wharf.toml declares [[containers]] needs root and
// containerd on PATH; without them Start skips the test and says why.
package wharftest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/host/objects"
	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/internal/agent/wire"
	"github.com/wharfhq/wharf/internal/ephemeral"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/internal/textlog"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/sdk"
)

// Options configure Start.
type Options struct {
	// Dir is the plugin's directory or its wharf.toml; default "." (the
	// directory `go test` runs a package's tests in).
	Dir string
	// DataDir holds storage, SQLite's temporary files (in sqlite-tmp,
	// as with wharf serve) and containerd's state; default a new
	// temporary directory, removed after the test.
	DataDir string
	// Images are OCI or Docker image archives imported before the plugin
	// starts (BusyboxImage makes one).
	Images []string
	// StopGrace is how long containers get to exit when the test ends.
	StopGrace time.Duration
	// DNSUpstream are the DNS servers ("ip:port") for names containers may
	// reach; default the host's /etc/resolv.conf.
	DNSUpstream []string
}

// Plugin is a plugin served for one test.
type Plugin struct {
	// URL is where the Worker answers, e.g. http://127.0.0.1:41234.
	URL string
	// DataDir is the plugin's data directory.
	DataDir string
	// Worker is the running host.
	Worker *host.Worker

	srv  *httptest.Server
	logs *testutil.LogBuffer
	once sync.Once
	stop func()
}

// Start builds the plugin in opts.Dir and serves it until the test ends.
// A build or load error fails the test with the message `wharf serve`
// would print. The containers of a test binary killed before its cleanup
// ran (kill -9, a -timeout) are removed by the next test process that
// starts a plugin with containers.
func Start(t testing.TB, opts Options) *Plugin {
	t.Helper()
	m, err := manifest.Load(cmp.Or(opts.Dir, "."))
	if err != nil {
		t.Fatal(err)
	}
	if testutil.Engine != "" { // this run of wharf's own tests is on one engine
		m.Limits.Engine = testutil.Engine
	}
	if len(m.Containers) > 0 {
		if reason := cannotRunContainers(); reason != "" {
			t.Skipf("wharftest: %s declares [[containers]], which %s", m.Path, reason)
		}
		ephemeral.Mark()
		if err := useInit(m.Dir); err != nil {
			t.Fatal(err)
		}
	}
	wasm := m.WasmPath()
	if m.NeedsBuild() {
		var out bytes.Buffer
		if wasm, err = manifest.Build(context.Background(), m, filepath.Join(t.TempDir(), m.Name+".wasm"), &out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	}
	p := &Plugin{DataDir: opts.DataDir, logs: &testutil.LogBuffer{}}
	if p.DataDir == "" {
		p.DataDir = t.TempDir()
	}
	if len(opts.Images) > 0 {
		fixture.ImportArchives(t, p.DataDir, opts.Images...)
	}
	if err := useSQLiteTempDir(t, p.DataDir); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(textlog.New(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctrs, err := hostbackend.Open(context.Background(), m, hostbackend.Options{DataDir: p.DataDir, Logger: logger,
		DNSUpstream: opts.DNSUpstream})
	if err == nil {
		p.Worker, err = host.NewWorker(context.Background(), host.Config{Manifest: m, WasmPath: wasm, DataDir: p.DataDir,
			Logger: logger, StopGrace: opts.StopGrace, Containers: ctrs})
	}
	if errors.Is(err, containerd.ErrImageMissing) {
		t.Fatalf("%v\nwharftest: this test's data directory is its own: give the plugin's images as archives in wharftest.Options{Images: …} (wharftest.BusyboxImage(t) writes a busybox one)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(p.Worker)
	p.URL = p.srv.URL
	p.stop = func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		if err := p.Worker.Close(context.Background()); err != nil {
			t.Errorf("wharftest: closing %s: %v", m.Name, err)
		}
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("wharf log of %s:\n%s", m.Name, p.Logs())
		} else if opts.DataDir == "" {
			// Its containers are gone with the test's own data directory:
			// the next test process has nothing to reclaim there.
			ephemeral.UnregisterDir(p.DataDir)
		}
	})
	return p
}

// sqliteTemp says where SQLite writes the temporary files of the test
// process's databases (storage.SetTempDir; one directory serves the whole
// process), as wharf serve has it: in <data-dir>/sqlite-tmp of the plugin
// that started last of those whose tests still run (dirs, in the order
// they started; SQLite's default, /var/tmp or $TMPDIR, once none runs).
var sqliteTemp struct {
	sync.Mutex
	dirs []string
}

// useSQLiteTempDir has SQLite write its temporary files in the
// sqlite-tmp directory of dataDir, a plugin's data directory, emptied
// first, until t ends; then in that of the plugin started last of those
// whose tests still run (see sqliteTemp).
func useSQLiteTempDir(t testing.TB, dataDir string) error {
	dir := filepath.Join(dataDir, storage.TempDirName)
	sqliteTemp.Lock()
	defer sqliteTemp.Unlock()
	if err := storage.SetTempDir(dir); err != nil {
		return err
	}
	sqliteTemp.dirs = append(sqliteTemp.dirs, dir)
	// Registered before Start's cleanup, this runs after it: the plugin's
	// databases are closed by then, and its data directory is still there.
	t.Cleanup(func() {
		sqliteTemp.Lock()
		defer sqliteTemp.Unlock()
		dirs := sqliteTemp.dirs
		i := slices.Index(dirs, dir)
		sqliteTemp.dirs = slices.Delete(dirs, i, i+1)
		if i < len(sqliteTemp.dirs) { // not the one in use
			return
		}
		next := ""
		if len(sqliteTemp.dirs) > 0 {
			next = sqliteTemp.dirs[len(sqliteTemp.dirs)-1]
		}
		if err := storage.UseTempDir(next); err != nil {
			t.Errorf("wharftest: %v", err)
		}
	})
	return nil
}

// Stop shuts the plugin down (its containers too), as the end of the test
// would; later calls do nothing.
func (p *Plugin) Stop() { p.once.Do(p.stop) }

// Logs returns what the host and the plugin have logged so far, in wharf
// serve's text format.
func (p *Plugin) Logs() string { return p.logs.String() }

// Call runs method on the object that name maps to in the binding (as
// sdk.GetNamespace(binding).GetByName(name) would) with args encoded as
// JSON, and decodes its result into result unless result is nil. The
// method's error matches (errors.Is) what it would at the caller of
// sdk's Stub.Call: its status (abi.StatusNotFound), the status's sentinel
// (sdk.ErrNotFound), and each of the SDK's errors it matched in the
// method (sdk.ErrNotRunning, say), returned as it is or wrapped.
func (p *Plugin) Call(binding, name, method string, args, result any) error {
	objs := p.Worker.Objects()
	if objs == nil {
		return fmt.Errorf("wharftest: the plugin has no Durable Object bindings")
	}
	data, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("arguments of %s: %w", method, err)
	}
	out, err := objs.Call(context.Background(), binding, name, method, data)
	if err != nil {
		return asMethodError(err)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(out, result); err != nil {
		return fmt.Errorf("call %s: decoding its result: %w", method, err)
	}
	return nil
}

// asMethodError is err, a failed call, matching also what the error of
// sdk's Stub.Call would (sdk.MethodError): an error without a status (no
// such binding) is left as it is.
func asMethodError(err error) error {
	var status abi.Status
	if !errors.As(err, &status) {
		return err
	}
	return methodError{err: err, sdk: sdk.MethodError(status, err.Error(), objects.ErrorCodes(err))}
}

// methodError is a failed call as the host told it (err, whose words it
// says) and as the SDK sees it (sdk).
type methodError struct{ err, sdk error }

func (e methodError) Error() string { return e.err.Error() }

func (e methodError) Unwrap() []error { return []error{e.err, e.sdk} }

// Fetch sends req to the object that name maps to in the binding and
// returns its response.
func (p *Plugin) Fetch(binding, name string, req *http.Request) (*http.Response, error) {
	objs := p.Worker.Objects()
	if objs == nil {
		return nil, fmt.Errorf("wharftest: the plugin has no Durable Object bindings")
	}
	return objs.Fetch(binding, name, req)
}

// BusyboxImage writes wharf's test image (wharf.test/busybox:latest, a
// static busybox from Debian's busybox-static, nothing downloaded) into a
// temporary directory and returns the archive for Options.Images. The test
// is skipped when busybox-static is not installed.
func BusyboxImage(t testing.TB) string {
	t.Helper()
	archive, err := testimages.Busybox(t.TempDir())
	if err != nil {
		t.Skipf("wharftest: %v", err)
	}
	return archive
}

// cannotRunContainers says why this machine cannot run containers, or ""
// when it can.
func cannotRunContainers() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("need root (the test runs as uid %d)", os.Geteuid())
	}
	for _, bin := range []string{"containerd", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("need %s on PATH (scripts/deps.sh installs it)", bin)
		}
	}
	return ""
}

var (
	initOnce sync.Once
	initErr  error
)

// useInit builds the container agent once per test process, from the
// plugin's own module in dir, and points WHARF_INIT at it, unless
// WHARF_INIT already names one. The binary (a few MB) is kept in the
// user's cache directory (initDir), one file that each test process
// replaces, as Go keeps its build cache: in a scratch directory of the
// process, it stayed in /tmp after the plugin's last test run.
func useInit(dir string) error {
	if os.Getenv(wire.InitEnv) != "" {
		return nil
	}
	initOnce.Do(func() {
		initErr = buildInit(dir)
	})
	return initErr
}

// buildInit builds the container agent from the module in dir into
// initDir and points WHARF_INIT at it. The new binary replaces the old by
// a rename: a container of another test process that runs the old one
// keeps it.
func buildInit(dir string) error {
	into, err := initDir()
	if err != nil {
		return fmt.Errorf("wharftest: the container agent's directory: %w", err)
	}
	tmp, err := os.MkdirTemp(into, ".build-")
	if err != nil {
		return fmt.Errorf("wharftest: the container agent's directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, wire.InitName)
	cmd := exec.Command("go", "build", "-trimpath", "-o", built, "github.com/wharfhq/wharf/cmd/wharf-init")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wharftest: building the container agent: %v\n%s", err, msg)
	}
	out := filepath.Join(into, wire.InitName)
	if err := os.Rename(built, out); err != nil {
		return fmt.Errorf("wharftest: the container agent: %w", err)
	}
	return os.Setenv(wire.InitEnv, out)
}

// initDir is where buildInit keeps the container agent: wharf/wharftest
// in the user's cache directory, made if need be.
func initDir() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "wharf", "wharftest")
	return dir, os.MkdirAll(dir, 0o755)
}
