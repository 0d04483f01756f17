package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// Labels wharf puts on every container it creates, so a restarted host can
// tell whose it is.
const (
	LabelClass       = "wharf.class"
	LabelObject      = "wharf.object"
	labelSlot        = "wharf.net.slot"
	labelContainerIP = "wharf.net.ip"
	labelHostIP      = "wharf.net.host"
)

// Managed is a container that belongs to one Durable Object, with its
// network.
type Managed struct {
	*Container
	Class, Object string
	Endpoint      *Endpoint
	mu            sync.Mutex
	reason        string
}

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

// Manager runs at most one container per Durable Object.
type Manager struct {
	b   *Backend
	net *Network

	mu   sync.Mutex
	byID map[string]*Managed
}

// NewManager manages containers on backend b with addresses from subnet;
// its network scope is the backend's data directory.
func NewManager(b *Backend, subnet netip.Prefix) *Manager {
	return &Manager{b: b, net: NewNetwork(subnet, b.DataDir), byID: map[string]*Managed{}}
}

// ContainerID names the container of an object: part of the object id and
// a hash of the class, within containerd's 76-character limit. The full
// class and id are in the container's labels.
func ContainerID(class, object string) string {
	sum := sha256.Sum256([]byte(class))
	return fmt.Sprintf("wharf-%.40s-%s", object, hex.EncodeToString(sum[:4]))
}

// Start starts the object's container from spec (ID, labels, network and
// runc root are filled in). It fails if one is already running, or if
// maxPerClass (when positive) containers of the class already run.
func (m *Manager) Start(ctx context.Context, class, object string, spec ContainerSpec, internet bool, maxPerClass int) (*Managed, error) {
	id := ContainerID(class, object)
	m.mu.Lock()
	if _, ok := m.byID[id]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("the container of %s %s is already running", class, object)
	}
	if n := m.runningLocked(class); maxPerClass > 0 && n >= maxPerClass {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: class %s already runs %d containers (max_instances = %d)", ErrMaxInstances, class, n, maxPerClass)
	}
	m.byID[id] = nil // reserved while starting
	m.mu.Unlock()
	mc, err := m.start(ctx, id, class, object, spec, internet)
	m.mu.Lock()
	if err != nil {
		delete(m.byID, id)
	} else {
		m.byID[id] = mc
	}
	m.mu.Unlock()
	return mc, err
}

// ErrMaxInstances is a start beyond a class's max_instances.
var ErrMaxInstances = errors.New("too many containers")

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

func (m *Manager) start(ctx context.Context, id, class, object string, spec ContainerSpec, internet bool) (*Managed, error) {
	ep, err := m.net.Setup(id, internet)
	if err != nil {
		return nil, err
	}
	spec.ID, spec.NetNSPath, spec.RuncRoot = id, ep.NetNSPath, m.b.RuncRoot
	labels := map[string]string{LabelClass: class, LabelObject: object,
		labelSlot: strconv.Itoa(ep.slot), labelContainerIP: ep.ContainerIP.String(), labelHostIP: ep.HostIP.String()}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	ctr, err := StartContainer(ctx, m.b.Client, spec)
	if err != nil {
		ep.Teardown()
		return nil, err
	}
	return &Managed{Container: ctr, Class: class, Object: object, Endpoint: ep}, nil
}

// Get returns the object's container, if it has one.
func (m *Manager) Get(class, object string) (*Managed, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc := m.byID[ContainerID(class, object)]
	return mc, mc != nil
}

// Destroy removes the object's container and its network.
func (m *Manager) Destroy(ctx context.Context, class, object string) error {
	id := ContainerID(class, object)
	m.mu.Lock()
	mc := m.byID[id]
	delete(m.byID, id)
	m.mu.Unlock()
	if mc == nil {
		return nil
	}
	return errors.Join(mc.Destroy(ctx), mc.Endpoint.Teardown())
}

// DestroyAll removes every container the manager runs, as on a clean
// shutdown.
func (m *Manager) DestroyAll(ctx context.Context) error {
	m.mu.Lock()
	var all []*Managed
	for _, mc := range m.byID {
		if mc != nil {
			all = append(all, mc)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, mc := range all {
		errs = append(errs, m.Destroy(ctx, mc.Class, mc.Object))
	}
	return errors.Join(errs...)
}

// Recover looks at the containers a previous run left: those whose class
// keep(class) accepts and whose task still runs are adopted, the rest are
// removed with their networks. It returns how many it adopted and removed.
func (m *Manager) Recover(ctx context.Context, keep func(class string) bool) (adopted, removed int, err error) {
	ctx = WithNamespace(ctx)
	ctrs, err := m.b.Client.Containers(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil || labels[LabelClass] == "" {
			continue // not ours
		}
		ep := endpointFromLabels(m.net, ctr.ID(), labels)
		task, terr := ctr.Task(ctx, nil)
		var running bool
		if terr == nil {
			st, err := task.Status(ctx)
			running = err == nil && (st.Status == client.Running || st.Status == client.Paused)
		}
		if running && keep(labels[LabelClass]) {
			exitCh, err := task.Wait(context.WithoutCancel(ctx))
			if err == nil {
				m.net.reserve(ep.slot)
				cont := &Container{c: m.b.Client, ctr: ctr, task: task}
				cont.watch(exitCh)
				mc := &Managed{Container: cont, Class: labels[LabelClass], Object: labels[LabelObject], Endpoint: ep}
				m.mu.Lock()
				m.byID[ctr.ID()] = mc
				m.mu.Unlock()
				adopted++
				continue
			}
		}
		c := &Container{c: m.b.Client, ctr: ctr}
		if terr == nil {
			if exitCh, err := task.Wait(ctx); err == nil {
				c.task = task
				c.watch(exitCh)
			}
		}
		if err := errors.Join(c.destroyRecovered(ctx), ep.Teardown()); err != nil {
			return adopted, removed, err
		}
		removed++
	}
	return adopted, removed, nil
}

// destroyRecovered is Destroy for a container whose task may be gone.
func (c *Container) destroyRecovered(ctx context.Context) error {
	if c.task != nil {
		return c.Destroy(ctx)
	}
	if err := c.ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

func endpointFromLabels(n *Network, id string, labels map[string]string) *Endpoint {
	slot, _ := strconv.Atoi(labels[labelSlot])
	ep := newEndpoint(n, id, slot)
	ep.ContainerIP, _ = netip.ParseAddr(labels[labelContainerIP])
	ep.HostIP, _ = netip.ParseAddr(labels[labelHostIP])
	return ep
}
