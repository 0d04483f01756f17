package containerd

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/keptlog"
	"github.com/wharfhq/wharf/internal/procstat"
	"golang.org/x/sys/unix"
)

// Labels wharf puts on every container it creates, so a restarted host can
// tell whose it is.
const (
	LabelClass       = "wharf.class"
	LabelObject      = "wharf.object"
	labelSlot        = "wharf.net.slot"
	labelContainerIP = "wharf.net.ip"
	labelHostIP      = "wharf.net.host"
	labelInternet    = "wharf.net.internet"
	// labelDataDir is the data directory of the wharf that started the
	// container: containerd may be shared (--containerd-address), and
	// another wharf's containers are not this one's to adopt or remove.
	labelDataDir = "wharf.data-dir"
)

// Managed is a container that belongs to one Durable Object, with its
// network.
type Managed struct {
	*Container
	Class, Object string
	Endpoint      *Endpoint
	// Started is when the container started (for an adopted one, when it
	// was created).
	Started time.Time
	// Policy governs the container's egress; it outlives the object's
	// instance, which finds it here when it is activated again.
	Policy *egresspolicy.Policy
	mu     sync.Mutex
	reason string
	// stopCause is set by a stop the host asked for on purpose.
	stopCause string
	// operatorTerm is the SIGTERM of an operator's stop that was
	// interrupted before the container exited: an exit that comes of it is
	// the operator's doing, one that does not is not. A signal the object
	// sends later is the later word, and clears it.
	operatorTerm bool
	// objectSignal is the last signal the object sent the main process,
	// and objectSignals every one it sent (bit n-1 for signal n): an exit
	// is the object's doing if any of them caused it, not only the last
	// (a SIGTERM the process died of, then a SIGKILL too late to matter).
	objectSignal   syscall.Signal
	objectSignalAt time.Time
	objectSignals  uint64
	// relMu orders the release of what the exited container ran with
	// (Manager.release) and its destroy: released says the release is
	// done (its network, task, cgroup and disks are gone, its slot back in
	// the pool), destroying that a destroy began, and nothing is released
	// from then on.
	relMu      sync.Mutex
	released   bool
	destroying bool
}

// markStopRequested records that the next exit was asked for, and by what
// (cause, for logs and ps), so it is not logged as a failure.
func (m *Managed) markStopRequested(cause string) {
	m.mu.Lock()
	m.stopCause = cause
	m.mu.Unlock()
}

// abandonStop records that the stop asked for was interrupted after its
// SIGTERM, or while it was sent: the next exit is the stop's doing only if
// it came of that.
func (m *Managed) abandonStop() {
	m.mu.Lock()
	m.stopCause, m.operatorTerm = "", true
	m.mu.Unlock()
}

// NoteObjectSignal records a signal the object sends the main process,
// so an exit it caused is told as the object's doing.
func (m *Managed) NoteObjectSignal(sig syscall.Signal) {
	m.mu.Lock()
	m.objectSignal, m.objectSignalAt = sig, time.Now()
	m.operatorTerm = false
	if sig >= 1 && sig <= 64 {
		m.objectSignals |= 1 << (sig - 1)
	}
	m.mu.Unlock()
}

// sentByObject reports whether the object sent the main process sig.
// m.mu is held.
func (m *Managed) sentByObject(sig syscall.Signal) bool {
	return sig >= 1 && sig <= 64 && m.objectSignals&(1<<(sig-1)) != 0
}

// StopCause says why the main process stopped when someone asked it to:
// the destroy reason, else the host's stop, else the SIGTERM of an
// operator's interrupted stop if the exit came of it, else the signal the object
// sent, if the exit came of it (death by a signal it sent, or a clean
// exit after its SIGTERM or SIGINT); empty when nobody asked, or the
// process went on to fail by itself.
func (m *Managed) StopCause() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cause := cmp.Or(m.reason, m.stopCause); cause != "" {
		return cause
	}
	if m.operatorTerm && m.Exited() && (m.code == 0 || m.code == 128+uint32(syscall.SIGTERM)) {
		return "SIGTERM from the operator"
	}
	if m.objectSignals == 0 || !m.Exited() {
		return ""
	}
	switch {
	case m.code > 128 && m.sentByObject(syscall.Signal(m.code-128)):
		return objectSignalText(syscall.Signal(m.code - 128))
	case m.code == 0 && (m.objectSignal == syscall.SIGTERM || m.objectSignal == syscall.SIGINT):
		return objectSignalText(m.objectSignal)
	case m.code == 0 && m.sentByObject(syscall.SIGTERM):
		return objectSignalText(syscall.SIGTERM)
	case m.code == 0 && m.sentByObject(syscall.SIGINT):
		return objectSignalText(syscall.SIGINT)
	}
	return ""
}

// SignalledByObject says which signal the object last sent the main
// process and how long before now ("2.5s after SIGHUP from the object"),
// empty if none.
func (m *Managed) SignalledByObject() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objectSignal == 0 {
		return ""
	}
	age := time.Since(m.objectSignalAt)
	if age < time.Second {
		age = age.Round(time.Millisecond)
	} else {
		age = age.Round(time.Second)
	}
	return fmt.Sprintf("%s after %s", age, objectSignalText(m.objectSignal))
}

func objectSignalText(sig syscall.Signal) string { return unix.SignalName(sig) + " from the object" }

// SetDestroyReason records why the container is being destroyed, for
// WaitExit.
func (m *Managed) SetDestroyReason(r string) {
	m.mu.Lock()
	m.reason = r
	m.mu.Unlock()
}

// WaitExit waits for the main process to exit and returns its code, the
// destroy reason if it was destroyed with one, and any error waiting.
func (m *Managed) WaitExit() (uint32, string, error) {
	<-m.exited
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.code, m.reason, m.err
}

// Manager runs at most one container per Durable Object, with the egress
// gateway all their outbound traffic goes through.
type Manager struct {
	b    *Backend
	net  *Network
	gw   *egress.Gateway
	life *lifecycle
	jnl  journal
	// releaseScope gives back the manager's hold on its network scope.
	releaseScope func()
	// init is the agent binary, or why there is none.
	init        string
	initErr     error
	logMaxBytes int64

	mu   sync.Mutex
	byID map[string]*Managed
	// reservationEnded is closed, and replaced, as an id reserved in byID
	// (nil: a start or a removal under way) gets its container or is freed.
	reservationEnded chan struct{}
	// starting counts the starts under way of each class (their ids are
	// reserved in byID, with no container yet), which max_instances counts.
	starting map[string]int
	// closed: Close began; Start is refused (a container started then ran
	// with the gateway's firewall removed, and no Close destroyed it).
	closed bool
	// left are the containers Recover could not look at: they may run,
	// so their ids are not started again until the next run.
	left map[string]*UnexaminedError
	// cutShort is an interrupted Recover, which left the containers it
	// had not reached (or removed) as they are.
	cutShort bool
	// stuck is a destroy of DestroyAll that was given up: its container
	// may run on.
	stuck bool
}

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	// Subnet is where container /30s come from (DefaultSubnet if unset).
	Subnet netip.Prefix
	// Egress configures the gateway; its Dir, Scope, LinkPrefix and
	// Internal are filled in.
	Egress egress.Config
	// Logger gets the lifecycle lines; nil means slog.Default().
	Logger *slog.Logger
	// Metrics registers the lifecycle metrics; nil registers none.
	Metrics prometheus.Registerer
	// OnExit, if set, is called (on its own goroutine) after the main
	// process of an object's container has ended.
	OnExit func(class, object string)
	// Init is the path of the wharf-init binary; empty looks for it with
	// FindInit. Without it, only containers started with NoInit start,
	// and their output is discarded (wharf-init keeps it).
	Init string
	// LogMaxBytes caps the output kept of each container's main process
	// (DefaultLogMaxBytes if 0): the newest half in its log, the half
	// before in the log's previous file (see package keptlog).
	LogMaxBytes int64
}

// NewManager manages containers on backend b; its network scope is the
// backend's data directory. It starts the egress gateway.
func NewManager(b *Backend, o ManagerOptions) (*Manager, error) {
	if !o.Subnet.IsValid() {
		o.Subnet = DefaultSubnet
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The scope names the firewall table, links and namespaces: no other
	// running wharf may have it (see claimScope).
	tag, releaseScope, err := claimScope(b.DataDir, o.Logger)
	if err != nil {
		return nil, err
	}
	n := newNetwork(o.Subnet, tag)
	eg := o.Egress
	eg.Dir = filepath.Join(b.DataDir, "egress")
	eg.Scope, eg.LinkPrefix, eg.ListenAddr = n.scope, vethPrefix+n.scope, n.Gateway()
	eg.Internal = append(eg.Internal, n.subnet)
	if eg.Logger == nil {
		eg.Logger = o.Logger
	}
	gw, err := egress.Start(eg)
	if err != nil {
		releaseScope()
		return nil, fmt.Errorf("egress gateway: %w", err)
	}
	logSandbox(o.Logger)
	life := newLifecycle(o.Logger, o.Metrics)
	life.onExit = o.OnExit
	m := &Manager{b: b, net: n, gw: gw, releaseScope: releaseScope, life: life, jnl: journalAt(b.DataDir),
		byID: map[string]*Managed{}, reservationEnded: make(chan struct{}), starting: map[string]int{}, left: map[string]*UnexaminedError{}, init: o.Init, logMaxBytes: o.LogMaxBytes}
	if m.init == "" {
		m.init, m.initErr = FindInit()
	}
	return m, nil
}

// Track makes the per-class metrics of classes appear (at zero) before
// anything happens to them.
func (m *Manager) Track(classes ...string) {
	for _, c := range classes {
		m.life.running.WithLabelValues(c)
		m.life.starts.WithLabelValues(c)
		m.life.execs.WithLabelValues(c)
		m.life.failures.WithLabelValues(c, "start")
		m.life.failures.WithLabelValues(c, "exit")
	}
}

// Gateway is the egress gateway of the manager's containers.
func (m *Manager) Gateway() *egress.Gateway { return m.gw }

// ContainerID names the container of an object: part of the object id and
// a hash of the class, within containerd's 76-character limit. The full
// class and id are in the container's labels.
func ContainerID(class, object string) string {
	sum := sha256.Sum256([]byte(class))
	return fmt.Sprintf("wharf-%.40s-%s", object, hex.EncodeToString(sum[:4]))
}

// Start starts the object's container from spec (ID, labels, network and
// runc root are filled in); policy governs its egress. It fails if one is
// already running, or if maxPerClass (when positive) containers of the
// class already run. A start or a removal of the object's container under
// way is waited for, as long as ctx allows.
func (m *Manager) Start(ctx context.Context, class, object string, spec ContainerSpec, policy *egresspolicy.Policy, maxPerClass int) (*Managed, error) {
	id := ContainerID(class, object)
	// The entrypoint runs with wharf's stack limit, which the container's
	// init inherits.
	if err := checkExec(ExecSpec{Args: spec.Entrypoint, Env: spec.Env}); err != nil {
		return nil, err
	}
	if err := checkArgTotal(uint32(os.Getpid()), spec.Entrypoint, spec.Env); err != nil {
		return nil, err
	}
	m.mu.Lock()
	for { // a start or a removal under way (a destroy just asked for) is waited for
		if m.closed {
			m.mu.Unlock()
			return nil, fmt.Errorf("the container of %s %s is not started: %w", class, object, ErrManagerClosed)
		}
		mc, ok := m.byID[id]
		if !ok {
			break
		}
		if mc != nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("the container of %s %s is already running", class, object)
		}
		ended := m.reservationEnded
		m.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return nil, fmt.Errorf("the container of %s %s is being started or removed: %w", class, object, context.Cause(ctx))
		}
		m.mu.Lock()
	}
	if err := m.leftLocked(class, object, id); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	if n, starting := m.runningLocked(class), m.starting[class]; maxPerClass > 0 && n+starting >= maxPerClass {
		m.mu.Unlock()
		also := ""
		if starting > 0 {
			also = fmt.Sprintf(" and is starting %d", starting)
		}
		return nil, fmt.Errorf("%w: class %s already runs %d containers%s (max_instances = %d)", ErrMaxInstances, class, n, also, maxPerClass)
	}
	m.byID[id] = nil // reserved while starting
	m.starting[class]++
	m.mu.Unlock()
	began := time.Now()
	mc, err := m.start(ctx, id, class, object, spec, policy)
	m.mu.Lock()
	if m.starting[class]--; m.starting[class] == 0 {
		delete(m.starting, class)
	}
	if err != nil {
		delete(m.byID, id)
	} else {
		m.byID[id] = mc
	}
	m.endReservationLocked()
	m.mu.Unlock()
	if err != nil {
		m.life.startFailed(class, object, err)
	} else {
		m.life.started(mc, time.Since(began))
		m.releaseOnExit(mc)
	}
	return mc, err
}

// ErrMaxInstances is a start beyond a class's max_instances.
var ErrMaxInstances = hostcontainers.ErrMaxInstances

// runningLocked counts the class's containers that have not exited.
func (m *Manager) runningLocked(class string) int {
	n := 0
	for _, mc := range m.byID {
		if mc != nil && mc.Class == class && !mc.Exited() {
			n++
		}
	}
	return n
}

func (m *Manager) start(ctx context.Context, id, class, object string, spec ContainerSpec, policy *egresspolicy.Policy) (mc *Managed, err error) {
	if !spec.NoInit {
		if m.initErr != nil {
			return nil, m.initErr
		}
		spec.Init, spec.AgentDir = m.init, m.agentDir(id)
	}
	ep, err := m.net.reserve(id)
	if err != nil {
		return nil, err
	}
	rec := record{Class: class, Object: object, Slot: ep.slot, HostIP: ep.HostIP, ContainerIP: ep.ContainerIP}
	if err := m.jnl.put(id, rec); err != nil {
		m.net.release(ep.slot)
		return nil, fmt.Errorf("recording container %s: %w", id, err)
	}
	attached := false
	defer func() {
		if err != nil {
			m.forgetPolicy(id, policy)
			if attached {
				m.gw.Detach(ep.ContainerIP)
			}
			if errors.Join(ep.Teardown(), m.removeDisks(id)) == nil {
				m.jnl.remove(id)
			}
		}
	}()
	ep, err = m.net.claim(id, ep, func(next *Endpoint) error {
		rec.Slot, rec.HostIP, rec.ContainerIP = next.slot, next.HostIP, next.ContainerIP
		return m.jnl.put(id, rec)
	})
	if err != nil {
		return nil, err
	}
	if err := m.gw.Attach(egresspolicy.Source{Class: class, Object: object, Addr: ep.ContainerIP}, policy); err != nil {
		return nil, err
	}
	attached = true
	m.keepPolicy(id, policy)
	if err := m.mountDisks(id, class, object, &spec); err != nil {
		return nil, err
	}
	spec.ID, spec.NetNSPath, spec.RuncRoot = id, ep.NetNSPath, m.b.RuncRoot
	if m.initErr == nil { // wharf-init keeps the output
		spec.LogPath, spec.LogKeeper, spec.LogMaxBytes = m.LogPath(class, object), m.init, m.logMaxBytes
	} else {
		m.life.log.Warn(Tag(class, object)+" output discarded", "class", class, "object", object, "err", m.initErr)
	}
	spec.WritableDir = m.writableDisk(id).dir
	spec.Mounts = append(spec.Mounts, m.gw.Mounts()...)
	labels := map[string]string{LabelClass: class, LabelObject: object,
		labelSlot: strconv.Itoa(ep.slot), labelContainerIP: ep.ContainerIP.String(), labelHostIP: ep.HostIP.String(),
		labelInternet: strconv.FormatBool(policy.Internet()), labelDataDir: m.b.DataDir}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	ctr, err := StartContainer(ctx, m.b.Client, spec)
	if err != nil {
		return nil, err
	}
	rec.Started = true
	if err := m.jnl.put(id, rec); err != nil {
		ctr.Destroy(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("recording container %s: %w", id, err)
	}
	return &Managed{Container: ctr, Class: class, Object: object, Endpoint: ep, Policy: policy, Started: time.Now()}, nil
}

// disksDir holds the containers' disks, their mount points and the
// templates new disks are copied from.
func (m *Manager) disksDir() string { return filepath.Join(m.b.DataDir, "containerd", "disks") }

// writableDisk holds container id's writable layer and log.
func (m *Manager) writableDisk(id string) disk {
	return disk{image: filepath.Join(m.disksDir(), id+".img"), dir: filepath.Join(m.disksDir(), id)}
}

// persistentDisk is where container id's persistent directories are
// mounted from image.
func (m *Manager) persistentDisk(id, image string) disk {
	return disk{image: image, dir: filepath.Join(m.disksDir(), id+".persist"), journaled: true}
}

// mountDisks mounts the writable disk of container id (a plain directory
// when spec.DiskMB is 0) and its persistent directories' disk, grown to
// their size if it was smaller, adding their bind mounts to spec.
func (m *Manager) mountDisks(id, class, object string, spec *ContainerSpec) error {
	templates := filepath.Join(m.disksDir(), "templates")
	w := m.writableDisk(id)
	if err := removeIfExists(w.image); err != nil { // a new layer every start
		return err
	}
	if spec.DiskMB > 0 {
		if _, err := w.mount(templates, spec.DiskMB); err != nil {
			return err
		}
	} else if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return err
	}
	p := spec.Persistent
	if len(p.Paths) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p.Image), 0o700); err != nil {
		return err
	}
	pd := m.persistentDisk(id, p.Image)
	hadMB, err := pd.mount(templates, p.SizeMB)
	if err != nil {
		return fmt.Errorf("persistent directories: %w", err)
	}
	if tag := Tag(class, object); hadMB > p.SizeMB {
		m.life.log.Warn(tag+" persistent disk kept", "image", p.Image, "size_mb", hadMB, "persistent_mb", p.SizeMB,
			"reason", "persistent_mb is smaller than the object's disk, which is never shrunk: delete the object's storage to start a smaller one")
	} else if hadMB > 0 && hadMB < p.SizeMB {
		m.life.log.Info(tag+" persistent disk grown", "image", p.Image, "from_mb", hadMB, "to_mb", p.SizeMB)
	}
	for _, path := range p.Paths {
		src := filepath.Join(pd.dir, url.PathEscape(path))
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: path, Type: "bind", Source: src, Options: []string{"rbind", "rw"}})
		spec.OwnedDirs = append(spec.OwnedDirs, src)
	}
	return nil
}

// removeDisks unmounts container id's disks, removing its writable one,
// and removes its log.
func (m *Manager) removeDisks(id string) error {
	log := m.logPath(id)
	return errors.Join(m.writableDisk(id).unmount(false), m.persistentDisk(id, "").unmount(true),
		removeIfExists(log), removeIfExists(keptlog.Previous(log)))
}

// List returns every container the manager holds, running or exited.
func (m *Manager) List() []*Managed {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Managed, 0, len(m.byID))
	for _, mc := range m.byID {
		if mc != nil {
			out = append(out, mc)
		}
	}
	return out
}

// Stop sends SIGTERM to the object's container and destroys it if it has
// not exited after grace; reason is why, in the log's stop line, ps -a and
// the object's monitor. A container that has exited already is left as it
// is, with its output, for ps -a and logs (destroy removes it).
func (m *Manager) Stop(ctx context.Context, class, object string, grace time.Duration, reason string) error {
	mc, ok := m.Get(class, object)
	if !ok {
		return fmt.Errorf("%s %s has no container", class, object)
	}
	if mc.Exited() {
		return nil
	}
	// Its exit code is the object's to see (ExitCode 0 after a clean
	// exit), with the stop as its cause in logs and ps; a container
	// killed after the grace was destroyed, for the object too.
	mc.markStopRequested(reason)
	if err := mc.Terminate(ctx); err != nil {
		mc.abandonStop() // its SIGTERM may have gone
		return err
	}
	select {
	case <-mc.exited:
		return nil
	case <-time.After(grace):
	case <-ctx.Done():
		mc.abandonStop()
		return ctx.Err()
	}
	mc.SetDestroyReason(reason)
	return m.Destroy(ctx, class, object)
}

// Labels returns the container's labels; once its network was released
// (see Manager.release), without those of its network, which may be
// another container's by now.
func (m *Managed) Labels(ctx context.Context) map[string]string {
	labels, _ := m.ctr.Labels(WithNamespace(ctx))
	if m.Released() {
		for _, l := range []string{labelSlot, labelContainerIP, labelHostIP} {
			delete(labels, l)
		}
	}
	return labels
}

// Get returns the object's container, if it has one.
func (m *Manager) Get(class, object string) (*Managed, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc := m.byID[ContainerID(class, object)]
	return mc, mc != nil
}

// endReservationLocked wakes the starts waiting for a reservation in byID
// to end (see Start), under mu.
func (m *Manager) endReservationLocked() {
	close(m.reservationEnded)
	m.reservationEnded = make(chan struct{})
}

// Destroy removes the object's container and its network, as
// DestroyBecause does with no reason.
func (m *Manager) Destroy(ctx context.Context, class, object string) error {
	return m.DestroyBecause(ctx, class, object, "")
}

// DestroyBecause removes the object's container and its network; reason,
// if not empty, is why, for WaitExit. A start of the object's container
// under way is waited for (as long as ctx allows) and the container it
// started removed, and so is a removal under way: it returns once the
// object has no container.
func (m *Manager) DestroyBecause(ctx context.Context, class, object, reason string) error {
	id := ContainerID(class, object)
	m.mu.Lock()
	for {
		mc, reserved := m.byID[id]
		if !reserved || mc != nil {
			break
		}
		ended := m.reservationEnded
		m.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return fmt.Errorf("the container of %s %s is being started or removed: %w", class, object, context.Cause(ctx))
		}
		m.mu.Lock()
	}
	mc := m.byID[id]
	if mc != nil {
		if reason != "" {
			mc.SetDestroyReason(reason)
		}
		m.byID[id] = nil // reserved until the names are free again
	}
	left := m.leftLocked(class, object, id)
	m.mu.Unlock()
	if mc == nil {
		return left // nil: nothing to destroy
	}
	defer func() {
		m.mu.Lock()
		delete(m.byID, id)
		m.endReservationLocked()
		m.mu.Unlock()
	}()
	mc.markStopRequested("destroyed")
	// A release under way finishes first; none begins after this.
	mc.relMu.Lock()
	defer mc.relMu.Unlock()
	mc.destroying = true
	m.forgetPolicy(id, mc.Policy)
	ep := mc.Endpoint
	if err := m.jnl.put(id, record{Class: class, Object: object, Slot: ep.slot, HostIP: ep.HostIP, ContainerIP: ep.ContainerIP,
		Destroying: true, Released: mc.released}); err != nil {
		return fmt.Errorf("recording container %s: %w", id, err)
	}
	detach := error(nil)
	if !mc.released { // else its address may be another container's by now
		detach = m.gw.Detach(ep.ContainerIP)
	}
	err := errors.Join(mc.Destroy(ctx), removeCgroup(cgroupPath(m.b.RuncRoot, id)), detach, ep.Teardown(), m.removeDisks(id))
	if err == nil {
		err = m.jnl.remove(id)
	}
	if err != nil {
		return fmt.Errorf("destroying container %s: %w", id, err)
	}
	return nil
}

// policyPath is where a container's egress policy is kept, so rules and
// list edits survive a restart of wharf that adopts the container.
func (m *Manager) policyPath(id string) string {
	return filepath.Join(m.b.DataDir, "egress", "policies", id+".json")
}

// keepPolicy saves p now and after every change.
func (m *Manager) keepPolicy(id string, p *egresspolicy.Policy) {
	path := m.policyPath(id)
	p.OnChange(func(st egresspolicy.State) {
		raw, _ := json.Marshal(st)
		os.MkdirAll(filepath.Dir(path), 0o700)
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			m.life.log.Warn("saving the egress policy", "container", id, "err", err)
		}
	})
}

func (m *Manager) forgetPolicy(id string, p *egresspolicy.Policy) {
	if p != nil {
		p.OnChange(nil)
	}
	removeIfExists(m.policyPath(id))
}

// savedPolicy is the policy kept for container id, or fallback.
func (m *Manager) savedPolicy(id string, fallback *egresspolicy.Policy) *egresspolicy.Policy {
	raw, err := os.ReadFile(m.policyPath(id))
	if err != nil {
		return fallback
	}
	var st egresspolicy.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return fallback
	}
	p, err := egresspolicy.FromState(st)
	if err != nil {
		return fallback
	}
	return p
}

// agentDir is the host directory of the socket of container id's agent,
// mounted writable in the container: it is on the container's writable
// disk, so what the container's root writes there counts against disk_mb
// (and goes with the disk).
func (m *Manager) agentDir(id string) string {
	return filepath.Join(m.writableDisk(id).dir, "agent")
}

// LogPath is the file the main process's stdout and stderr go to (the
// newest of them: read it with keptlog.Open); it is kept after an exit,
// until the next start or a destroy.
func (m *Manager) LogPath(class, object string) string { return m.logPath(ContainerID(class, object)) }

func (m *Manager) logPath(id string) string {
	return filepath.Join(m.b.DataDir, "containerd", "logs", id+".log")
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// destroyWait bounds each destroy of a shutdown or a Recover: the wait
// for the exit after SIGKILL and the removals after it, with room to
// spare. A test shortens it.
var destroyWait = killWait + 20*time.Second

// DestroyAll removes every container the manager runs, as on a clean
// shutdown, several at a time. A destroy that does not finish within
// destroyWait (its shim does not answer, its process cannot be killed) is
// given up and logged: its container may run on, and the next run's
// Recover removes what is left (its journal record says so).
func (m *Manager) DestroyAll(ctx context.Context) error {
	m.mu.Lock()
	var all []*Managed
	for _, mc := range m.byID {
		if mc != nil {
			all = append(all, mc)
		}
	}
	m.mu.Unlock()
	var destroys []func() error
	for _, mc := range all {
		mc.SetDestroyReason("wharf is shutting down")
		destroys = append(destroys, func() error {
			ctx, cancel := context.WithTimeout(ctx, destroyWait)
			defer cancel()
			err := m.Destroy(ctx, mc.Class, mc.Object)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) { // one that finished just in time left nothing
				m.mu.Lock()
				m.stuck = true
				m.mu.Unlock()
				m.life.log.Warn(Tag(mc.Class, mc.Object)+" not removed on shutdown: gave up after "+destroyWait.String(),
					"container", mc.ID(), "pid", mc.Pid(), "left", "its processes, task, container, snapshot and journal record: "+
						"the next wharf serve on this data directory removes them (or leaves them, saying so, if it cannot look at them)", "err", err)
			}
			return err
		})
	}
	_, err := inParallel(context.Background(), destroys)
	return err
}

// ErrManagerClosed is a Start after the Manager's Close began.
var ErrManagerClosed = errors.New("the container manager is closed (wharf is shutting down)")

// Close removes every container and stops the egress gateway, as on a
// clean shutdown. The gateway's firewall stays if containers were left as
// they are (Recover could not look at them, or was interrupted; a destroy
// was given up): they may run on, and it keeps them from the host.
// A second Close returns nil and removes nothing (see egress.Gateway.Close).
//
// Start is refused from then on (ErrManagerClosed), and the starts under
// way are waited for (as long as ctx allows, and at most destroyWait: a
// start stuck on a shim does not hold the shutdown, and keeps the
// firewall) so that DestroyAll removes
// their containers too: they ran on, outside the firewall.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	unfinished := false // a start still under way: its container may run on
	for giveUp := time.Now().Add(destroyWait); ; {
		m.mu.Lock()
		unfinished = len(m.starting) > 0
		m.mu.Unlock()
		if !unfinished || ctx.Err() != nil || time.Now().After(giveUp) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	err := m.DestroyAll(ctx)
	m.mu.Lock()
	left := len(m.left) > 0 || m.cutShort || m.stuck || unfinished
	m.mu.Unlock()
	// The scope is given back either way: a new data directory never
	// takes one that names a table or links on the host (claimScope).
	defer m.releaseScope()
	if left {
		return errors.Join(err, m.gw.CloseKeepingFirewall())
	}
	return errors.Join(err, m.gw.Close())
}

// StopAll sends SIGTERM to every running container and waits, up to
// grace, for them all to exit (as before a shutdown: what has not exited
// is then destroyed). The signals are sent side by side and within grace
// too: one whose shim does not answer holds neither the others nor the
// shutdown.
func (m *Manager) StopAll(ctx context.Context, grace time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, mc := range m.List() {
		if mc.Exited() {
			continue
		}
		mc.SetDestroyReason("wharf is shutting down")
		mc.markStopRequested("wharf is shutting down")
		wg.Go(func() {
			if mc.Terminate(ctx) == nil {
				select {
				case <-mc.exited:
				case <-ctx.Done():
				}
			}
		})
	}
	wg.Wait()
}

// Recover looks at what a previous run left, from containerd's containers
// and wharf's journal: a container whose start completed and whose task
// still runs is adopted if policy(class, internet) gives its egress policy
// (internet is what it was started with); everything else a record or a
// container names (the container, its task and snapshot, network, disks and
// policy) is removed. It returns how many containers it adopted and how
// many it removed.
//
// ctx is looked at between containers only: once it is done Recover
// returns its error and leaves the containers it has not reached as they
// are, for the next run. Each container is handled whole, as a failed
// call (a task's status, its labels) would otherwise read as a dead or
// foreign container and tear down one that runs: a container that cannot
// be looked at is left as it is, with its record, and its
// *UnexaminedError is joined to the error returned (see OnlyUnexamined);
// Start refuses its class and object until the next run looks again.
func (m *Manager) Recover(ctx context.Context, policy func(class string, internet bool) *egresspolicy.Policy) (adopted, removed int, err error) {
	stop := ctx
	ctx = WithNamespace(context.WithoutCancel(ctx))
	records, err := m.jnl.all()
	if err != nil {
		return 0, 0, fmt.Errorf("reading the container journal: %w", err)
	}
	ctrs, err := m.b.Client.Containers(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("listing containerd's containers: %w", err)
	}
	// leave holds the containers neither adopted nor removed: another
	// wharf's, and those that could not be looked at.
	leave := map[string]bool{}
	var unexamined []error
	leaveUnexamined := func(id string, slot int, err error, copiedFrom string) {
		leave[id] = true
		m.net.reserveSlot(slot) // its address may be in use
		e := &UnexaminedError{ID: id, CopiedFrom: copiedFrom, Err: err}
		unexamined = append(unexamined, e)
		m.mu.Lock()
		m.left[id] = e
		m.mu.Unlock()
	}
	var removals []func() error
	for _, ctr := range ctrs {
		if err := stop.Err(); err != nil {
			m.recoveryCutShort()
			return adopted, removed, errors.Join(append(unexamined, err)...)
		}
		id := ctr.ID()
		labels, err := containerLabels(ctr, ctx)
		if err != nil {
			// Perhaps not ours, perhaps one that runs with a record.
			leaveUnexamined(id, records[id].Slot, fmt.Errorf("reading its labels: %w", err), "")
			delete(records, id)
			continue
		}
		if labels[LabelClass] == "" {
			continue // not ours
		}
		if dir, ok := labels[labelDataDir]; ok && dir != m.b.DataDir {
			if _, recorded := records[id]; recorded && !gone(journalAt(dir).path(id)) && Scope(dir) == m.net.scope {
				// This data directory is a copy (cp -a) of dir, and this
				// the container of dir's wharf: its record came with the
				// copy, and names that wharf's network (the copy kept its
				// scope). Neither is this one's to tear down, nor is the
				// firewall that keeps the container from the host: left
				// as one not looked at is, Close keeps it. (Once dir's
				// wharf has removed it, the record here names nothing of
				// that wharf's: it goes as one without a container.)
				leaveUnexamined(id, records[id].Slot, fmt.Errorf("it is the container of the data directory %s, which this one is a copy of: "+
					"serve that one to adopt or remove it", dir), dir)
				delete(records, id)
				continue
			}
			// Another wharf's, on a shared containerd, or, for a copy
			// with a scope of its own or one whose original has removed
			// it, the original's: the record the copy has of it names
			// nothing of the original's (its network and firewall carry
			// the original's scope, or are gone), and goes as one without
			// a container.
			rec, recorded := records[id]
			if m.b.daemon == nil || !recorded {
				leave[id] = true
				continue
			}
			// In the containerd of this data directory, with a record in
			// its journal, the container is an entry of the copy's own
			// metadata, which came with the copy as the record did: the
			// original's containerd has its own. Left, it kept the object
			// from starting here ("already exists"). It goes, with its
			// snapshot and what the record names, if it has no task (the
			// runtime state that came with the copy was discarded before
			// its containerd started: see discardForeignRuntimeState): one
			// with a task may be the original's process, and is left.
			if _, err := ctr.Task(ctx, nil); !errdefs.IsNotFound(err) {
				leave[id] = true
				continue
			}
			delete(records, id)
			removals = append(removals, func() error {
				err := errors.Join(ctr.Delete(ctx), m.removeSnapshot(ctx, id))
				if err == nil {
					err = m.removeRecorded(ctx, id, rec)
				}
				if err != nil {
					return fmt.Errorf("removing container %s, which came with the copy of the data directory %s: %w", id, dir, err)
				}
				return nil
			})
			continue
		}
		rec, recorded := records[id]
		delete(records, id)
		ep := endpointFromLabels(m.net, id, labels)
		if recorded {
			ep = rec.endpoint(m.net, id)
		}
		task, running, err := recoveredTask(ctx, ctr)
		if err != nil {
			leaveUnexamined(id, ep.slot, err, "")
			continue
		}
		// A container without a record was started before wharf kept one.
		complete := !recorded || (rec.Started && !rec.Destroying)
		var p *egresspolicy.Policy
		if running && complete {
			p = policy(labels[LabelClass], labels[labelInternet] == "true")
		}
		if p != nil {
			p = m.savedPolicy(id, p)
			m.keepPolicy(id, p)
		} else {
			removeIfExists(m.policyPath(id))
		}
		if p != nil {
			exitCh, err := task.Wait(context.WithoutCancel(ctx))
			if err == nil {
				err = ep.carryGateway()
			}
			if err == nil {
				err = m.gw.Attach(egresspolicy.Source{Class: labels[LabelClass], Object: labels[LabelObject], Addr: ep.ContainerIP}, p)
			}
			if err == nil {
				m.net.reserveSlot(ep.slot)
				cont := &Container{c: m.b.Client, ctr: ctr, task: task}
				cont.adoptAgent(ctx)
				cont.watch(exitCh)
				mc := &Managed{Container: cont, Class: labels[LabelClass], Object: labels[LabelObject], Endpoint: ep, Policy: p}
				if info, err := ctr.Info(ctx); err == nil {
					mc.Started = info.CreatedAt
				}
				m.mu.Lock()
				m.byID[id] = mc
				m.mu.Unlock()
				m.life.watch(mc)
				m.releaseOnExit(mc)
				adopted++
				continue
			}
			m.life.log.Warn(Tag(labels[LabelClass], labels[LabelObject])+" not adopted: removed", "container", id, "err", err)
		}
		removals = append(removals, func() error {
			c := &Container{c: m.b.Client, ctr: ctr}
			if task != nil {
				if exitCh, err := task.Wait(ctx); err == nil {
					c.task = task
					c.watch(exitCh)
				}
			}
			c.adoptAgent(ctx)
			// Bounded as a shutdown's destroy is; what could not be
			// removed keeps its record, for the next run to remove.
			dctx, cancel := context.WithTimeout(ctx, destroyWait)
			defer cancel()
			err := errors.Join(c.destroyRecovered(dctx), removeCgroup(cgroupPath(m.b.RuncRoot, id)), ep.Teardown(), m.removeDisks(id), removeIfExists(m.policyPath(id)))
			if err == nil {
				err = m.jnl.remove(id)
			}
			if err != nil && dctx.Err() != nil {
				// Its shim does not answer: it may run on, left for the
				// next run as one not looked at is (the firewall stays).
				m.net.reserveSlot(ep.slot)
				e := &UnexaminedError{ID: id, Err: fmt.Errorf("removing it: gave up after %s: %w", destroyWait, err)}
				m.mu.Lock()
				m.left[id] = e
				m.mu.Unlock()
				return e
			}
			if err != nil {
				return fmt.Errorf("removing container %s: %w", id, err)
			}
			return nil
		})
	}
	// Records without a container: a start cut short before its container
	// existed, or a destroy after it was deleted.
	for id, rec := range records {
		removals = append(removals, func() error { return m.removeRecorded(ctx, id, rec) })
	}
	// The removals come after every adoption (which reserves its network
	// slot), and run side by side: each mostly waits on containerd, runc
	// and the kernel.
	removed, err = inParallel(stop, removals)
	if err != nil && !OnlyUnexamined(err) {
		if stop.Err() != nil {
			m.recoveryCutShort()
		}
		return adopted, removed, errors.Join(append(unexamined, err)...)
	}
	m.mu.Lock()
	for id := range m.left { // removals given up too
		leave[id] = true
	}
	m.mu.Unlock()
	return adopted, removed, errors.Join(append(unexamined, err, m.removeOrphanTasks(leave), m.removeStrayDisks(leave))...)
}

// removeRecorded removes what the journal record rec of container id
// names, and then the record, for a record without a container.
func (m *Manager) removeRecorded(ctx context.Context, id string, rec record) error {
	err := errors.Join(m.removeSnapshot(ctx, id), removeCgroup(cgroupPath(m.b.RuncRoot, id)), rec.endpoint(m.net, id).Teardown(), m.removeDisks(id),
		removeIfExists(m.policyPath(id)))
	if err == nil {
		err = m.jnl.remove(id)
	}
	if err != nil {
		return fmt.Errorf("removing what the journal records of container %s: %w", id, err)
	}
	return nil
}

// gone reports whether nothing is at path.
func gone(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}

// leftLocked is the error of a start or destroy of container id, which
// Recover left as it is, or nil; under mu.
func (m *Manager) leftLocked(class, object, id string) error {
	if e := m.left[id]; e != nil && e.CopiedFrom != "" {
		return fmt.Errorf("the container of %s %s is not started here: its container %s belongs to the data directory %s, which this one is a copy of "+
			"(made while that one's wharf ran it), and may still run there on network names this copy shares with it: "+
			"stop this wharf, remove %s to give this copy a network scope of its own, and start it again: it then runs a container of its own "+
			"for the object, and leaves that one to its data directory",
			class, object, id, e.CopiedFrom, scopeFile(m.b.DataDir))
	}
	if e := m.left[id]; e != nil {
		return fmt.Errorf("the container of %s %s from a previous run may still run (%w): restart wharf to look at it again", class, object, e)
	}
	return nil
}

// recoveryCutShort notes that Recover stopped before it reached every
// container: those may run on after Close.
func (m *Manager) recoveryCutShort() {
	m.mu.Lock()
	m.cutShort = true
	m.mu.Unlock()
}

// containerLabels and taskStatus are the calls Recover reads a container's
// labels and its task's status with; a test swaps one to make it fail.
var (
	containerLabels = client.Container.Labels
	taskStatus      = client.Task.Status
)

// recoveredTask is ctr's task, if it has one, and whether it runs. A task
// that does not exist (or ends while looked at) is dead: it is nil, or not
// running, without an error. Any other failure is an error, as the task
// may well run; so is a status containerd does not know (its shim does
// not answer).
func recoveredTask(ctx context.Context, ctr client.Container) (client.Task, bool, error) {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading its task: %w", err)
	}
	st, err := taskStatus(task, ctx)
	if errdefs.IsNotFound(err) {
		return task, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading its task's status: %w", err)
	}
	switch st.Status {
	case client.Unknown:
		return nil, false, errors.New("its task's status is unknown: its shim does not answer")
	case client.Running, client.Paused, client.Pausing:
		return task, true, nil
	}
	return task, false, nil
}

// UnexaminedError is a container Recover could not look at (a call to
// containerd about it failed): it was left as it is, with its record, for
// the next run to look at again.
type UnexaminedError struct {
	// ID is the container's id.
	ID string
	// CopiedFrom is, for a container this data directory has a record of
	// because it is a copy of another, which may still run it, that
	// other's data directory (see Recover).
	CopiedFrom string
	Err        error
}

func (e *UnexaminedError) Error() string {
	if e.CopiedFrom != "" {
		return "container " + e.ID + " left as it is: " + e.Err.Error()
	}
	return "container " + e.ID + " left as it is for the next run: " + e.Err.Error()
}

func (e *UnexaminedError) Unwrap() error { return e.Err }

// OnlyCopied reports whether err, an error from Recover for which
// OnlyUnexamined holds, is made of containers of the data directory this
// one is a copy of only (see UnexaminedError.CopiedFrom).
func OnlyCopied(err error) bool {
	return onlyUnexaminedWhere(err, func(e *UnexaminedError) bool { return e.CopiedFrom != "" })
}

// OnlyUnexamined reports whether err, an error from Recover, is made of
// *UnexaminedErrors only: recovery did all it could and the containers it
// could not look at run on untouched, so wharf can serve.
func OnlyUnexamined(err error) bool {
	return onlyUnexaminedWhere(err, func(*UnexaminedError) bool { return true })
}

// onlyUnexaminedWhere reports whether err is made of *UnexaminedErrors
// for which match holds only.
func onlyUnexaminedWhere(err error, match func(*UnexaminedError) bool) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if !onlyUnexaminedWhere(e, match) {
				return false
			}
		}
		return len(joined.Unwrap()) > 0
	}
	e, ok := err.(*UnexaminedError)
	return ok && match(e)
}

// maxParallelRemovals bounds how many containers' remains are removed at
// once.
const maxParallelRemovals = 4

// inParallel runs each of fns, maxParallelRemovals at a time, and returns
// how many succeeded and their errors joined. Once stop is done it starts
// no more of them (those are left for the next run) and its error is
// returned too.
func inParallel(stop context.Context, fns []func() error) (int, error) {
	var (
		mu   sync.Mutex
		ok   int
		errs []error
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, maxParallelRemovals)
	for _, fn := range fns {
		slots <- struct{}{}
		if stop.Err() != nil {
			<-slots
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			err := fn()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				ok++
			}
		})
	}
	wg.Wait()
	return ok, errors.Join(append(errs, stop.Err())...)
}

// removeOrphanTasks removes the tasks of containers that were neither
// adopted nor left (see removeOrphanTasksIn).
func (m *Manager) removeOrphanTasks(leave map[string]bool) error {
	return m.b.removeOrphanTasksIn(Namespace, func(id string) bool { return m.adopted(id) || leave[id] })
}

// removeOrphanTasksIn removes the tasks in containerd namespace ns of
// containers keep does not name: a kill during a task's creation can
// leave a shim, runc's container and the task's bundle, which holds the
// container's id. It does what containerd does after a shim dies: kill
// the shim, run its delete command (runc delete --force, unmounting the
// rootfs) and remove the bundle. Bundles are only known for the
// containerd wharf started itself.
func (b *Backend) removeOrphanTasksIn(ns string, keep func(id string) bool) error {
	orphans := map[string][]int{} // container id → shim pids
	for _, sh := range shims(b.Address) {
		if sh.namespace == ns && !keep(sh.id) {
			orphans[sh.id] = append(orphans[sh.id], sh.pid)
		}
	}
	bundles := taskBundles(b.DataDir, ns)
	for id := range bundles {
		if !keep(id) {
			orphans[id] = append(orphans[id], 0)
		}
	}
	var removals []func() error
	for id, pids := range orphans {
		removals = append(removals, func() error {
			var errs []error
			for _, pid := range pids {
				if pid > 0 {
					errs = append(errs, killAndWait(pid))
				}
			}
			if bundle, ok := bundles[id]; ok {
				shimDelete := exec.Command("containerd-shim-runc-v2", "-namespace", ns, "-address", b.Address, "-id", id, "-bundle", bundle, "delete")
				shimDelete.Dir = bundle
				shimDelete.Run() // best effort: a bundle cut short may have no runtime options yet
				runcDelete := exec.Command("runc", "--root", filepath.Join(b.RuncRoot, ns), "delete", "--force", id)
				runcDelete.Run() // best effort: runc may never have created it
				errs = append(errs, removeBundle(bundle))
			}
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("removing the orphaned task %s (containerd namespace %s): %w", id, ns, err)
			}
			return nil
		})
	}
	_, err := inParallel(context.Background(), removals)
	return err
}

// removeBundle unmounts a task bundle's rootfs and removes the bundle.
// containerd does the same (in its Bundle.Delete) after a shim it knew of
// died, as one removeOrphanTasksIn killed does: what it removed first is
// gone, not an error.
func removeBundle(bundle string) error {
	if err := unmountAll(filepath.Join(bundle, "rootfs"), unix.MNT_DETACH); err != nil {
		return err
	}
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("removing the task bundle: %w", err)
	}
	return nil
}

// removeSnapshot removes the rootfs snapshot of container id, if it exists.
func (m *Manager) removeSnapshot(ctx context.Context, id string) error {
	err := m.b.Client.SnapshotService(Snapshotter).Remove(ctx, id+"-rootfs")
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func (m *Manager) adopted(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[id] != nil
}

// killAndWait sends SIGKILL to pid and waits (up to 10 s) for it to go.
func killAndWait(pid int) error {
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); !exited(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not exit after SIGKILL", pid)
		}
	}
	return nil
}

// exited reports whether pid is gone or a zombie. A killed shim whose
// wharf died is reaped by init, which may take its time (seconds, for some
// inits), but a zombie already holds no files, mounts or memory: waiting
// for the reap would only slow down recovery.
func exited(pid int) bool {
	state := processState(pid)
	return state == 0 || state == 'Z' || state == 'X'
}

// processState is pid's state as /proc tells it (see procstat.Stat), 0 if
// it is gone.
func processState(pid int) byte { return procstat.Read(pid).State }

// removeStrayDisks unmounts and removes the disks of containers that were
// neither adopted nor left (a start or destroy cut short by a crash), and
// half-made templates.
func (m *Manager) removeStrayDisks(leave map[string]bool) error {
	entries, err := os.ReadDir(m.disksDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		id, _, _ := strings.Cut(e.Name(), ".")
		if id == "templates" {
			tmps, _ := filepath.Glob(filepath.Join(m.disksDir(), "templates", "*.tmp"))
			for _, t := range tmps {
				errs = append(errs, os.Remove(t))
			}
			continue
		}
		if !m.adopted(id) && !leave[id] {
			errs = append(errs, disk{dir: filepath.Join(m.disksDir(), e.Name())}.unmount(true))
		}
	}
	return errors.Join(errs...)
}

// destroyRecovered is Destroy for a container whose task may be gone.
func (c *Container) destroyRecovered(ctx context.Context) error {
	if c.task != nil {
		return c.Destroy(ctx)
	}
	return c.deleteContainer(ctx)
}

// endpoint is the network the record names.
func (r record) endpoint(n *Network, id string) *Endpoint {
	ep := newEndpoint(n, id, r.Slot)
	ep.HostIP, ep.ContainerIP = r.HostIP, r.ContainerIP
	ep.released = r.Released // its slot went back to the pool: perhaps another's now
	return ep
}

func endpointFromLabels(n *Network, id string, labels map[string]string) *Endpoint {
	slot, _ := strconv.Atoi(labels[labelSlot])
	ep := newEndpoint(n, id, slot)
	ep.ContainerIP, _ = netip.ParseAddr(labels[labelContainerIP])
	ep.HostIP, _ = netip.ParseAddr(labels[labelHostIP])
	return ep
}
