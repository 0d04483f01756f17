// Package containers is the host's container service: each Durable
// Object's container, started from its class's [[containers]] entry, and
// what the object does with it (signals, processes, files, ports, egress
// policy), over a Backend that runs containers (package containerd
// implements it). It knows nothing of guests: the host's imports read
// their arguments from guest memory, call it and hand its results back;
// its errors carry the abi status the guest gets.
package containers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/manifest"
)

// LabelPrefix marks the labels of [[containers]] labels and the SDK's on
// the containers.
const LabelPrefix = "wharf.label/"

// NameLabel holds the name the object's id was made from, when the host
// saw it (shown by `wharf ps`, kept across restarts with the container).
const NameLabel = "wharf.name"

// Errors of ctx.container a guest can cause.
var (
	errNoContainer = errors.New("this Durable Object class has no container ([[containers]] in wharf.toml)")
	// errNotRunning is the NOTFOUND of a call that needs the container
	// running (the SDK knows it by its message: ErrNotRunning).
	errNotRunning       = fmt.Errorf("%w: %w", abi.StatusNotFound, errors.New(abi.ContainerNotRunning))
	errAlreadyRunning   = errors.New("the container is already running")
	errSignalOutOfRange = errors.New(abi.SignalOutOfRange)
)

// Service is the container service of the classes with a [[containers]]
// entry. A nil *Service has no classes: every call is UNSUPPORTED.
type Service struct {
	backend Backend
	specs   map[string]manifest.Container
	hooks   *Hooks

	mu sync.Mutex
	// starts are the starts the objects asked for that have not ended,
	// by objectKey: a call of the object that needs its container waits
	// for those asked before it (see Upcoming).
	starts map[string][]*startUnderWay
}

// startUnderWay is a start of an object's container that has not ended.
type startUnderWay struct {
	done chan struct{}
	err  error // why it failed, set before done is closed
}

// objectKey names an object in Service.starts.
func objectKey(class, object string) string { return class + "/" + object }

// New is the service of specs (the [[containers]] entries by class, their
// Dockerfile images resolved to the tags built) over backend, which
// reaches the host through hooks.
func New(backend Backend, specs map[string]manifest.Container, hooks *Hooks) *Service {
	return &Service{backend: backend, specs: specs, hooks: hooks, starts: map[string][]*startUnderWay{}}
}

// Bind has the service's hooks tell the host of exits (exited runs on a
// goroutine of its own) and intercepted requests (outbound answers them).
func (s *Service) Bind(exited func(class, object string), outbound func(w http.ResponseWriter, r *http.Request, class, object, handler string)) {
	s.hooks.bind(exited, outbound)
}

// StopAll stops the containers (SIGTERM, and SIGKILL after grace; 0 kills
// them at once) and removes them, leaving the backend open: a shutdown
// calls it while requests drain, as an exec's output streamed to a client
// ends only with its container.
func (s *Service) StopAll(ctx context.Context, grace time.Duration) error {
	if s == nil {
		return nil
	}
	return s.backend.StopAll(ctx, grace)
}

// Close stops the containers (SIGTERM, and SIGKILL after grace; 0 kills
// them at once), removes them and releases the backend.
func (s *Service) Close(ctx context.Context, grace time.Duration) error {
	if s == nil {
		return nil
	}
	return s.backend.Close(ctx, grace)
}

// Backend is what runs the containers.
func (s *Service) Backend() Backend { return s.backend }

// Spec returns class's [[containers]] entry, if it has one.
func (s *Service) Spec(class string) (manifest.Container, bool) {
	if s == nil {
		return manifest.Container{}, false
	}
	c, ok := s.specs[class]
	return c, ok
}

// Config returns class's [[containers]] entry, or UNSUPPORTED.
func (s *Service) Config(class string) (manifest.Container, error) {
	c, ok := s.Spec(class)
	if !ok {
		return manifest.Container{}, fmt.Errorf("%w: %w", abi.StatusUnsupported, errNoContainer)
	}
	return c, nil
}

// Running returns the object's running container.
func (s *Service) Running(class, object string) (Container, error) {
	if _, err := s.Config(class); err != nil {
		return nil, err
	}
	return s.running(class, object)
}

func (s *Service) running(class, object string) (Container, error) {
	c, ok := s.backend.Get(class, object)
	if !ok || c.Exited() {
		return nil, errNotRunning
	}
	return c, nil
}

// Upcoming is the object's container as a call of the object (a signal,
// an exec, a port) finds it: running, or being started by a Start the
// object asked for before the call (from another goroutine), which the
// call waits for, as the hosted system's calls right after an unawaited
// start() act on the container it boots.
type Upcoming struct {
	s             *Service
	class, object string
	starts        []*startUnderWay
}

// Upcoming returns the object's container for a call made now, on the
// instance's thread: UNSUPPORTED for a class without a container, NOTFOUND
// (the container is not running) if none runs and none is being started.
func (s *Service) Upcoming(class, object string) (Upcoming, error) {
	if _, err := s.Config(class); err != nil {
		return Upcoming{}, err
	}
	u := Upcoming{s: s, class: class, object: object, starts: s.startsUnderWay(class, object)}
	if len(u.starts) == 0 {
		if _, err := s.running(class, object); err != nil {
			return Upcoming{}, err
		}
	}
	return u, nil
}

// Container returns the running container once the starts under way when
// Upcoming was called have ended (as long as ctx allows; slow: off the
// instance's thread). If none runs then, it is NOTFOUND (the container is
// not running), saying why the last start that failed did.
func (u Upcoming) Container(ctx context.Context) (Container, error) {
	failed, err := awaitStarts(ctx, u.starts)
	if err != nil {
		return nil, err
	}
	c, err := u.s.running(u.class, u.object)
	if err != nil && failed != nil {
		return nil, failed
	}
	return c, err
}

// startsUnderWay returns the object's starts that have not ended.
func (s *Service) startsUnderWay(class, object string) []*startUnderWay {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.starts[objectKey(class, object)])
}

// awaitStarts waits until starts have ended, or ctx has (an error, as
// Upcoming.Container returns it); failed is the error of the last that
// failed (NOTFOUND: the container is not running, and why), if any.
func awaitStarts(ctx context.Context, starts []*startUnderWay) (failed, err error) {
	for _, st := range starts {
		select {
		case <-st.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the container's start: %w", context.Cause(ctx))
		}
		if st.err != nil {
			failed = fmt.Errorf("%w: its start failed: %w", errNotRunning, st.err)
		}
	}
	return failed, nil
}

// beginStart records a start of the object's container as under way; end
// ends it with its error.
func (s *Service) beginStart(class, object string) (end func(error)) {
	key := objectKey(class, object)
	st := &startUnderWay{done: make(chan struct{})}
	s.mu.Lock()
	s.starts[key] = append(s.starts[key], st)
	s.mu.Unlock()
	return func(err error) {
		s.mu.Lock()
		if left := slices.DeleteFunc(s.starts[key], func(o *startUnderWay) bool { return o == st }); len(left) > 0 {
			s.starts[key] = left
		} else {
			delete(s.starts, key)
		}
		s.mu.Unlock()
		st.err = err
		close(st.done)
	}
}

// Object is a Durable Object as the service sees it.
type Object struct {
	Class, ID string
	// Name is the name its id was made from, if Named.
	Name  string
	Named bool
	// PersistDir is the host directory of its persistent directories.
	PersistDir string
}

// Starting is a start of an object's container that Service.Start
// checked: it is under way, for the object's calls (see Upcoming), until
// Run or Abandon ends it.
type Starting struct {
	run func() error
	end func(error)
}

// Run starts the container, which is slow: the caller runs it off the
// instance's thread.
func (st Starting) Run() error {
	err := st.run()
	st.end(err)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMaxInstances):
		return fmt.Errorf("%w: %w", abi.StatusBusy, err)
	case errors.Is(err, ErrBadExec):
		return fmt.Errorf("%w: starting the container: %w", abi.StatusInvalid, err)
	}
	return fmt.Errorf("%w: starting the container: %w", abi.StatusIO, err)
}

// Abandon ends a start that will not run.
func (st Starting) Abandon() { st.end(errors.New("it was abandoned")) }

// Start checks a start of the object's container with the options of
// container_start (raw) and its egress policy, and returns the start
// itself, under way from now on: the caller runs or abandons it.
func (s *Service) Start(ctx context.Context, o Object, raw []byte, policy *Policy) (Starting, error) {
	cfg, err := s.Config(o.Class)
	if err != nil {
		return Starting{}, err
	}
	spec := Spec{Image: cfg.Image, NoInit: !cfg.RunsInit(), Resources: Resources{
		VCPU: cfg.Resources.VCPU, MemoryBytes: uint64(cfg.Resources.MemoryMiB) << 20, Pids: 1024},
		DiskMB: cfg.Resources.DiskMB,
		Persistent: PersistentDirs{Paths: cfg.PersistentDirs, SizeMB: cfg.PersistentMB,
			Image: filepath.Join(o.PersistDir, "disk.img")}}
	for _, c := range cfg.Capabilities {
		spec.Capabilities = append(spec.Capabilities, "CAP_"+c)
	}
	labels := map[string]string{}
	if o.Named {
		labels[NameLabel] = o.Name
	}
	for k, v := range cfg.Labels {
		labels[LabelPrefix+k] = v
	}
	opts, err := abi.DecodeStartOptions(raw)
	if err != nil {
		return Starting{}, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	spec.Env = append(spec.Env, opts.Env...)
	spec.Entrypoint = append(spec.Entrypoint, opts.Entrypoint...)
	for _, name := range opts.Secrets {
		if !slices.Contains(cfg.Secrets, name) {
			return Starting{}, fmt.Errorf("%w: secret %q is not declared: list it in secrets of the class's [[containers]] in wharf.toml", abi.StatusInvalid, abi.Excerpt(name))
		}
	}
	for _, kv := range opts.Labels {
		k, val, _ := strings.Cut(kv, "=")
		labels[LabelPrefix+k] = val
	}
	for _, name := range cfg.Secrets { // every start gets them all; the SDK may only name them
		v, ok := os.LookupEnv(name)
		if !ok {
			return Starting{}, fmt.Errorf("%w: secret %q is not set: export it in the environment of wharf serve", abi.StatusInvalid, abi.Excerpt(name))
		}
		spec.Env = append(spec.Env, name+"="+v)
	}
	spec.Labels = labels
	c, running := s.backend.Get(o.Class, o.ID)
	if running && !c.Exited() {
		return Starting{}, fmt.Errorf("%w: %w", abi.StatusBusy, errAlreadyRunning)
	}
	policy.SetInternet(opts.EnableInternet)
	return Starting{end: s.beginStart(o.Class, o.ID), run: func() error {
		if running {
			s.backend.Destroy(ctx, o.Class, o.ID, "") // an exited run makes room for the next
		}
		_, err := s.backend.Start(ctx, o.Class, o.ID, spec, policy, cfg.MaxInstances)
		return err
	}}, nil
}

// Destroy removes the object's container, which exits for reason; one
// the object is starting meanwhile (from another goroutine) is removed
// once started.
func (s *Service) Destroy(ctx context.Context, class, object, reason string) error {
	if err := s.backend.Destroy(ctx, class, object, reason); err != nil {
		return fmt.Errorf("%w: destroying the container: %w", abi.StatusIO, err)
	}
	return nil
}

// CheckSignal refuses a signal number out of range (INVALID).
func CheckSignal(n uint32) error {
	if n < 1 || n > 64 {
		return fmt.Errorf("%w: %w, got %d", abi.StatusInvalid, errSignalOutOfRange, n)
	}
	return nil
}

// Signal sends signal sig (checked with CheckSignal) to the container's
// main process.
func Signal(ctx context.Context, c Container, sig uint32) error {
	c.NoteObjectSignal(syscall.Signal(sig)) // an exit the object caused is not a failure
	switch err := c.Signal(ctx, syscall.Signal(sig)); {
	case errors.Is(err, ErrExitedMeanwhile):
		return errNotRunning
	case err != nil:
		return fmt.Errorf("%w: %w", abi.StatusIO, err)
	}
	return nil
}

// Monitor returns a wait for the exit of the object's container (running
// or exited, or the one a start the object asked for, under way, starts):
// nil for exit code 0, else IO with the exit code or the destroy reason,
// or NOTFOUND (the container is not running) if that start failed.
func (s *Service) Monitor(class, object string) (func() error, error) {
	if _, err := s.Config(class); err != nil {
		return nil, err
	}
	starts := s.startsUnderWay(class, object)
	// An exited container is still known until the next start or destroy,
	// so a monitor that comes late gets its exit code.
	if _, ok := s.backend.Get(class, object); !ok && len(starts) == 0 {
		return nil, errNotRunning
	}
	return func() error {
		failed, _ := awaitStarts(context.Background(), starts) // each ends with its ctx
		c, ok := s.backend.Get(class, object)
		switch {
		case !ok && failed != nil:
			return failed
		case !ok:
			return errNotRunning
		}
		code, reason, err := c.WaitExit()
		switch {
		case err != nil:
			return fmt.Errorf("%w: waiting for the container: %w", abi.StatusIO, err)
		case reason != "":
			return fmt.Errorf("%w: %s", abi.StatusIO, reason)
		case code != 0 && c.OutOfMemory():
			return abi.ContainerExitError(int(code), OutOfMemory)
		case code != 0:
			return abi.ContainerExitError(int(code), "")
		}
		return nil
	}, nil
}

// EncodeConfig is the class's Container settings from wharf.toml as
// container_config answers them.
func EncodeConfig(cfg manifest.Container) []byte {
	out := abi.ContainerConfig{SleepAfter: cfg.SleepAfter, HardTimeout: cfg.HardTimeout}
	for _, p := range cfg.ReadyOn {
		out.ReadyOn = append(out.ReadyOn, abi.ReadyProbe{Port: p.Port, Status: p.Status, Path: p.Path})
	}
	return out.Encode(nil)
}

// NewPolicy is a class's egress policy as wharf.toml configures it.
func NewPolicy(c manifest.Container, internet bool) (*Policy, error) {
	p, err := egresspolicy.New(internet, c.AllowedHosts, c.DeniedHosts)
	if err != nil {
		return nil, fmt.Errorf("allowed_hosts/denied_hosts: %w", err)
	}
	return p, nil
}
