package sdk

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// State is the state of a ContainerClass's container (reference 003/004).
type State string

// The states of a ContainerClass.
const (
	StateStopped         State = "stopped"           // never started, stopped, or exited with code 0
	StateRunning         State = "running"           // started, not yet ready
	StateHealthy         State = "healthy"           // ports open and every readiness probe passed
	StateStopping        State = "stopping"          // a stop signal was sent; the process has not exited yet
	StateStoppedWithCode State = "stopped_with_code" // exited on its own with a non-zero code
)

// Defaults of a ContainerClass.
const (
	DefaultSleepAfter = 10 * time.Minute
	// DefaultStartTimeout stays under the default event timeout (30s), so
	// a slow start fails with its own message.
	DefaultStartTimeout = 20 * time.Second
	// probeTimeout bounds one readiness probe.
	probeTimeout = 5 * time.Second
	// stopGrace is how long a start waits for a stopping container before
	// destroying it.
	stopGrace = 10 * time.Second
)

// ReadyProbe is a readiness check: GET Path on Port (0: DefaultPort) must
// answer Status (0: 200).
type ReadyProbe struct {
	Path   string
	Port   int
	Status int
}

// ContainerStatus is a ContainerClass's state.
type ContainerStatus struct {
	Status     State
	LastChange time.Time
	// ExitCode is the code of the run that stopped (stopped,
	// stopped_with_code); 0 while a run is under way.
	ExitCode int
}

// StopInfo tells OnStop how the container ended: its exit code, and the
// reason given to Destroy (or "stopped", "activity expired", "hard
// timeout", "exited", or why the host saw it end: "out of memory (…)").
type StopInfo struct {
	ExitCode int
	Reason   string
}

// ContainerClass is the helper layer over ctx.container (reference 003
// and 004): embed it in a Durable Object, set its fields, call Bind from
// the constructor, and the object serves HTTP by proxying to its
// container, starting it when needed and putting it to sleep when idle.
//
// Events of an object run one at a time, so concurrent callers share one
// start: a caller arriving while the container starts waits and finds it
// healthy. If the object implements Alarm itself, it must call the
// embedded ContainerClass.Alarm, which drives SleepAfter and HardTimeout.
type ContainerClass struct {
	// DefaultPort is where Fetch sends requests and what readiness waits
	// for. RequiredPorts must all listen too before the container is
	// healthy.
	DefaultPort   int
	RequiredPorts []int
	// SleepAfter stops the container after this long without requests;
	// default wharf.toml's sleep_after, else DefaultSleepAfter.
	SleepAfter time.Duration
	// HardTimeout caps a run's lifetime from its start, busy or not; default
	// wharf.toml's hard_timeout, else none.
	HardTimeout time.Duration
	// EnvVars and Entrypoint are passed to every start.
	EnvVars    map[string]string
	Entrypoint []string
	// EnableInternet defaults to true at this level, as in the reference;
	// set it to a false pointer to close egress.
	EnableInternet *bool
	// PingEndpoint, if set, must answer 2xx on DefaultPort before the
	// container is healthy.
	PingEndpoint string
	// ReadyOn probes gate proxying; wharf.toml's ready_on are added.
	ReadyOn []ReadyProbe
	// Secrets name environment variables of wharf serve passed into the
	// container; Labels are put on it. Both add to wharf.toml's.
	Secrets []string
	Labels  map[string]string
	// StartTimeout bounds a start: ports and probes (default 20s; keep it
	// under the manifest's event timeout).
	StartTimeout time.Duration

	// Hooks. OnStart runs once the container is healthy; OnStop when a run
	// ended (noticed on the next call or alarm); OnError when a start
	// fails; OnActivityExpired when SleepAfter passes (default: Stop).
	OnStart           func() error
	OnStop            func(StopInfo)
	OnError           func(error)
	OnActivityExpired func() error

	st  *ObjectState
	rec *containerRecord
	cfg *classConfig
}

// containerRecord is the persisted state of a ContainerClass.
type containerRecord struct {
	Status       State
	LastChange   int64 // unix ms
	ExitCode     int
	Gen          int   // run generation, one per start
	HardDeadline int64 // unix ms for run Gen; 0: none
	LastActive   int64 // unix ms of the last request, saved at most every few seconds
}

// ProvisioningHeader marks a ContainerClass answer that is about the
// container not being there (start failed, not listening) rather than the
// application's own: only those are retried by the routing helpers.
const ProvisioningHeader = "X-Wharf-Provisioning"

// recordKey is where the state is kept in the object's storage.
const recordKey = "wharf/container-class"

// classConfig is wharf.toml's part of the settings.
type classConfig struct {
	sleepAfter, hardTimeout time.Duration
	readyOn                 []ReadyProbe
}

// Bind attaches the class to its object; call it in the constructor. It
// reads the class's settings from wharf.toml.
func (c *ContainerClass) Bind(st *ObjectState) error {
	c.st = st
	_, err := c.config()
	return err
}

// config merges wharf.toml's settings with the fields.
func (c *ContainerClass) config() (*classConfig, error) {
	if c.cfg != nil {
		return c.cfg, nil
	}
	ev, err := c.st.Container.obj.current()
	if err != nil {
		return nil, err
	}
	raw, err := ev.ContainerConfig()
	if err != nil {
		return nil, err
	}
	cfg := &classConfig{}
	manifest, err := abi.DecodeContainerConfig(raw)
	if err != nil {
		return nil, err
	}
	for _, p := range manifest.ReadyOn {
		cfg.readyOn = append(cfg.readyOn, ReadyProbe{Path: p.Path, Port: p.Port, Status: p.Status})
	}
	if cfg.sleepAfter, err = durationOr(c.SleepAfter, manifest.SleepAfter, DefaultSleepAfter); err != nil {
		return nil, fmt.Errorf("%w: wharf.toml's sleep_after: %w", ErrInvalidArgument, err)
	}
	if cfg.hardTimeout, err = durationOr(c.HardTimeout, manifest.HardTimeout, 0); err != nil {
		return nil, fmt.Errorf("%w: wharf.toml's hard_timeout: %w", ErrInvalidArgument, err)
	}
	if cfg.sleepAfter < 0 || cfg.hardTimeout < 0 {
		return nil, fmt.Errorf("%w: negative SleepAfter or HardTimeout", ErrInvalidArgument)
	}
	cfg.readyOn = append(cfg.readyOn, c.ReadyOn...)
	c.cfg = cfg
	return cfg, nil
}

// durationOr is d if set, else manifest's duration if set, else def.
func durationOr(d time.Duration, manifest string, def time.Duration) (time.Duration, error) {
	switch {
	case d != 0:
		return d, nil
	case manifest != "":
		return abi.ParseDuration(manifest)
	}
	return def, nil
}

func (c *ContainerClass) load() (*containerRecord, error) {
	if c.st == nil {
		return nil, errors.New("wharf: ContainerClass used before Bind")
	}
	if c.rec != nil {
		return c.rec, nil
	}
	rec := &containerRecord{Status: StateStopped}
	raw, ok, err := c.st.Storage.Get(recordKey)
	if err != nil {
		return nil, err
	}
	if ok {
		if err := json.Unmarshal(raw, rec); err != nil {
			return nil, err
		}
	}
	c.rec = rec
	return rec, nil
}

func (c *ContainerClass) save() error {
	raw, _ := json.Marshal(c.rec)
	return c.st.Storage.Put(recordKey, raw)
}

func (c *ContainerClass) setStatus(status State) error {
	c.rec.Status, c.rec.LastChange = status, time.Now().UnixMilli()
	if status == StateRunning || status == StateHealthy {
		c.rec.ExitCode = 0 // a new run: the last one's code no longer describes it
	}
	return c.save()
}

// refresh notices a run that ended since the last look: an exit is never
// reported as running or healthy.
func (c *ContainerClass) refresh() (*containerRecord, error) {
	rec, err := c.load()
	if err != nil {
		return nil, err
	}
	switch rec.Status {
	case StateRunning, StateHealthy, StateStopping:
	default:
		return rec, nil
	}
	// Between events Running cannot tell, and Monitor would wait for the
	// next exit.
	if _, err := c.st.Container.obj.current(); err != nil {
		return nil, err
	}
	if c.st.Container.Running() {
		return rec, nil
	}
	info := StopInfo{Reason: "exited"}
	var exit *ExitError
	switch err := c.st.Container.Monitor(); {
	case errors.As(err, &exit):
		info.ExitCode, info.Reason = exit.Code, cmp.Or(exit.Reason, "exited")
	case err != nil: // no container left: removed from outside (an operator, a shutdown)
		info.ExitCode, info.Reason = -1, "the container was removed"
	}
	status := StateStopped // also when someone destroyed or stopped it (a reason, code -1)
	if info.ExitCode > 0 && rec.Status != StateStopping {
		status = StateStoppedWithCode
	}
	if rec.Status == StateStopping {
		info.Reason = "stopped"
	}
	rec.ExitCode = info.ExitCode
	if err := c.setStatus(status); err != nil {
		return nil, err
	}
	if c.OnStop != nil {
		c.OnStop(info)
	}
	return rec, nil
}

// containerExited is the host telling the object its container ended:
// the state is updated and OnStop runs now, not on the next call.
func (c *ContainerClass) containerExited() {
	if c.st != nil {
		c.refresh()
	}
}

// State returns the container's state, noticing an exit first.
func (c *ContainerClass) State() (ContainerStatus, error) {
	rec, err := c.refresh()
	if err != nil {
		return ContainerStatus{}, err
	}
	return ContainerStatus{Status: rec.Status, LastChange: time.UnixMilli(rec.LastChange), ExitCode: rec.ExitCode}, nil
}

// Start starts the container unless it is healthy, waits for a stop in
// progress first, and returns once it is healthy (or failed).
func (c *ContainerClass) Start() error {
	return c.StartAndWaitForPorts(nil, 0)
}

// StartAndWaitForPorts is Start with the ports to wait for (default
// DefaultPort and RequiredPorts) and the time allowed (default
// StartTimeout).
func (c *ContainerClass) StartAndWaitForPorts(ports []int, timeout time.Duration) error {
	err := c.start(ports, timeout)
	if err != nil && c.OnError != nil {
		c.OnError(err)
	}
	return err
}

// current is the configuration and the state, with any exit noticed.
func (c *ContainerClass) current() (*classConfig, *containerRecord, error) {
	cfg, err := c.config()
	if err != nil {
		return nil, nil, err
	}
	rec, err := c.refresh()
	return cfg, rec, err
}

func (c *ContainerClass) start(ports []int, timeout time.Duration) error {
	cfg, rec, err := c.current()
	if err != nil {
		return err
	}
	if rec.Status == StateHealthy { // every proxied request passes here
		return nil
	}
	if timeout <= 0 {
		timeout = cmp.Or(c.StartTimeout, DefaultStartTimeout)
	}
	if ports == nil {
		ports = c.ports()
	}
	switch {
	case rec.Status == StateStopping:
		if err := c.waitStopped(); err != nil {
			return err
		}
	case rec.Status == StateRunning || c.st.Container.Running():
		// A start that did not finish: the event that made it failed (its
		// deadline, say) and its writes were rolled back, but the
		// container runs. Wait for it again rather than start another.
		if rec.Status != StateRunning {
			rec.Gen++
			rec.LastActive = time.Now().UnixMilli()
			if err := c.setStatus(StateRunning); err != nil {
				return err
			}
		}
		return c.becomeHealthy(cfg, ports, timeout)
	}
	internet := c.EnableInternet == nil || *c.EnableInternet
	if err := c.st.Container.Start(StartOptions{Env: c.EnvVars, Entrypoint: c.Entrypoint, EnableInternet: internet,
		Secrets: c.Secrets, Labels: c.Labels}); err != nil {
		return withSentinel(errStartFailed, err)
	}
	now := time.Now()
	rec.Gen++
	rec.HardDeadline = 0
	if cfg.hardTimeout > 0 {
		rec.HardDeadline = now.Add(cfg.hardTimeout).UnixMilli()
	}
	rec.LastActive = now.UnixMilli()
	if err := c.setStatus(StateRunning); err != nil {
		return err
	}
	return c.becomeHealthy(cfg, ports, timeout)
}

// ports are DefaultPort and RequiredPorts.
func (c *ContainerClass) ports() []int {
	var out []int
	if c.DefaultPort != 0 {
		out = append(out, c.DefaultPort)
	}
	for _, p := range c.RequiredPorts {
		if p != c.DefaultPort {
			out = append(out, p)
		}
	}
	return out
}

// becomeHealthy waits for the ports, the ping endpoint and every probe,
// polling them all each round, then marks the container healthy, runs
// OnStart and arms the alarm. A container that exits meanwhile, or a
// budget that runs out, fails the start and the container is destroyed.
func (c *ContainerClass) becomeHealthy(cfg *classConfig, ports []int, timeout time.Duration) error {
	type check struct {
		what string
		ok   func() bool
	}
	var pending []check
	for _, p := range ports {
		pending = append(pending, check{fmt.Sprintf("port %d is not listening", p), func() bool { return c.portOpen(p) }})
	}
	if c.PingEndpoint != "" {
		pending = append(pending, check{"ping " + c.PingEndpoint + " did not answer 2xx", func() bool {
			code := c.probe(c.DefaultPort, c.PingEndpoint)
			return code >= 200 && code < 300
		}})
	}
	for _, p := range cfg.readyOn {
		port, want := cmp.Or(p.Port, c.DefaultPort), cmp.Or(p.Status, 200)
		path := "/" + strings.TrimPrefix(p.Path, "/")
		pending = append(pending, check{fmt.Sprintf("ready_on %s on port %d did not answer %d", path, port, want),
			func() bool { return c.probe(port, path) == want }})
	}
	deadline := time.Now().Add(timeout)
	for {
		left := pending[:0]
		for _, ch := range pending {
			if !ch.ok() {
				left = append(left, ch)
			}
		}
		pending = left
		if len(pending) == 0 {
			break
		}
		if !c.st.Container.Running() {
			if _, err := c.refresh(); err != nil {
				return err
			}
			return fmt.Errorf("the container exited before it was ready (exit code %d)", c.rec.ExitCode)
		}
		if time.Now().After(deadline) {
			c.st.Container.Destroy("not ready in time")
			c.setStatus(StateStopped)
			return fmt.Errorf("the container was not ready after %s: %s", timeout, pending[0].what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.setStatus(StateHealthy); err != nil {
		return err
	}
	c.logInfo("healthy")
	if err := c.armAlarm(cfg); err != nil {
		return err
	}
	if c.OnStart != nil {
		return c.OnStart()
	}
	return nil
}

func (c *ContainerClass) portOpen(port int) bool {
	conn, err := c.st.Container.GetTCPPort(port).Connect()
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// probe GETs path on port and returns the status, 0 if it failed or took
// longer than probeTimeout.
func (c *ContainerClass) probe(port int, path string) int {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://container"+path, nil)
	resp, err := c.st.Container.GetTCPPort(port).Fetch(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// logInfo logs msg about the container, tagged as the host tags it.
func (c *ContainerClass) logInfo(msg string) {
	c.st.Container.obj.log(abi.LogInfo, "container:"+c.st.Class+"#"+c.st.ID[:8]+" "+msg)
}

// waitStopped waits for a stopping container to exit, destroying it after
// the grace period.
func (c *ContainerClass) waitStopped() error {
	deadline := time.Now().Add(stopGrace)
	for c.st.Container.Running() {
		if time.Now().After(deadline) {
			c.st.Container.Destroy("did not stop in time")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := c.refresh()
	return err
}

// armAlarm sets the alarm to the earlier of the sleep and hard deadlines.
func (c *ContainerClass) armAlarm(cfg *classConfig) error {
	at := time.UnixMilli(c.rec.LastActive).Add(cfg.sleepAfter)
	if c.rec.HardDeadline != 0 && time.UnixMilli(c.rec.HardDeadline).Before(at) {
		at = time.UnixMilli(c.rec.HardDeadline)
	}
	return c.st.Storage.SetAlarm(at)
}

// touch renews activity; it is saved at most once a second, and the alarm
// moves only when it fires.
func (c *ContainerClass) touch() {
	now := time.Now().UnixMilli()
	if now-c.rec.LastActive >= 1000 {
		c.rec.LastActive = now
		c.save()
	}
}

// Alarm drives SleepAfter and HardTimeout; an object with its own Alarm
// must call it.
func (c *ContainerClass) Alarm(int) error {
	cfg, rec, err := c.current()
	if err != nil {
		return err
	}
	now := time.Now()
	switch rec.Status {
	case StateStopping: // the grace period of a stop has passed
		if err := c.st.Container.Destroy("did not stop within " + stopGrace.String()); err != nil {
			return err
		}
		_, err := c.refresh()
		return err
	case StateHealthy, StateRunning:
	default:
		return nil // nothing runs: no alarm is re-armed
	}
	if rec.HardDeadline != 0 && !now.Before(time.UnixMilli(rec.HardDeadline)) {
		// The deadline belongs to the current run (it is reset by every
		// start), so an alarm left from an older run cannot end this one
		// early.
		c.logInfo("hard timeout")
		return c.Stop(SIGTERM)
	}
	if !now.Before(time.UnixMilli(rec.LastActive).Add(cfg.sleepAfter)) {
		if c.OnActivityExpired == nil {
			c.logInfo("idle for sleep_after (" + cfg.sleepAfter.String() + "): stopping")
			return c.Stop(SIGTERM)
		}
		if err := c.OnActivityExpired(); err != nil {
			return err
		}
		if c.rec.Status != StateRunning && c.rec.Status != StateHealthy {
			return nil
		}
		// The hook kept it running: a new idle period starts, and the
		// hard deadline still holds.
		c.rec.LastActive = now.UnixMilli()
		if err := c.save(); err != nil {
			return err
		}
	}
	return c.armAlarm(cfg)
}

// Stop sends signal sig (SIGTERM if 0) to the container and marks it stopping;
// it returns without waiting for the exit, which the next call notices. A
// container still running after the grace period (10 s) is destroyed by
// the alarm. (A main process that is PID 1 ignores SIGTERM unless it
// handles it: use a shell with a trap, or an init.)
func (c *ContainerClass) Stop(sig Signal) error {
	rec, err := c.refresh()
	if err != nil {
		return err
	}
	if rec.Status != StateRunning && rec.Status != StateHealthy {
		return nil
	}
	if err := c.st.Container.Signal(cmp.Or(sig, SIGTERM)); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	if err := c.setStatus(StateStopping); err != nil {
		return err
	}
	return c.st.Storage.SetAlarm(time.Now().Add(stopGrace))
}

// Destroy removes the container at once.
func (c *ContainerClass) Destroy() error {
	rec, err := c.load()
	if err != nil {
		return err
	}
	was := rec.Status
	if err := c.st.Container.Destroy("destroyed"); err != nil {
		return err
	}
	if err := c.setStatus(StateStopped); err != nil {
		return err
	}
	if c.OnStop != nil && was != StateStopped && was != StateStoppedWithCode {
		c.OnStop(StopInfo{ExitCode: -1, Reason: "destroyed"})
	}
	return c.st.Storage.DeleteAlarm()
}

// ServeHTTP proxies the request to DefaultPort: see ContainerFetch.
func (c *ContainerClass) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.ContainerFetch(w, r, c.DefaultPort)
}

// errStartFailed begins the error of a start that failed, said once
// however the error is passed on (withSentinel).
var errStartFailed = errors.New("wharf: the container could not start")

// ContainerFetch starts the container if needed, waits until it is
// healthy, renews its activity and proxies r to port. A start that fails
// answers 503, a container that is not listening 503, any other failure
// 500, each with a body saying why.
func (c *ContainerClass) ContainerFetch(w http.ResponseWriter, r *http.Request, port int) {
	if port == 0 {
		http.Error(w, "wharf: no port to proxy to: set DefaultPort", http.StatusInternalServerError)
		return
	}
	if err := c.Start(); err != nil {
		w.Header().Set(ProvisioningHeader, "start-failed")
		http.Error(w, withSentinel(errStartFailed, err).Error(), http.StatusServiceUnavailable)
		return
	}
	c.touch()
	resp, err := c.st.Container.GetTCPPort(port).Fetch(r) // it only reads r
	switch {
	case errors.Is(err, ErrPortRefused):
		w.Header().Set(ProvisioningHeader, "not-listening")
		http.Error(w, fmt.Sprintf("wharf: the container is not listening on port %d", port), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, "wharf: proxying to the container failed: "+wharf.Within(err).Error(), http.StatusInternalServerError)
		return
	}
	WriteResponse(w, resp)
}
