package objects

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/cluster"
)

// Objects in a cluster. An object runs on the host that owns its placement
// in etcd (cluster.Member.Place): the first host an event reaches takes an
// unowned object, restores its storage from the replicated commits and
// serves it; any other host forwards the object's events to the owner over
// the hosts' mutual-TLS channel. Every commit is appended to etcd under the
// placement before it is committed locally, so a reply never leaves before
// its writes would survive the loss of this host, and a host that lost the
// placement can no longer write. An idle object gives its placement up,
// unless it holds something on the host (Holdings).

// ClusterConfig joins a Worker to a cluster.
type ClusterConfig struct {
	// Member is this host's membership.
	Member *cluster.Member
	// Peers reaches the other hosts' peer servers (mutual TLS).
	Peers *http.Client
	// Holdings are what the objects hold on this host besides their
	// values and storage (their containers); package host sets it. nil:
	// nothing.
	Holdings Holdings
}

// Holdings are what objects hold on their host besides their values and
// storage: their containers. An object that holds something here keeps
// its placement while idle, for as long as this host may keep it, and what
// it holds ends as the host gives it up: it moves (a drain, a lease run
// out, a fenced commit) or, idle and holding nothing, gives its placement
// up. So what an object holds is on one host at a time, but for the
// while a host whose lease ran out unnoticed takes to notice it
// (idleCheck, or the object's next event).
type Holdings interface {
	// Holds reports whether the object holds something here now (its
	// container runs).
	Holds(class, id string) bool
	// Leave ends what the object holds here (its container, running or
	// exited), returning once it has ended, before the placement is
	// released. owned says the placement is still this host's (a drain,
	// an idle object giving it up), so what it holds may end gracefully;
	// otherwise another host may have the object already.
	Leave(class, id string, owned bool)
}

// holds reports whether the object holds something on this host now.
func (c *clusterRouting) holds(obj *Object) bool {
	return c.Holdings != nil && c.Holdings.Holds(obj.ns.class, obj.id)
}

// staysIdle reports whether an idle object stays live here: its
// placement, if it has one, is still this host's, and it is not yet idle
// for long (young) or holds something here. One whose placement this host
// lost (its lease ran out, say) or gives up (it drains) goes at once,
// ending what it holds.
func (c *clusterRouting) staysIdle(obj *Object, young bool) bool {
	if obj.place.Owner != "" && !c.owns(obj) {
		return false
	}
	return young || c.holds(obj)
}

// idleCheck is how often an idle object checks whether it stays
// (staysIdle): within a lease TTL of this host's lease running out, as
// another host may take it after that.
func (c *clusterRouting) idleCheck(idle time.Duration) time.Duration {
	return min(idle, c.Member.TTL())
}

// Errors of cluster routing.
var (
	// errNotOwner is a forwarded event that reached a host that does not
	// own the object (it moved): the sender places it again.
	errNotOwner = errors.New("this host does not own the object")
	// errForwardGaveUp is an event whose owner could not be reached until
	// the event's deadline.
	errForwardGaveUp = errors.New("the object's host could not be reached")
	// errMovedWithBody is a fetch that reached a host which no longer owns
	// the object after more of its body was sent there than the sender
	// keeps (maxResentBody): it cannot be sent again whole.
	errMovedWithBody = fmt.Errorf("the object moved while the request's body was sent to its previous host; a body over %d KiB cannot be sent again", maxResentBody>>10)
)

// forwardPatience bounds how long an event waits for an unreachable owner:
// long enough for the owner's lease to run out and the object to move. The
// hosts of a cluster are taken to share one lease TTL (--cluster-ttl), at
// least the default.
func (c *clusterRouting) forwardPatience() time.Duration {
	return max(c.Member.TTL(), cluster.DefaultTTL) + 5*time.Second
}

// clusterRouting places and forwards the events of one Worker's objects.
type clusterRouting struct {
	ClusterConfig
	plugin  string
	metrics clusterMetrics
}

// clusterMetrics are the cluster's Prometheus metrics.
type clusterMetrics struct {
	forwarded       prometheus.Counter
	forwardFailures prometheus.Counter
	forwardSeconds  prometheus.Histogram
	replicaSeconds  prometheus.Histogram
	placements      prometheus.Counter
}

func newClusterRouting(cc ClusterConfig, plugin string, reg prometheus.Registerer) *clusterRouting {
	buckets := prometheus.ExponentialBuckets(0.0002, 2, 16)
	m := clusterMetrics{
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{Name: "wharf_cluster_forwarded_total",
			Help: "Object events sent to the host that owns the object."}),
		forwardFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "wharf_cluster_forward_failures_total",
			Help: "Forwarded object events that failed on the way (the owner could not be reached or answered in error)."}),
		forwardSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wharf_cluster_forward_seconds",
			Help: "Time from sending a forwarded event to its answer's head.", Buckets: buckets}),
		replicaSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "wharf_cluster_replication_seconds",
			Help: "Replication lag: how long a commit waits for etcd to hold it before it is committed locally and its replies leave.", Buckets: buckets}),
		placements: prometheus.NewCounter(prometheus.CounterOpts{Name: "wharf_cluster_placements_total",
			Help: "Objects this host took (placed here and restored from the replicated commits)."}),
	}
	if reg != nil {
		reg.MustRegister(m.forwarded, m.forwardFailures, m.forwardSeconds, m.replicaSeconds, m.placements)
	}
	return &clusterRouting{ClusterConfig: cc, plugin: plugin, metrics: m}
}

// objectName is the object's name in the cluster's keys.
func (c *clusterRouting) objectName(obj *Object) string {
	return c.plugin + "/" + obj.ns.class + "/" + obj.id
}

// owns reports whether the object is this host's now.
func (c *clusterRouting) owns(obj *Object) bool {
	return obj.place.Owner != "" && !c.Member.Draining() && c.Member.Owns(obj.place)
}

// route decides where ev runs: true when the object is (now) this host's
// and the caller delivers ev; false when ev was forwarded or failed here.
func (c *clusterRouting) route(obj *Object, ev *objectEvent) bool {
	if obj.place.Owner != "" {
		c.disown(obj)
	}
	if !ev.firstForward.IsZero() { // sending it to the remembered owner failed: ask etcd
		obj.remote.Store(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.Member.Place(ctx, c.objectName(obj))
	if err != nil {
		if ev.forwarded && errors.Is(err, cluster.ErrFenced) {
			err = fmt.Errorf("%w: %w", errNotOwner, err) // the sender tries again until the object moved
		}
		obj.fail(ev, fmt.Errorf("placing the object in the cluster: %w", err))
		return false
	}
	obj.remote.Store(nil)
	if p.Owner == c.Member.Name() {
		obj.place = p
		obj.owned.Store(true)
		if err := c.adopt(obj); err != nil {
			c.disown(obj)
			obj.fail(ev, err)
			return false
		}
		return true
	}
	if ev.forwarded { // the sender's view was stale: it places again
		where := fmt.Sprintf("it is on %q", p.Owner)
		if p.Owner == "" { // only while this host drains: Place takes no object then
			where = "nobody does yet: this host is draining"
		}
		obj.fail(ev, fmt.Errorf("%w (%s)", errNotOwner, where))
		return false
	}
	owner := p.Owner
	if owner == "" { // this host drains and nobody owns the object: hand it on
		if owner, err = c.Member.PickHost(ctx, c.objectName(obj)); err != nil {
			obj.fail(ev, err)
			return false
		}
	}
	obj.remote.Store(&owner)
	go c.forward(obj, ev, owner)
	return false
}

// adopt opens the object's storage for a new placement: it catches up with
// what other hosts committed (from the latest snapshot and the commits
// after it) and replicates every later commit.
func (c *clusterRouting) adopt(obj *Object) error {
	obj.openStorage()
	name := c.objectName(obj)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	have, err := obj.db.AppliedSeq()
	if err != nil {
		return err
	}
	if err := obj.db.Flush(); err != nil { // AppliedSeq opened a transaction
		return err
	}
	log, err := c.Member.Log(ctx, name)
	if err != nil {
		return fmt.Errorf("reading the object's replicated commits: %w", err)
	}
	if have > log.Last {
		// Commits this file has were never replicated (it belongs to an
		// earlier cluster, say): the replicated log is the truth.
		obj.objs.logger.Warn("object storage is ahead of the cluster's log; rebuilding it from the log", "class", obj.ns.class, "id", obj.id, "local", have, "replicated", log.Last)
		if err := obj.replaceStorage(nil); err != nil {
			return err
		}
		have = 0
	}
	if have < log.Snapshot {
		data, err := c.Member.LoadSnapshot(ctx, name, log.Snapshot, log.Chunks)
		if err != nil {
			return fmt.Errorf("reading the object's snapshot: %w", err)
		}
		if err := obj.replaceStorage(data); err != nil {
			return err
		}
		have = log.Snapshot
	}
	commits, err := c.Member.Commits(ctx, name, have)
	if err != nil {
		return fmt.Errorf("reading the object's replicated commits: %w", err)
	}
	for _, cm := range commits {
		if err := obj.db.Apply(cm.Seq, cm.Data); err != nil {
			return fmt.Errorf("restoring the object's storage: %w", err)
		}
	}
	obj.db.SetReplicator(&objectReplica{c: c, name: name, place: obj.place})
	c.metrics.placements.Inc()
	if at, ok, err := obj.db.Alarm(); err == nil && ok {
		obj.objs.alarms.Set(obj.ns.class, obj.id, at)
	}
	return obj.db.Flush()
}

// snapshotEvery is how many commits an object makes between snapshots.
const snapshotEvery = 1000

// snapshot compacts the object's replicated commits into a copy of its
// database once it has made snapshotEvery of them; its writes are flushed.
func (c *clusterRouting) snapshot(obj *Object) error {
	r, ok := obj.db.Replicator().(*objectReplica)
	if !ok || r.commits < snapshotEvery {
		return nil
	}
	path := obj.storagePath() + ".snapshot"
	os.Remove(path)
	defer os.Remove(path)
	seq, err := obj.db.SnapshotTo(path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Member.SaveSnapshot(ctx, r.name, r.place, seq, data); err != nil {
		return fmt.Errorf("saving the object's snapshot: %w", err)
	}
	r.commits = 0
	return nil
}

// disown drops the object's value and storage after its placement ended
// (or to end it: an idle object or a draining host gives it up).
// What the object held here ends before the placement is released
// (Holdings.Leave), and Drain counts it as owned until then.
func (c *clusterRouting) disown(obj *Object) {
	defer obj.owned.Store(false)
	p := obj.place
	obj.place = cluster.Placement{}
	obj.deactivate()
	obj.closeStorage()
	owned := c.Member.Owns(p)
	if p.Owner != "" && c.Holdings != nil {
		c.Holdings.Leave(obj.ns.class, obj.id, owned)
	}
	if owned {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Member.Release(ctx, c.objectName(obj), p); err != nil {
			obj.objs.logger.Warn("releasing an object's placement", "class", obj.ns.class, "id", obj.id, "err", err)
		}
	}
}

// objectReplica appends an object's commits to etcd under its placement.
type objectReplica struct {
	c     *clusterRouting
	name  string
	place cluster.Placement
	// commits counts the commits since the last snapshot.
	commits int
}

func (r *objectReplica) Replicate(seq uint64, commit []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := r.c.Member.Append(ctx, r.name, r.place, seq, commit)
	r.c.metrics.replicaSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		r.commits++
	}
	return err
}

// peerPath is where a host's peer server takes the events of an object.
func peerPath(obj *Object, kind eventKind) string {
	return "/wharf/v1/objects/" + obj.ns.class + "/" + obj.id + "/" + [...]string{fetchEvent: "fetch", callEvent: "call", alarmEvent: "alarm"}[kind]
}

// forward sends ev to the object's owner and hands its answer back. If the
// owner cannot be reached before anything was sent, or answers that it
// does not own the object, the event goes back to the object's queue to be
// placed again, until forwardPatience has passed.
func (c *clusterRouting) forward(obj *Object, ev *objectEvent, owner string) {
	if ev.firstForward.IsZero() {
		ev.firstForward = time.Now()
		c.metrics.forwarded.Inc()
	}
	start := time.Now()
	retry, err := c.send(obj, ev, owner)
	c.metrics.forwardSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	if retry && time.Since(ev.firstForward) < c.forwardPatience() && ev.ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		if ev.body != nil { // delivered here, or sent again, from its start
			ev.req.Body = ev.body.fromStart()
		}
		if derr := obj.objs.dispatch(obj.ns, obj.id, ev, nil); derr == nil {
			return
		}
	}
	c.metrics.forwardFailures.Inc()
	if pe, ok := errors.AsType[*statusError](err); ok { // the owner's own words
		switch ev.kind {
		case fetchEvent:
			ev.resp.deliverOnce(nil, pe)
		case callEvent:
			ev.call.answer(pe.status, []byte(pe.msg), pe.codes)
		case alarmEvent:
			ev.reply(pe)
		}
		return
	}
	if retry {
		err = fmt.Errorf("%w: %w", errForwardGaveUp, err)
	}
	obj.fail(ev, err)
}

// send makes one attempt at delivering ev on owner; retry says whether the
// event is untouched and may be sent again.
func (c *clusterRouting) send(obj *Object, ev *objectEvent, owner string) (retry bool, err error) {
	ctx := ev.ctx
	if ev.kind == alarmEvent { // an alarm has no caller to give up on it
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.forwardPatience())
		defer cancel()
	}
	var body io.Reader
	switch ev.kind {
	case fetchEvent:
		if ev.req.Body != nil && ev.req.Body != http.NoBody {
			if ev.body == nil {
				ev.body = newResendableBody(ev.req.Body, maxResentBody)
			}
			body = ev.body.fromStart()
		}
	case callEvent:
		body = bytes.NewReader(ev.call.args)
	}
	// The URL names the host; the peer client's dialer finds its address.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+owner+peerPath(obj, ev.kind), body)
	if err != nil {
		return false, err
	}
	switch ev.kind {
	case fetchEvent:
		req.Header = ev.req.Header.Clone()
		req.Header.Set(peerMethodHeader, ev.req.Method)
		req.Header.Set(peerURLHeader, ev.req.URL.String())
		req.ContentLength = ev.req.ContentLength
	case callEvent:
		req.Header.Set(peerMethodHeader, ev.call.method)
	case alarmEvent:
		req.Header.Set(peerRetryHeader, strconv.Itoa(ev.retry))
	}
	req.Header.Del(peerNameHeader) // a client's, in a fetch's head
	if name, ok := obj.Name(); ok && len(name) <= maxPeerName {
		req.Header.Set(peerNameHeader, url.QueryEscape(name))
	}
	resp, err := c.Peers.Do(req)
	if err != nil {
		if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "dial" && ev.bodyResendable() {
			c.Member.ForgetAddress(owner)
			return true, err
		}
		return false, err
	}
	if resp.StatusCode == http.StatusMisdirectedRequest {
		resp.Body.Close()
		if !ev.bodyResendable() { // sending it again would send the rest of the body only
			obj.remote.Store(nil) // the next event asks etcd where the object is
			return false, errMovedWithBody
		}
		return true, errNotOwner
	}
	if resp.Header.Get(peerFailedHeader) != "" || (ev.kind != fetchEvent && resp.StatusCode != http.StatusOK) {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return false, &statusError{status: abi.StatusIO, msg: string(bytes.TrimSpace(msg))}
	}
	switch ev.kind {
	case fetchEvent:
		ev.resp.deliverOnce(resp, nil)
	case callEvent:
		result, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr != nil {
			return false, rerr
		}
		status, _ := strconv.Atoi(resp.Header.Get(peerStatusHeader))
		ev.call.answer(abi.Status(status), result, strings.Fields(resp.Header.Get(peerCodesHeader)))
	case alarmEvent:
		resp.Body.Close()
		var aerr error
		if resp.Header.Get(peerStatusHeader) == "skipped" {
			aerr = ErrAlarmSkipped
		}
		ev.reply(aerr)
	}
	return false, nil
}

// Headers and statuses of the peer channel.
const (
	peerMethodHeader = "Wharf-Peer-Method" // HTTP method of a fetch, method of a call
	peerURLHeader    = "Wharf-Peer-Url"    // URL of a fetch
	peerRetryHeader  = "Wharf-Peer-Retry"  // attempt number of an alarm
	peerStatusHeader = "Wharf-Peer-Status" // ABI status of a call's answer
	peerCodesHeader  = "Wharf-Peer-Codes"  // the codes of a call's error answer (abi.CallError), space-separated
	peerFailedHeader = "Wharf-Peer-Failed" // set on a fetch the owner failed
	// peerNameHeader is the name the object's id was made from, when the
	// sender knows it (query-escaped): the owner's ps and inspect show it.
	peerNameHeader   = "Wharf-Peer-Name"
	peerFailedStatus = http.StatusBadGateway
)

// maxPeerName bounds the name sent with a forwarded event
// (peerNameHeader): a longer one, which would make its head too big for
// the peer server, is not sent.
const maxPeerName = 4 << 10

// statusError is a failure with its ABI status and its whole text (what
// last_error says of it): an object's error answer to a call, with the
// codes of its abi.CallError, or an event's failure on the host that ran
// it, as that host wrote it.
type statusError struct {
	status abi.Status
	msg    string
	codes  []string
}

func (e *statusError) Error() string { return e.msg }

func (e *statusError) Unwrap() error { return e.status }

// drainNotBegun is the error of a Drain that failed before it marked the
// host draining: it matches admin.ErrDrainNotBegun as well as its cause.
type drainNotBegun struct{ err error }

func (e *drainNotBegun) Error() string { return e.err.Error() }

func (e *drainNotBegun) Unwrap() []error { return []error{e.err, admin.ErrDrainNotBegun} }

// Drain moves this host's objects to the other hosts of the cluster: the
// host takes no new object, each live object gives its placement up after
// the event under way, and their events are forwarded to the new owners.
// It returns once no object is owned here and what they held here ended
// (Holdings.Leave), or ctx ends, naming those it waits for; an error
// before the host is marked draining matches admin.ErrDrainNotBegun. A
// nil Objects is in no cluster.
func (o *Objects) Drain(ctx context.Context) error {
	if o == nil || o.cluster == nil {
		return errors.New("this wharf is not in a cluster")
	}
	if _, err := o.cluster.Member.PickHost(ctx, ""); errors.Is(err, cluster.ErrUnknownHost) {
		return fmt.Errorf("no host to move the objects to: %w", err)
	} else if err != nil {
		return &drainNotBegun{fmt.Errorf("listing the hosts to move the objects to: %w", err)}
	}
	if err := o.cluster.Member.Drain(ctx); err != nil {
		return &drainNotBegun{fmt.Errorf("marking the host as draining: %w", err)}
	}
	for {
		o.mu.Lock()
		objs := make([]*Object, 0, len(o.live))
		for _, obj := range o.live {
			objs = append(objs, obj)
		}
		o.mu.Unlock()
		var owned []string
		for _, obj := range objs {
			if obj.owned.Load() {
				owned = append(owned, liveKey(obj.ns, obj.id))
				obj.mu.Lock()
				obj.evictNow = true
				obj.mu.Unlock()
				obj.wakeup.Notify()
			}
		}
		if len(owned) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			n, more := len(owned), ""
			slices.Sort(owned)
			if n > 5 {
				owned, more = owned[:5], fmt.Sprintf(" and %d more", n-5)
			}
			left := fmt.Sprintf("%d objects still owned here, or their containers still stopping", n)
			if n == 1 {
				left = "1 object still owned here, or its container still stopping"
			}
			return fmt.Errorf("%s (%s%s): %w", left, strings.Join(owned, ", "), more, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
