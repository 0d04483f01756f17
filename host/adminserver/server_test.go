package adminserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/logtap"
	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/manifest"
)

// fakeWorker is a Worker whose ids are "id-" and the name.
type fakeWorker struct {
	bindings []manifest.Binding
	images   map[string]string // by class
	backend  containers.Backend

	mu      sync.Mutex
	names   map[string]string // by id, as ObjectIDFromName noted them
	live    map[string]bool
	drained int
}

func (w *fakeWorker) ObjectBindings() []manifest.Binding { return w.bindings }

func (w *fakeWorker) ObjectIDFromName(class, name string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := "id-" + name
	w.names[id] = name
	return id, nil
}

func (w *fakeWorker) ParseObjectID(class, hex string) (string, error) {
	if strings.Trim(hex, "0123456789abcdef") != "" {
		return "", errors.New("not an id of " + class)
	}
	return hex, nil
}

func (w *fakeWorker) ObjectState(class, id string) (string, bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.names[id], w.live[id], "/objects/" + class + "/" + id + ".sqlite"
}

func (w *fakeWorker) ContainerBackend() containers.Backend { return w.backend }

func (w *fakeWorker) ContainerImage(class string) (string, bool) {
	image, ok := w.images[class]
	return image, ok
}

func (w *fakeWorker) Drain(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drained++
	return nil
}

// fakeBackend has the containers it lists; what the operator API does to
// them is recorded in calls.
type fakeBackend struct {
	containers.Backend // calls the tests do not expect panic
	list               []*fakeContainer

	mu    sync.Mutex
	calls []string
}

func (b *fakeBackend) List() []containers.Container {
	var out []containers.Container
	for _, c := range b.list {
		out = append(out, c)
	}
	return out
}

func (b *fakeBackend) Get(class, object string) (containers.Container, bool) {
	for _, c := range b.list {
		if c.info.Class == class && c.info.Object == object {
			return c, true
		}
	}
	return nil, false
}

func (b *fakeBackend) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *fakeBackend) Stop(_ context.Context, class, object string, grace time.Duration, reason string) error {
	b.record("stop " + class + " " + object + " " + grace.String() + ": " + reason)
	return nil
}

func (b *fakeBackend) Destroy(_ context.Context, class, object, reason string) error {
	b.record("destroy " + class + " " + object + ": " + reason)
	return nil
}

func (b *fakeBackend) recorded() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

type fakeContainer struct {
	containers.Container
	info   containers.Info
	labels map[string]string

	mu     sync.Mutex
	reason string
	// paused by its object's SIGSTOP.
	paused bool
	// exited, with its code and the cause of its stop, if it has.
	exited bool
	code   uint32
	cause  string
}

func (c *fakeContainer) Info() containers.Info                    { return c.info }
func (c *fakeContainer) Exited() bool                             { return c.exited }
func (c *fakeContainer) Paused() bool                             { return c.paused }
func (c *fakeContainer) WaitExit() (uint32, string, error)        { return c.code, c.reason, nil }
func (c *fakeContainer) StopCause() string                        { return c.cause }
func (c *fakeContainer) Pid() uint32                              { return 42 }
func (c *fakeContainer) Labels(context.Context) map[string]string { return c.labels }
func (c *fakeContainer) Stats(context.Context) (containers.Stats, error) {
	return containers.Stats{MemoryBytes: 1 << 20, Pids: 3}, nil
}

func (c *fakeContainer) SetDestroyReason(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reason = reason
}

// idOf is a whole object id (abi.ObjectIDLen hex digits) starting with
// prefix.
func idOf(prefix string) string { return prefix + strings.Repeat("0", 64-len(prefix)) }

// start serves w's operator API on a socket in a new data directory and
// returns a client of it.
func start(t *testing.T, w Worker, gather prometheus.Gatherer) (*admin.Client, string) {
	t.Helper()
	dir := t.TempDir()
	srv, err := Start(dir, w, gather, nil)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return admin.NewClient(dir), dir
}

// webapp is a Worker of two classes, App with a container image and Cache
// without, bound three times; App's containers are a1… and a2….
func webapp() (*fakeWorker, *fakeBackend) {
	be := &fakeBackend{list: []*fakeContainer{
		{info: containers.Info{Class: "App", Object: idOf("a1"), ID: "ctr-a1", Started: time.Unix(100, 0)},
			labels: map[string]string{containers.NameLabel: "alice", containers.LabelPrefix + "tier": "web", "other": "x"}},
		{info: containers.Info{Class: "App", Object: idOf("a2"), ID: "ctr-a2", Started: time.Unix(50, 0)}, paused: true},
	}}
	w := &fakeWorker{
		bindings: []manifest.Binding{{Name: "APP", ClassName: "App"}, {Name: "CACHE", ClassName: "Cache"}, {Name: "APP2", ClassName: "App"}},
		images:   map[string]string{"App": "busybox"},
		backend:  be,
		names:    map[string]string{},
		live:     map[string]bool{"id-bob": true},
	}
	return w, be
}

// TestResolveObjects names objects every way the CLI can: binding and
// name, binding and a whole id, an id prefix of a container alone; and
// reads what inspect, ps and stats answer of them.
func TestResolveObjects(t *testing.T) {
	w, _ := webapp()
	c, dir := start(t, w, nil)
	ctx := context.Background()
	fi, err := os.Stat(admin.SocketPath(dir))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the owner can use the admin socket")

	o, err := c.Inspect(ctx, "APP2", "bob")
	require.NoError(t, err)
	assert.Equal(t, admin.Object{Bindings: []string{"APP", "APP2"}, Class: "App", Object: "id-bob", Name: "bob", Live: true,
		Storage: "/objects/App/id-bob.sqlite", Image: "busybox"}, *o, "an object without a container")

	o, err = c.Inspect(ctx, "*", "id:a1")
	require.NoError(t, err)
	assert.Equal(t, "App", o.Class)
	assert.Equal(t, idOf("a1"), o.Object)
	assert.Equal(t, "alice", o.Name, "the name comes from the container when the host does not know it")
	assert.Equal(t, "ctr-a1", o.ContainerID)
	require.NotNil(t, o.Container)
	assert.Equal(t, map[string]string{"tier": "web"}, o.Container.Labels)
	require.NotNil(t, o.Stats)
	assert.Equal(t, uint64(1<<20), o.Stats.MemoryBytes)

	o, err = c.Inspect(ctx, "APP", "id:"+idOf("a2"))
	require.NoError(t, err)
	assert.Equal(t, idOf("a2"), o.Object, "a whole id")
	assert.Equal(t, "ctr-a2", o.ContainerID)
	o, err = c.Inspect(ctx, "CACHE", "id:"+idOf("c"))
	require.NoError(t, err)
	assert.Equal(t, "Cache", o.Class, "a whole id needs no container")
	assert.Empty(t, o.Image)
	assert.Nil(t, o.Container)

	ps, err := c.Containers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 2)
	assert.Equal(t, idOf("a2"), ps[0].Object, "oldest first")
	assert.Equal(t, "alice", ps[1].Name)
	assert.Equal(t, "running", ps[1].State)
	assert.Equal(t, "paused", ps[0].State, "ps lists a paused container, as paused")
	stats, err := c.Stats(ctx)
	require.NoError(t, err)
	require.Len(t, stats, 2)
	assert.Equal(t, idOf("a1"), stats[0].Object, "by object id")
	assert.Equal(t, uint64(3), stats[0].Pids)
}

// TestStopDestroyDrain checks each reaches the backend (or the Worker)
// for the object named.
func TestStopDestroyDrain(t *testing.T) {
	w, be := webapp()
	c, _ := start(t, w, nil)
	ctx := context.Background()
	require.NoError(t, c.Stop(ctx, "APP", "id:a1"))
	require.NoError(t, c.Destroy(ctx, "*", "id:a2"))
	assert.Equal(t, []string{"stop App " + idOf("a1") + " 10s: stopped by the operator", "destroy App " + idOf("a2") + ": destroyed by the operator"}, be.recorded())
	require.NoError(t, c.Drain(ctx, 0))
	w.mu.Lock()
	assert.Equal(t, 1, w.drained)
	w.mu.Unlock()
}

// TestOperatorErrors checks the message of each mistake an operator can
// make, and that the API keeps serving after it.
func TestOperatorErrors(t *testing.T) {
	w, be := webapp()
	be.list = append(be.list, &fakeContainer{info: containers.Info{Class: "App", Object: idOf("a1f")}},
		&fakeContainer{info: containers.Info{Class: "App", Object: idOf("b0")}, exited: true, code: 143, cause: "SIGTERM from the object"})
	c, _ := start(t, w, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"a name with any binding", func() error { _, err := c.Inspect(ctx, "*", "alice"); return err },
			`"*" (any binding) names an object only by id:<hex>, not by a name: got "alice"`},
		{"an unknown binding", func() error { _, err := c.Inspect(ctx, "NOPE", "x"); return err },
			`no Durable Object binding "NOPE" (the manifest has: APP, APP2, CACHE)`},
		{"an ambiguous prefix", func() error { _, err := c.Inspect(ctx, "*", "id:a1"); return err },
			`2 containers of any class have an object id starting with "a1": give more digits`},
		{"a prefix no container has", func() error { _, err := c.Inspect(ctx, "APP", "id:ffff"); return err },
			`no container of class App has an object id starting with "ffff"`},
		{"a prefix in a class without containers", func() error { _, err := c.Inspect(ctx, "CACHE", "id:a2"); return err },
			`objects of class Cache have no containers, so only their whole id (64 hex digits) names them, not "id:a2"`},
		{"an empty prefix", func() error { _, err := c.Inspect(ctx, "*", "id:"); return err },
			`"id:" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)`},
		{"a prefix that is not hex", func() error { _, err := c.Inspect(ctx, "CACHE", "id:zz"); return err },
			`"id:zz" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)`},
		{"a bad whole id", func() error { _, err := c.Inspect(ctx, "APP", "id:"+strings.Repeat("z", 64)); return err },
			"not an id of App"},
		{"a class without containers", func() error { return c.Stop(ctx, "CACHE", "x") },
			"class Cache has no container"},
		{"an object without a container", func() error { return c.Destroy(ctx, "APP", "bob") },
			"APP bob has no container"},
		{"exec without a command", func() error {
			_, err := c.Exec(ctx, "*", "id:a2", admin.ExecRequest{}, strings.NewReader(""), nil, nil, nil)
			return err
		}, "exec needs a command"},
		{"exec in an exited container", func() error {
			_, err := c.Exec(ctx, "APP", "id:b0", admin.ExecRequest{Cmd: []string{"true"}}, strings.NewReader(""), nil, nil, nil)
			return err
		}, "APP id:b0: the container is not running (exited (code 143): SIGTERM from the object)"},
		{"a log nobody taps", func() error { return c.Tail(ctx, admin.TailFilter{}, nil) },
			"this host's log cannot be followed"},
	} {
		err := tc.call()
		require.Error(t, err, tc.name)
		assert.Equal(t, tc.want, err.Error(), tc.name)
		ps, err := c.Containers(ctx)
		require.NoError(t, err, "still serving after %s", tc.name)
		assert.Len(t, ps, 4)
	}
	assert.Empty(t, be.recorded(), "no mistake reached the backend")
}

// TestTailRefusesFiltersThatMatchNothing: wharf tail --class of a class
// the manifest lacks, or --object that is not the start of an id (a
// name), is an error naming what would match, where it used to follow the
// log showing nothing; filters that can match pass (this host's log is
// not tapped, which is the next error).
func TestTailRefusesFiltersThatMatchNothing(t *testing.T) {
	w, _ := webapp()
	c, _ := start(t, w, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		filter admin.TailFilter
		want   string
	}{
		{admin.TailFilter{Class: "Ap"}, `--class: no Durable Object class "Ap" (the manifest has: App, Cache)`},
		{admin.TailFilter{Class: "APP"}, `--class: no Durable Object class "APP" (the manifest has: App, Cache)`},
		{admin.TailFilter{Object: "alice"}, `--object "alice" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)`},
		{admin.TailFilter{Object: "A1"}, `--object "A1" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)`},
		{admin.TailFilter{Object: strings.Repeat("a", 65)}, `--object "` + strings.Repeat("a", 65) + `" is not the start of an object id (64 lowercase hex digits, as wharf ps shows them)`},
		{admin.TailFilter{Class: "App", Object: "a1"}, "this host's log cannot be followed"},
		{admin.TailFilter{Class: "Cache", Object: idOf("a1")}, "this host's log cannot be followed"},
	} {
		err := c.Tail(ctx, tc.filter, io.Discard)
		require.Error(t, err, "%+v", tc.filter)
		assert.Equal(t, tc.want, err.Error(), "%+v", tc.filter)
	}
	c, _ = start(t, &fakeWorker{}, nil)
	assert.EqualError(t, c.Tail(ctx, admin.TailFilter{Class: "App"}, io.Discard), `--class "App": this plugin has no Durable Objects`)
}

// TestWorkerWithoutObjectsOrContainers: a plugin with neither says so,
// and still serves ps, stats and /metrics.
func TestWorkerWithoutObjectsOrContainers(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "wharf_test_total", Help: "A test counter."}))
	c, dir := start(t, &fakeWorker{}, reg)
	ctx := context.Background()
	_, err := c.Inspect(ctx, "APP", "x")
	assert.EqualError(t, err, "this plugin has no Durable Objects")
	assert.EqualError(t, c.Stop(ctx, "APP", "x"), "this plugin has no containers")
	ps, err := c.Containers(ctx)
	require.NoError(t, err)
	assert.Empty(t, ps)
	stats, err := c.Stats(ctx)
	require.NoError(t, err)
	assert.Empty(t, stats)
	m, err := c.Metrics(ctx)
	require.NoError(t, err)
	assert.Contains(t, m, "wharf_test_total 0")
	tmp, _ := filepath.Glob(filepath.Join(dir, ".admin-*"))
	assert.Empty(t, tmp, "the socket's private directory is gone")
}

// TestCloseRemovesSocket: a closed API leaves no socket behind, and a
// socket a crash left is replaced.
func TestCloseRemovesSocket(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(admin.SocketPath(dir), nil, 0o600)) // left by a crash
	srv, err := Start(dir, &fakeWorker{}, nil, nil)
	require.NoError(t, err)
	_, err = admin.NewClient(dir).Containers(context.Background())
	require.NoError(t, err)
	require.NoError(t, srv.Close())
	_, err = os.Stat(admin.SocketPath(dir))
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = admin.NewClient(dir).Containers(context.Background())
	assert.ErrorIs(t, err, admin.ErrNotRunning)
	assert.Equal(t, "no wharf serve is running with this data directory: no socket at "+admin.SocketPath(dir), err.Error())
	_, err = admin.NewClient(dir).Exec(context.Background(), "APP", "x", admin.ExecRequest{Cmd: []string{"true"}}, nil, io.Discard, io.Discard, nil)
	assert.Equal(t, "no wharf serve is running with this data directory: no socket at "+admin.SocketPath(dir), err.Error())

	require.NoError(t, os.WriteFile(admin.SocketPath(dir), nil, 0o600)) // left by a crash
	_, err = admin.NewClient(dir).Containers(context.Background())
	assert.Equal(t, "no wharf serve is running with this data directory: nothing listens on "+admin.SocketPath(dir), err.Error())

	// A socket that cannot be reached for another reason says so (here the
	// data directory is a file; a socket of another user is the same).
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = admin.NewClient(file).Containers(context.Background())
	assert.NotErrorIs(t, err, admin.ErrNotRunning)
	assert.Equal(t, "reaching wharf serve at "+admin.SocketPath(file)+": connect: not a directory", err.Error())
}

// TestTailEndsWhenTheHostStops: a tail that was following the log says
// the host stopped (admin.ErrHostStopped), not "unexpected EOF"; one whose
// context ends returns nil.
func TestTailEndsWhenTheHostStops(t *testing.T) {
	dir := t.TempDir()
	handler, tap := logtap.New(slog.DiscardHandler)
	srv, err := Start(dir, &fakeWorker{}, nil, tap)
	require.NoError(t, err)
	var out testutil.LogBuffer
	done := make(chan error, 1)
	go func() { done <- admin.NewClient(dir).Tail(context.Background(), admin.TailFilter{}, &out) }()
	ctx, cancel := context.WithCancel(context.Background())
	canceled := make(chan error, 1)
	go func() { canceled <- admin.NewClient(dir).Tail(ctx, admin.TailFilter{}, io.Discard) }()
	require.Eventually(t, func() bool {
		slog.New(handler).Info("hello")
		return strings.Contains(out.String(), "hello")
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	assert.NoError(t, <-canceled)
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-done, admin.ErrHostStopped)
}
