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
	// ops are the starts and destroys the objects asked for that have not
	// ended, by objectKey, in the order asked: each waits for those before
	// it, and a call of the object that needs its container waits for them
	// all (see Upcoming).
	ops map[string][]*opUnderWay
	// failed says why the last start of an object failed, by objectKey,
	// until the object asks for another start or a destroy: its calls that
	// need the container say so (see whyNotRunning), however soon the
	// start failed. At most maxFailedStarts are kept.
	failed map[string]error
}

// maxFailedStarts bounds Service.failed: beyond it, the reason of some
// other object's failed start is forgotten (its calls then say only that
// the container is not running).
const maxFailedStarts = 4096

// opUnderWay is a start or a destroy of an object's container that has
// not ended.
type opUnderWay struct {
	destroy bool
	done    chan struct{}
	// removed is the container a destroy found and removed (running or
	// exited), or nil; set before done is closed.
	removed Container
}

// objectKey names an object in Service.ops and Service.failed.
func objectKey(class, object string) string { return class + "/" + object }

// New is the service of specs (the [[containers]] entries by class, their
// Dockerfile images resolved to the tags built) over backend, which
// reaches the host through hooks.
func New(backend Backend, specs map[string]manifest.Container, hooks *Hooks) *Service {
	return &Service{backend: backend, specs: specs, hooks: hooks, ops: map[string][]*opUnderWay{}, failed: map[string]error{}}
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

// Running reports whether the object's container runs as the object's
// calls so far leave it: a start it asked for is under way (the hosted
// system's running is true from start()'s call), or none is and the
// container's main process runs; a destroy under way leaves none.
func (s *Service) Running(class, object string) (bool, error) {
	if _, err := s.Config(class); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runsLocked(class, object), nil
}

// runsLocked is Running, under mu.
func (s *Service) runsLocked(class, object string) bool {
	if ops := s.ops[objectKey(class, object)]; len(ops) > 0 {
		return !ops[len(ops)-1].destroy
	}
	_, err := s.running(class, object)
	return err == nil
}

func (s *Service) running(class, object string) (Container, error) {
	c, ok := s.backend.Get(class, object)
	if !ok || c.Exited() {
		return nil, errNotRunning
	}
	return c, nil
}

// Upcoming is the object's container as a call of the object (a signal,
// an exec, a port) finds it once the starts and destroys the object asked
// for before the call (from other goroutines) have ended, which the call
// waits for, as the hosted system's calls right after an unawaited
// start() act on the container it boots.
type Upcoming struct {
	s             *Service
	class, object string
	ops           []*opUnderWay
}

// Upcoming returns the object's container for a call made now, on the
// instance's thread: UNSUPPORTED for a class without a container, NOTFOUND
// (the container is not running) if none runs and no start or destroy is
// under way.
func (s *Service) Upcoming(class, object string) (Upcoming, error) {
	if _, err := s.Config(class); err != nil {
		return Upcoming{}, err
	}
	u := Upcoming{s: s, class: class, object: object, ops: s.opsUnderWay(class, object)}
	if len(u.ops) == 0 {
		if _, err := s.running(class, object); err != nil {
			return Upcoming{}, s.whyNotRunning(class, object)
		}
	}
	return u, nil
}

// Container returns the running container once the starts and destroys
// under way when Upcoming was called have ended (as long as ctx allows;
// slow: off the instance's thread). If none runs then, it is NOTFOUND (the
// container is not running; see whyNotRunning).
func (u Upcoming) Container(ctx context.Context) (Container, error) {
	if err := awaitOps(ctx, u.ops); err != nil {
		return nil, err
	}
	c, err := u.s.running(u.class, u.object)
	if err != nil {
		return nil, u.s.whyNotRunning(u.class, u.object)
	}
	return c, nil
}

// whyNotRunning is the NOTFOUND of a call that finds the object's
// container not running: the container is not running, and why if the
// last start the object asked for failed (and nothing since).
func (s *Service) whyNotRunning(class, object string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed[objectKey(class, object)]; err != nil {
		return fmt.Errorf("%w: its start failed: %w", errNotRunning, err)
	}
	return errNotRunning
}

// opsUnderWay returns the object's starts and destroys that have not
// ended.
func (s *Service) opsUnderWay(class, object string) []*opUnderWay {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops[objectKey(class, object)])
}

// awaitOps waits until ops have ended, or ctx has (an error, as
// Upcoming.Container returns it).
func awaitOps(ctx context.Context, ops []*opUnderWay) error {
	for _, op := range ops {
		select {
		case <-op.done:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the container's start or destroy: %w", context.Cause(ctx))
		}
	}
	return nil
}

// begin records a start (or a destroy) of the object's container as under
// way, after the ones under way before it, unless refuse (under mu) says
// why not; end ends it with its error.
func (s *Service) begin(class, object string, destroy bool, refuse func() error) (op *opUnderWay, before []*opUnderWay, end func(error), err error) {
	key := objectKey(class, object)
	op = &opUnderWay{destroy: destroy, done: make(chan struct{})}
	s.mu.Lock()
	if refuse != nil {
		if err := refuse(); err != nil {
			s.mu.Unlock()
			return nil, nil, nil, err
		}
	}
	before = slices.Clone(s.ops[key])
	s.ops[key] = append(s.ops[key], op)
	delete(s.failed, key)
	s.mu.Unlock()
	return op, before, func(err error) {
		s.mu.Lock()
		ops := s.ops[key]
		if last := ops[len(ops)-1] == op; last && !destroy && err != nil {
			if len(s.failed) >= maxFailedStarts {
				for k := range s.failed {
					delete(s.failed, k)
					break
				}
			}
			s.failed[key] = err
		}
		if left := slices.DeleteFunc(ops, func(o *opUnderWay) bool { return o == op }); len(left) > 0 {
			s.ops[key] = left
		} else {
			delete(s.ops, key)
		}
		s.mu.Unlock()
		close(op.done)
	}, nil
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

// Op is a start or a destroy of an object's container that the object
// asked for (Service.Start, Service.Destroy): under way from then on, for
// the object's later calls (see Upcoming), until Run or Abandon ends it.
type Op struct {
	run    func() error
	status func(error) error // the abi status and words of run's error
	end    func(error)
}

// Run waits for the starts and destroys the object asked for before this
// one, then does it (as long as the ctx it was asked with allows), which
// is slow: the caller runs it off the instance's thread.
func (op Op) Run() error {
	err := op.run()
	op.end(err)
	if err == nil {
		return nil
	}
	return op.status(err)
}

// Abandon ends an op that will not run.
func (op Op) Abandon() { op.end(errors.New("it was abandoned")) }

// Start checks a start of the object's container with the options of
// container_start (raw) and its egress policy, and returns the start
// itself, under way from now on: the caller runs or abandons it. It is
// BUSY if the container runs as the object's calls so far leave it (see
// Running): started, or being started.
func (s *Service) Start(ctx context.Context, o Object, raw []byte, policy *Policy) (Op, error) {
	cfg, err := s.Config(o.Class)
	if err != nil {
		return Op{}, err
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
		return Op{}, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	spec.Env = append(spec.Env, opts.Env...)
	spec.Entrypoint = append(spec.Entrypoint, opts.Entrypoint...)
	for _, name := range opts.Secrets {
		if !slices.Contains(cfg.Secrets, name) {
			return Op{}, fmt.Errorf("%w: secret %q is not declared: list it in secrets of the class's [[containers]] in wharf.toml", abi.StatusInvalid, abi.Excerpt(name))
		}
	}
	for _, kv := range opts.Labels {
		k, val, _ := strings.Cut(kv, "=")
		labels[LabelPrefix+k] = val
	}
	for _, name := range cfg.Secrets { // every start gets them all; the SDK may only name them
		v, ok := os.LookupEnv(name)
		if !ok {
			return Op{}, fmt.Errorf("%w: secret %q is not set: export it in the environment of wharf serve", abi.StatusInvalid, abi.Excerpt(name))
		}
		spec.Env = append(spec.Env, name+"="+v)
	}
	spec.Labels = labels
	_, before, end, err := s.begin(o.Class, o.ID, false, func() error {
		if s.runsLocked(o.Class, o.ID) {
			return fmt.Errorf("%w: %w", abi.StatusBusy, errAlreadyRunning)
		}
		return nil
	})
	if err != nil {
		return Op{}, err
	}
	policy.SetInternet(opts.EnableInternet)
	return Op{end: end, status: startFailure, run: func() error {
		if err := awaitOps(ctx, before); err != nil {
			return err
		}
		if _, ok := s.backend.Get(o.Class, o.ID); ok { // exited: Start found none running
			s.backend.Destroy(ctx, o.Class, o.ID, "") // an exited run makes room for the next
		}
		_, err := s.backend.Start(ctx, o.Class, o.ID, spec, policy, cfg.MaxInstances)
		return err
	}}, nil
}

// startFailure is the abi status and words of a failed start.
func startFailure(err error) error {
	switch {
	case errors.Is(err, ErrMaxInstances):
		return fmt.Errorf("%w: %w", abi.StatusBusy, err)
	case errors.Is(err, ErrBadExec):
		return fmt.Errorf("%w: starting the container: %w", abi.StatusInvalid, err)
	}
	return fmt.Errorf("%w: starting the container: %w", abi.StatusIO, err)
}

// Destroy returns a destroy of the object's container, which exits for
// reason, under way from now on: the caller runs or abandons it. It waits
// for the starts (and destroys) the object asked for before it, so the
// container a start under way (from another goroutine) boots is removed
// once started.
func (s *Service) Destroy(ctx context.Context, class, object, reason string) (Op, error) {
	if _, err := s.Config(class); err != nil {
		return Op{}, err
	}
	op, before, end, _ := s.begin(class, object, true, nil)
	return Op{end: end, status: func(err error) error {
		return fmt.Errorf("%w: destroying the container: %w", abi.StatusIO, err)
	}, run: func() error {
		if err := awaitOps(ctx, before); err != nil {
			return err
		}
		op.removed, _ = s.backend.Get(class, object) // for a monitor (see Monitor)
		return s.backend.Destroy(ctx, class, object, reason)
	}}, nil
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
// or exited, or as the starts and destroys the object asked for, under
// way, leave it once they have ended): nil for exit code 0, else IO with
// the exit code or the destroy reason, or NOTFOUND (the container is not
// running) if none is left, saying why if the last of them was a start
// that failed. If the last of them is a destroy, the container it (or a
// destroy just before it, when it found none) removes is the one
// monitored, as the hosted system's monitor() of a container
// being destroyed ends with the destroy (its reason, as destroy(error)
// sends it to the monitor's error callback).
func (s *Service) Monitor(class, object string) (func() error, error) {
	if _, err := s.Config(class); err != nil {
		return nil, err
	}
	// With nothing under way, the container now is the one to wait for
	// (under mu: no start or destroy begins meanwhile), even if a destroy
	// begun later removes it before the wait runs. An exited container is
	// still known until the next start or destroy, so a monitor that comes
	// late gets its exit code.
	s.mu.Lock()
	ops := slices.Clone(s.ops[objectKey(class, object)])
	c, ok := s.backend.Get(class, object)
	s.mu.Unlock()
	if !ok && len(ops) == 0 {
		return nil, s.whyNotRunning(class, object)
	}
	return func() error {
		if len(ops) > 0 {
			awaitOps(context.Background(), ops) // each ends with its ctx
			c, ok = s.backend.Get(class, object)
			// The destroys the ops end with: the first removed the
			// container (the others found none), whose exit they caused.
			for i := len(ops) - 1; i >= 0 && ops[i].destroy; i-- {
				if ops[i].removed != nil {
					c, ok = ops[i].removed, true
					break
				}
			}
		}
		if !ok {
			return s.whyNotRunning(class, object)
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
