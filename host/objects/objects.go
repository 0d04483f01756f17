package objects

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/storage"
	"github.com/wharfhq/wharf/manifest"
	"github.com/wharfhq/wharf/plugins"
)

// Durable Objects. Every live object is a value in one of the plugin's
// long-running instances (placed on the least loaded one, and kept there
// while live), has its storage open, and has one host goroutine that
// delivers its events one at a time in arrival order. Writes of back-to-back events are committed together (group
// commit); the replies of those events are held until the commit returns, so
// nothing that depends on a write leaves before it is durable. A failed
// event loses its writes; an instance that ends takes its objects' values
// with it, and each comes back from storage on its next event.

// maxBatch bounds the events whose replies wait for one commit.
const maxBatch = 64

// ErrUnknownBinding is a stub for a binding the manifest does not declare.
var ErrUnknownBinding = errors.New("no Durable Object binding")

// Objects runs the Durable Objects of one plugin.
type Objects struct {
	rt       Runtime
	logger   *slog.Logger
	bindings map[string]*Namespace // by binding name
	classes  map[string]*Namespace // by class name
	idle     time.Duration
	maxLive  int
	alarms   *Alarms
	// commits makes the objects' commits durable.
	commits *storage.Log
	// cluster places and forwards events; nil on a single host.
	cluster *clusterRouting
	// nextEvent numbers events in their ids.
	nextEvent atomic.Uint64

	mu   sync.Mutex
	live map[string]*Object // by liveKey
	lru  *list.List         // idle objects, least recently used first
	// Open databases are capped (each holds three descriptors): beyond the
	// cap, parked databases are closed first, then idle live objects close
	// theirs, least recently used first, and reopen it on their next event.
	openDBs   int
	maxOpenDB int
	idleDBs   *list.List // idle objects with an open database, LRU first
	// parked holds the open databases of evicted objects (single host
	// only), so an object that comes back skips opening its file;
	// parkedLRU orders them, least recently parked first.
	parked    map[string]*list.Element // by liveKey; values *parkedDB
	parkedLRU *list.List
	closed    bool
	wg        sync.WaitGroup
}

// parkedDB is the open database of an evicted object.
type parkedDB struct {
	key string
	db  *storage.DB
}

// liveKey names an object in Objects' maps.
func liveKey(ns *Namespace, id string) string { return ns.class + "/" + id }

// Object is one Durable Object: its event queue and, while live, its
// placement on an instance and its database (owned by its run goroutine).
type Object struct {
	objs *Objects
	ns   *Namespace
	id   string

	mu       sync.Mutex
	queue    []*objectEvent
	running  bool
	evictNow bool // the host needs room: retire when idle
	lruElem  *list.Element
	dbElem   *list.Element // in Objects.idleDBs
	closeDB  bool          // the host needs descriptors: close the database when idle
	wakeup   guestio.Signal

	// inst is the object's value on an instance; nil while it has none.
	inst Placement
	db   *storage.DB
	// egress is the policy of the object's container, made on first use;
	// only the object's own events touch it.
	egress *containers.Policy
	// place is the object's placement in the cluster while this host owns
	// it (its storage is open only then); only the run goroutine touches it.
	place cluster.Placement
	// remote is the other host that owned the object when this one last
	// asked: dispatch sends its events there without asking etcd again.
	remote atomic.Pointer[string]
	// owned mirrors place for other goroutines (Drain).
	owned atomic.Bool
	// storageFailed is set once StorageFailed logged.
	storageFailed atomic.Bool
	// chained are events the instance delivered as the previous one ended
	// (guarded by mu), in order, for the run goroutine to finish; chainRoom
	// is how many more it may deliver so before the group commit (maxBatch).
	chained   []*objectEvent
	chainRoom int
	// idle is set (under mu) while the run goroutine waits for an event
	// with nothing to commit: a caller may then deliver a call to the
	// object's instance itself (SendCall), which clears it. asleep is set
	// while the run goroutine waits and has not yet looked at why it woke:
	// only then may the instance finish such a call itself and make the
	// object idle again (finishInline). inlineEnded is when it last did:
	// the idle timeout counts from there.
	idle        bool
	asleep      bool
	inlineEnded time.Time
	// current is the event delivered on the instance now, for Chain; set
	// by whoever delivers it.
	current *objectEvent
}

type eventKind int

const (
	fetchEvent eventKind = iota
	callEvent
	alarmEvent
)

// objectEvent is one delivery to an object and how to answer it.
type objectEvent struct {
	kind eventKind
	ctx  context.Context
	// id names the event in logs and in what its caller is told when it
	// fails; set when its delivery starts (prepare), with runCtx, which
	// bounds it by the plugin's time limit, and cancel, which ends runCtx.
	id     guestio.EventID
	runCtx context.Context
	cancel context.CancelFunc
	// scope is the event's scope when the instance delivered it as the
	// previous one ended (see Chain); nil until then. delivered is the
	// scope of its latest delivery.
	scope     Event
	delivered Event
	// answered is set when the call was answered as it ended (Chain): its
	// reply only releases the call.
	answered bool
	// inline marks a call delivered while the object was idle, without
	// waking its run goroutine (deliverNowLocked); stopWake unregisters the
	// wake-up the end of runCtx sends it meanwhile.
	inline   bool
	stopWake func() bool
	// fetch; body keeps what forwarding read of req.Body, to send it again
	req  *http.Request
	resp *Response
	body *resendableBody
	// call
	call *Call
	// alarm
	retry int
	// reply is called once the event's writes are durable (or failed).
	reply func(error)
	// forwarded is an event another host sent: it is not forwarded again.
	forwarded bool
	// firstForward is when this host first sent the event to another.
	firstForward time.Time
}

// New opens the Durable Objects of the plugin m describes: its
// namespaces (their keys under dataDir, shared by the cluster cc joins
// unless cc is nil), its commit log, opened with logOpts, and its alarm
// index. The objects' events run on rt's instances; reg registers the
// cluster's metrics (nil: none). StartAlarms begins delivering alarms.
func New(ctx context.Context, rt Runtime, m *manifest.Manifest, dataDir string, logOpts storage.LogOptions, cc *ClusterConfig, reg prometheus.Registerer, logger *slog.Logger) (*Objects, error) {
	o := &Objects{
		rt: rt, logger: logger,
		bindings: map[string]*Namespace{}, classes: map[string]*Namespace{},
		idle: m.DurableObjects.IdleTimeout.Duration, maxLive: m.DurableObjects.MaxLive,
		live: map[string]*Object{}, lru: list.New(), idleDBs: list.New(), maxOpenDB: maxOpenDatabases(),
		parked: map[string]*list.Element{}, parkedLRU: list.New(),
	}
	root := filepath.Join(dataDir, "objects")
	for _, b := range m.DurableObjects.Bindings {
		ns := o.classes[b.ClassName]
		if ns == nil {
			dir := filepath.Join(root, b.ClassName)
			if cc == nil { // a cluster's key replaces the host's
				if err := keyKept(dir); err != nil {
					return nil, fmt.Errorf("namespace %s: %w", b.ClassName, err)
				}
			}
			ids, err := LoadIDs(filepath.Join(dir, "namespace.key"))
			if err != nil {
				return nil, fmt.Errorf("namespace %s: %w", b.ClassName, err)
			}
			if cc != nil { // every host must make the same ids
				key, err := cc.Member.Shared(ctx, "namespace-keys/"+m.Name+"/"+b.ClassName, ids.Key())
				if err != nil {
					return nil, fmt.Errorf("namespace %s: the cluster's key: %w", b.ClassName, err)
				}
				ids = WithKey(key)
			}
			ns = &Namespace{class: b.ClassName, ids: ids, dir: dir}
			o.classes[b.ClassName] = ns
		}
		o.bindings[b.Name] = ns
	}
	commits, err := storage.OpenLog(filepath.Join(root, "commit-log"), root, logOpts)
	if err != nil {
		return nil, err
	}
	logRecovery(logger, commits.Recovery(), logOpts)
	o.commits = commits
	known := func(class string) bool { _, ok := o.classes[class]; return ok }
	var alarms *Alarms
	if cc == nil { // in a cluster, the databases here may be of objects another host owns
		alarms, err = openAlarmIndex(filepath.Join(root, "alarms.sqlite"), o.classes, known, o.deliverAlarm, logger)
		if err == nil {
			if err = alarms.restore(commits.Recovery().BroughtBack(), o.classes, logger); err != nil {
				alarms.Close()
				err = fmt.Errorf("alarm index: %w", err)
			}
		}
	} else {
		alarms, err = OpenAlarms(filepath.Join(root, "alarms.sqlite"), known, o.deliverAlarm, logger)
	}
	if err != nil {
		commits.Close()
		return nil, err
	}
	o.alarms = alarms
	if cc != nil {
		o.cluster = newClusterRouting(*cc, m.Name, reg)
	}
	return o, nil
}

// logRecovery logs what the commit log, opened with opts, replayed at the
// start, r, when a crash (or a copy of the data directory made while its
// wharf ran) left it segments. --accept-lost-commits is for
// one start: a start with it also says to leave it out of the next ones,
// where it would give up a later loss without asking (a unit file keeps
// the flags it was given).
func logRecovery(logger *slog.Logger, r storage.Recovery, opts storage.LogOptions) {
	if r.Segments > 0 {
		logger.Info("commit log replayed: the last run on this data directory did not stop cleanly (a crash or a kill), or the directory was copied while its wharf ran", "segments", r.Segments, "databases", r.Databases, "commits", r.Commits, "dropped", r.Dropped, "took", r.Took.Round(time.Millisecond))
	}
	for _, path := range slices.Sorted(maps.Keys(r.DroppedFrom)) {
		logger.Info("an object's commits in the commit log's last batch, torn (by the crash, or by a copy made while it was written) before it was synced (none acknowledged), were dropped from its first damaged or missing one", "file", path, "commits", r.DroppedFrom[path])
	}
	if r.Damaged > 0 {
		logger.Warn("the commit log was damaged inside: the commits of its damaged records are lost (an object missing one after its later ones are replayed is not opened)", "records", r.Damaged)
	}
	for _, path := range slices.Sorted(maps.Keys(r.LostFrom)) {
		lost := r.LostFrom[path]
		logger.Warn("an object's database was opened without its commits the commit log has no whole record of (--accept-lost-commits)", "file", path, "from", lost.From, "through", lost.Through, "err", lost.Why)
	}
	if opts.AcceptLostCommits {
		logger.Warn("started with --accept-lost-commits: leave it out of the next starts, which would give up the commits of a later loss without asking", "objects_opened_without_commits", len(r.LostFrom))
	}
	for path, err := range r.Unreplayed {
		if lost := (*storage.Lost)(nil); errors.As(err, &lost) {
			logger.Error("the commit log has no whole record of an object's commits: its events fail until its file is restored from a copy that holds them, or the host is started once with --accept-lost-commits, which opens it at its commit before them", "file", path, "from", lost.From, "through", lost.Through, "err", err)
			continue
		}
		logger.Error("the commit log could not be replayed into an object's database: its events fail until it is mended (its commits stay in the log; restart the host after)", "file", path, "err", err)
	}
}

// StartAlarms begins delivering alarms (see Alarms.Start).
func (o *Objects) StartAlarms() { o.alarms.Start() }

// NamespaceNamed is Namespace for a name a guest passed, read where it
// lies: a name of any size costs no copy.
func (o *Objects) NamespaceNamed(binding []byte) (*Namespace, error) {
	if ns, ok := o.bindings[string(binding)]; ok {
		return ns, nil
	}
	return o.Namespace(string(binding[:min(len(binding), 81)]))
}

// Namespace is the namespace binding names in the manifest.
func (o *Objects) Namespace(binding string) (*Namespace, error) {
	ns, ok := o.bindings[binding]
	if !ok {
		return nil, fmt.Errorf("%w named %q in the manifest", ErrUnknownBinding, abi.Excerpt(binding)) // a guest's name may be any size
	}
	return ns, nil
}

// dispatch queues ev for the object and starts its goroutine if needed.
// An event sent from an instance (from; nil otherwise) may be delivered at
// once instead (deliverNowLocked).
func (o *Objects) dispatch(ns *Namespace, id string, ev *objectEvent, from Caller) error {
	key := liveKey(ns, id)
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return plugins.ErrPoolClosed
	}
	obj := o.live[key]
	if r := o.remoteOwner(obj, ev); r != "" {
		o.mu.Unlock()
		go o.cluster.forward(obj, ev, r)
		return nil
	}
	if obj == nil {
		obj = &Object{objs: o, ns: ns, id: id, wakeup: guestio.NewSignal()}
		o.live[key] = obj
	}
	obj.mu.Lock()
	if obj.lruElem != nil {
		o.lru.Remove(obj.lruElem)
		obj.lruElem = nil
	}
	if from != nil && obj.deliverNowLocked(from, ev) {
		obj.mu.Unlock()
		o.mu.Unlock()
		return nil
	}
	obj.queue = append(obj.queue, ev)
	start := !obj.running
	obj.running = true
	obj.mu.Unlock()
	if start {
		o.wg.Add(1)
	}
	o.mu.Unlock()
	if start {
		go obj.run()
	} else {
		obj.wakeup.Notify()
	}
	return nil
}

// remoteOwner is the other host ev goes straight to: the object's
// remembered owner, for an event that is neither forwarded here nor being
// retried.
func (o *Objects) remoteOwner(obj *Object, ev *objectEvent) string {
	if obj == nil || o.cluster == nil || ev.forwarded || !ev.firstForward.IsZero() {
		return ""
	}
	if r := obj.remote.Load(); r != nil {
		return *r
	}
	return ""
}

// run delivers events until the object has been idle for the idle timeout.
func (obj *Object) run() {
	defer obj.objs.wg.Done()
	var waiting []func(error) // replies held until the next commit is durable
	commit := func() {
		// On a single host the object runs on while its commit syncs: the
		// replies wait for the sync. In a cluster, Flush replicates first.
		var err error
		background := obj.objs.cluster == nil && obj.db != nil
		switch {
		case background:
			err = obj.db.Commit()
		case obj.db != nil:
			err = obj.db.Flush()
		}
		if err != nil {
			obj.deactivate() // its memory may reflect writes that were lost
			if errors.Is(err, storage.ErrFileReplaced) || errors.Is(err, storage.ErrNotDurable) {
				obj.reopenStorage()
			}
			if c := obj.objs.cluster; c != nil {
				c.disown(obj) // fenced, perhaps: the next event places it again
			}
			err = obj.commitFailure(err)
		} else if c := obj.objs.cluster; c != nil && obj.db != nil {
			if serr := c.snapshot(obj); serr != nil { // the commits stay: nothing is lost
				obj.objs.logger.Warn("compacting the object's replicated commits", "class", obj.ns.class, "id", obj.id, "err", serr)
			}
		}
		if err == nil && background {
			replies := waiting
			obj.db.SyncThen(func(err error) {
				if err != nil {
					err = obj.commitFailure(err)
				}
				for _, reply := range replies {
					reply(err)
				}
			})
			waiting = nil
			return
		}
		for _, reply := range waiting {
			reply(err)
		}
		waiting = waiting[:0]
	}
	for {
		ev := obj.next()
		switch {
		case ev == nil:
			commit()
			if obj.waitOrRetire() {
				return
			}
			continue
		case ev.scope != nil: // delivered already, in the batch's room
		case obj.objs.cluster != nil && !obj.objs.cluster.owns(obj):
			commit() // under the placement the writes were made in
			if !obj.objs.cluster.route(obj, ev) {
				continue
			}
		default:
			if len(waiting) == 0 && obj.db != nil && obj.db.NotDurable() {
				// A sync failed after the last batch: rebuild the object
				// from its file rather than fail this batch's commit.
				obj.deactivate()
				obj.reopenStorage()
			}
			obj.chainRoom = maxBatch - 1 - len(waiting)
		}
		obj.handle(ev)
		waiting = append(waiting, ev.reply)
		if len(waiting) >= maxBatch && !obj.chaining() { // chainRoom keeps a chain inside the batch
			commit()
		}
	}
}

// next is the event to run or finish next: the first the instance chained,
// else the first queued.
func (obj *Object) next() *objectEvent {
	obj.mu.Lock()
	defer obj.mu.Unlock()
	if len(obj.chained) > 0 {
		return pop(&obj.chained)
	}
	if len(obj.queue) == 0 {
		return nil
	}
	return pop(&obj.queue)
}

// chaining reports whether chained events wait for the run goroutine.
func (obj *Object) chaining() bool {
	obj.mu.Lock()
	defer obj.mu.Unlock()
	return len(obj.chained) > 0
}

// pop takes the first event off q.
func pop(q *[]*objectEvent) *objectEvent {
	ev := (*q)[0]
	(*q)[0] = nil
	*q = (*q)[1:]
	return ev
}

// waitOrRetire waits for an event. After the idle timeout, when the host
// needs room or is shutting down, the object is evicted and waitOrRetire
// returns true. Only the object's own goroutine retires it.
func (obj *Object) waitOrRetire() bool {
	o := obj.objs
	o.mu.Lock()
	closed := o.closed
	if obj.lruElem == nil && !closed {
		obj.lruElem = o.lru.PushBack(obj)
	}
	if obj.db != nil && obj.dbElem == nil {
		obj.dbElem = o.idleDBs.PushBack(obj)
	}
	o.mu.Unlock()
	if closed {
		return obj.retire()
	}
	o.evictOverflow()
	obj.mu.Lock()
	obj.idle, obj.asleep = true, true
	obj.mu.Unlock()
	check := o.idle // in a cluster, sooner (idleCheck)
	if c := o.cluster; c != nil {
		check = c.idleCheck(o.idle)
	}
	waitingSince := time.Now()
	timer := time.NewTimer(check)
	defer timer.Stop()
	for {
		select {
		case <-obj.wakeup:
			return obj.woke()
		case <-timer.C:
		}
		if c := o.cluster; c != nil && c.staysIdle(obj, time.Since(waitingSince) < o.idle) {
			timer.Reset(check)
			continue
		}
		obj.mu.Lock()
		claimed := !obj.idle
		// Calls the instance finished itself (finishInline) kept the
		// object busy: the idle timeout counts from the last of them.
		rest := o.idle - time.Since(obj.inlineEnded)
		if !claimed && rest > 0 {
			obj.mu.Unlock()
			timer.Reset(rest)
			continue
		}
		obj.idle, obj.asleep = false, false
		obj.mu.Unlock()
		if claimed {
			return false
		}
		return obj.retire()
	}
}

// woke is waitOrRetire after a wake-up: it reports whether the object
// retired, for the host needing room or shutting down, or it closed its
// database, for the host needing descriptors.
func (obj *Object) woke() bool {
	o := obj.objs
	obj.mu.Lock()
	claimed := !obj.idle // a call was delivered here already
	evict, closeDB := obj.evictNow && !claimed, obj.closeDB && len(obj.queue) == 0 && !claimed
	obj.evictNow, obj.closeDB, obj.idle, obj.asleep = false, false, false, false
	obj.mu.Unlock()
	o.mu.Lock()
	closed := o.closed
	if obj.dbElem != nil {
		o.idleDBs.Remove(obj.dbElem)
		obj.dbElem = nil
	}
	o.mu.Unlock()
	if closeDB && !evict && !closed {
		if c := o.cluster; c != nil {
			if c.holds(obj) { // closing it would give its placement up
				return false
			}
			c.disown(obj) // its storage opens only with a placement
		}
		obj.closeStorage()
		return false
	}
	if claimed || !evict && !closed {
		return false
	}
	return obj.retire()
}

// retire evicts the object unless an event arrived meanwhile.
func (obj *Object) retire() bool {
	o := obj.objs
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if o.cluster == nil && !closed && obj.db != nil {
		obj.db.ShrinkMemory() // it is about to be parked
	}
	if c := o.cluster; c != nil && obj.place.Owner != "" && !closed {
		// Give the placement up while the object is still the only one with
		// its id here: an event arriving after the release places it anew
		// (on shutdown the revoked lease releases them all).
		c.disown(obj)
	}
	o.mu.Lock()
	obj.mu.Lock()
	if len(obj.queue) > 0 {
		obj.mu.Unlock()
		o.mu.Unlock()
		return false
	}
	obj.running = false
	if obj.lruElem != nil {
		o.lru.Remove(obj.lruElem)
		obj.lruElem = nil
	}
	key := liveKey(obj.ns, obj.id)
	delete(o.live, key)
	if o.cluster == nil && !closed && obj.db != nil && obj.db.Opened() {
		// Parked in the same critical section that ends the object, so
		// the next object of its id finds the database here.
		if obj.dbElem != nil {
			o.idleDBs.Remove(obj.dbElem)
			obj.dbElem = nil
		}
		o.parked[key] = o.parkedLRU.PushBack(&parkedDB{key: key, db: obj.db})
		obj.db = nil
	}
	obj.mu.Unlock()
	o.mu.Unlock()
	obj.deactivate()
	obj.closeStorage()
	return true
}

// commitFailure logs a failed commit, naming the object's class, id and
// database file, as a failure to open it is (lazyDB), and returns the
// error its held replies get, without the details that name the host's
// files (they are in the log). A commit whose sync failed
// (storage.ErrNotDurable) may have landed in the file all the same: the
// operator needs the file to see which.
func (obj *Object) commitFailure(err error) error {
	obj.objs.logger.Error("storage commit failed", "class", obj.ns.class, "id", obj.id, "file", obj.storagePath(), "err", err)
	if errors.Is(err, storage.ErrNotDurable) {
		err = storage.ErrNotDurable
	}
	return fmt.Errorf("storage commit failed: %w", err)
}

// reopenStorage closes the object's database, which a commit must not
// reach; the next event opens the file at the object's path.
func (obj *Object) reopenStorage() {
	obj.db.Close()
	obj.db = obj.lazyDB()
}

// closeStorage closes the object's database; its next event reopens it.
func (obj *Object) closeStorage() {
	if obj.db == nil {
		return
	}
	o := obj.objs
	if err := obj.db.Close(); err != nil {
		o.logger.Error("closing object storage", "class", obj.ns.class, "id", obj.id, "err", err)
	}
	obj.db = nil
	o.mu.Lock()
	o.openDBs--
	if obj.dbElem != nil {
		o.idleDBs.Remove(obj.dbElem)
		obj.dbElem = nil
	}
	o.mu.Unlock()
}

// openStorage gives the object its database: the one it parked when it
// was evicted, or one whose file opens with its first statement. While
// more than maxOpenDB are open, parked databases are closed and the least
// recently used idle objects are asked to close theirs.
func (obj *Object) openStorage() {
	o := obj.objs
	key := liveKey(obj.ns, obj.id)
	o.mu.Lock()
	if e := o.parked[key]; e != nil {
		delete(o.parked, key)
		p := o.parkedLRU.Remove(e).(*parkedDB)
		o.mu.Unlock()
		switch {
		case p.db.Replaced():
			// Its file was deleted or replaced while it was parked: the
			// object gets the file there now, as it would had it been
			// closed.
			o.logger.Warn("an evicted object's database file was deleted or replaced on disk; using the file there now", "object", key)
		case p.db.NotDurable():
			// Its last commits could not be synced: what it shows may
			// be lost, and it refuses commits. The file is opened anew.
			o.logger.Warn("an evicted object's last commits could not be made durable; opening its database again", "object", key)
		default:
			obj.db = p.db
			return
		}
		o.closeParkedDB(p)
		obj.db = obj.lazyDB() // takes p's place in openDBs
		return
	}
	obj.db = obj.lazyDB()
	o.openDBs++
	var parked []*parkedDB
	for o.openDBs > o.maxOpenDB && o.parkedLRU.Len() > 0 {
		p := o.parkedLRU.Remove(o.parkedLRU.Front()).(*parkedDB)
		delete(o.parked, p.key)
		parked = append(parked, p)
		o.openDBs--
	}
	var victims []*Object
	for e := o.idleDBs.Front(); e != nil && o.openDBs-len(victims) > o.maxOpenDB; e = e.Next() {
		victims = append(victims, e.Value.(*Object))
	}
	o.mu.Unlock()
	o.closeParked(parked)
	for _, v := range victims {
		v.mu.Lock()
		v.closeDB = true
		v.mu.Unlock()
		v.wakeup.Notify()
	}
}

// replaceStorage replaces the object's database file with data (a
// snapshot), or with an empty database for nil, and opens it.
func (obj *Object) replaceStorage(data []byte) error {
	obj.closeStorage()
	path := obj.storagePath()
	var err error
	if data == nil {
		err = storage.Remove(path)
	} else {
		err = storage.Install(path, data)
	}
	if err != nil {
		return err
	}
	obj.openStorage()
	return nil
}

// storagePath is the object's database file.
func (obj *Object) storagePath() string { return obj.ns.StoragePath(obj.id) }

// lazyDB is the object's database, whose file opens with its first
// statement; a failure to open it is logged naming the object and the
// file (the error its event gets does not name the file).
func (obj *Object) lazyDB() *storage.DB {
	d := storage.Lazy(obj.storagePath(), obj.objs.commits)
	d.OnOpenError(func(err *storage.OpenError) {
		obj.objs.logger.Error("an object's database could not be opened: its events that use its storage fail", "class", obj.ns.class, "id", obj.id, "file", err.Path, "err", err.Err)
	})
	return d
}

// MemoryOpenDatabases caps open object databases by memory: an open
// SQLite connection to a small database holds about 100 KiB (measured: 76
// KiB of SQLite's heap, with its WAL's index, the rest Go's side), so this
// many hold about 400 MiB.
const MemoryOpenDatabases = 4096

// maxOpenDatabases is OpenDatabases under the process's descriptor limit.
func maxOpenDatabases() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1000
	}
	return OpenDatabases(lim.Cur)
}

// OpenDatabases is how many object databases may be open at once under a
// descriptor limit of fileLimit: three descriptors each (the database, its
// WAL, and the WAL again for the commit log) in half the limit; at least
// 16, at most MemoryOpenDatabases. The other half is for connections,
// containerd, logs and the databases of busy objects past the cap (it is
// enforced by closing idle objects' databases, after a new one opened).
func OpenDatabases(fileLimit uint64) int {
	return min(max(int(min(fileLimit, 1<<30)/6), 16), MemoryOpenDatabases)
}

// evictOverflow asks the least recently used idle objects to retire while
// more than maxLive are live.
func (o *Objects) evictOverflow() {
	o.mu.Lock()
	excess := len(o.live) - o.maxLive
	var victims []*Object
	for e := o.lru.Front(); e != nil && len(victims) < excess; e = e.Next() {
		victims = append(victims, e.Value.(*Object))
	}
	o.mu.Unlock()
	for _, v := range victims {
		v.mu.Lock()
		v.evictNow = true
		v.mu.Unlock()
		v.wakeup.Notify()
	}
}

// IsLive reports whether the object id of ns has an instance or events
// now.
func (o *Objects) IsLive(ns *Namespace, id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live[liveKey(ns, id)] != nil
}

// PlacementOf is where the live object id of ns is placed now; false if it
// is not live. Only a check that the object is idle can rely on it.
func (o *Objects) PlacementOf(ns *Namespace, id string) (Placement, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	obj, ok := o.live[liveKey(ns, id)]
	if !ok {
		return nil, false
	}
	return obj.inst, true
}

// SetMaxOpenDatabases caps the object databases open at once (by default
// what the descriptor limit allows); it takes effect as objects open
// theirs.
func (o *Objects) SetMaxOpenDatabases(n int) {
	o.mu.Lock()
	o.maxOpenDB = n
	o.mu.Unlock()
}

// ParkedDatabases counts the open databases of evicted objects, kept for
// their next event.
func (o *Objects) ParkedDatabases() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.parked)
}

// LiveObjects is the number of objects with a running instance or queue.
func (o *Objects) LiveObjects() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.live)
}

// activate places the object on an instance and gives it its storage,
// running the class's constructor there.
func (obj *Object) activate(ev *objectEvent) error {
	if obj.db == nil {
		obj.openStorage()
	}
	if obj.inst != nil {
		if obj.inst.Alive() {
			return nil
		}
		obj.deactivate() // its instance ended or drains: build it anew from storage
	}
	ctx, cancel := obj.objs.rt.EventContext(ev.ctx)
	defer cancel()
	in, err := obj.objs.rt.Place(ctx, obj)
	if err != nil {
		return err
	}
	obj.inst = in
	obj.db.BeginEvent()
	err = in.Deliver(ctx, in.NewEvent(ctx, ev.id, false), abi.EventConstruct, nil)
	obj.db.EndEvent(err != nil)
	if err != nil {
		obj.deactivate()
		return &constructorError{class: obj.ns.class, err: err}
	}
	return nil
}

// deactivate drops the object's value from its instance; the next event
// builds it anew.
func (obj *Object) deactivate() {
	in := obj.inst
	if in == nil {
		return
	}
	obj.inst = nil
	in.Drop()
}

// handle runs one event in the object's instance.
func (obj *Object) handle(ev *objectEvent) {
	if ev.scope == nil {
		obj.number(ev)
		if ev.kind == alarmEvent && !obj.alarmDue(ev) {
			return
		}
		obj.prepare(ev)
	}
	defer ev.cancel()
	var g Event
	var err error
	for attempt := 0; attempt < guestio.MaxDeliveries; attempt++ {
		if g, err = obj.attempt(ev); !errors.Is(err, guestio.ErrNotStarted) {
			break
		}
		obj.deactivate() // its instance ended before the event started
	}
	if err != nil {
		logger := obj.objs.logger.With("class", obj.ns.class, "id", obj.id, "request_id", ev.id.String())
		if g != nil {
			logger = g.Log()
		}
		if errors.Is(err, plugins.ErrCanceled) { // as for a Worker's request
			logger.Info("caller went away", "err", err)
		} else {
			logger.Error("object event failed", "err", err)
		}
		switch {
		case obj.inst != nil && !obj.inst.Alive(),
			errors.Is(err, plugins.ErrDeadline), errors.Is(err, plugins.ErrCanceled):
			// Its instance ended or drains, or the guest may still be
			// running the event it was abandoned in: its value is rebuilt
			// from storage on the next event.
			obj.deactivate()
		}
		if ev.kind == alarmEvent {
			// Its writes were undone: an alarm set from now on is a later
			// event's, which replaces the retry.
			obj.objs.alarms.undone(obj.ns.class, obj.id)
			if ev.retry >= maxAlarmRetries && obj.db != nil {
				obj.giveUpAlarm()
			}
		}
	}
	ev.finish(err)
}

// giveUpAlarm deletes the object's alarm after its last retry failed: the
// scheduler gives it up (Alarms.finished), but the failed event's rollback
// put it back in the database, where GetAlarm would report an alarm that
// never fires (and a handler that sets one only when none is pending would
// never set one again). Its write is committed with the event's batch,
// before the scheduler hears of the failure.
func (obj *Object) giveUpAlarm() {
	obj.db.BeginEvent()
	err := obj.db.DeleteAlarm()
	if dberr := obj.db.EndEvent(err != nil); err == nil {
		err = dberr
	}
	if err != nil {
		obj.objs.logger.Error("deleting an alarm given up: GetAlarm reports it until the object sets or deletes its alarm", "class", obj.ns.class, "id", obj.id, "err", err)
	}
}

// number gives ev its id.
func (obj *Object) number(ev *objectEvent) {
	ev.id = guestio.EventID{Prefix: obj.ns.class + "#" + obj.id[:8], N: obj.objs.nextEvent.Add(1)}
}

// prepare readies a numbered event for delivery: its time limit starts,
// and a fetch gets the request the guest reads.
func (obj *Object) prepare(ev *objectEvent) {
	caller, release := ev.ctx, func() {}
	if ev.kind == fetchEvent {
		ev.resp.in = obj.objs.rt.Request(ev.resp, ev.req, func() error { return obj.streamed(ev) })
		caller, release = ev.resp.untilAnswered(caller)
	}
	runCtx, cancel := obj.objs.rt.EventContext(caller)
	ev.runCtx, ev.cancel = runCtx, func() { cancel(); release() }
}

// delivery is what the guest reads for ev: its kind and argument.
func (ev *objectEvent) delivery() (abi.EventKind, any) {
	switch ev.kind {
	case fetchEvent:
		return abi.EventFetch, ev.resp.in
	case callEvent:
		return abi.EventCall, ev.call
	default:
		return abi.EventAlarm, ev.retry
	}
}

// fail answers ev with err without delivering it. A forwarded event
// refused as the object is not this host's (errNotOwner) is part of a
// move, not a failure: it is logged at INFO.
func (obj *Object) fail(ev *objectEvent, err error) {
	obj.number(ev)
	if errors.Is(err, errNotOwner) { // a forwarded event of an object that moved: its sender places it again
		obj.objs.logger.Info("forwarded object event refused", "class", obj.ns.class, "id", obj.id, "request_id", ev.id.String(), "err", err)
	} else {
		obj.objs.logger.Error("object event failed", "class", obj.ns.class, "id", obj.id, "request_id", ev.id.String(), "err", err)
	}
	ev.finish(err)
	ev.reply(nil)
}

// attempt activates the object if needed and delivers the event, inside a
// storage event that is rolled back if it fails. An event the instance
// chained is delivered already: attempt waits for it.
func (obj *Object) attempt(ev *objectEvent) (Event, error) {
	g := ev.scope
	ev.scope = nil // a second attempt delivers it anew
	var err error
	if g == nil {
		if err := obj.activate(ev); err != nil {
			return nil, err
		}
		obj.db.BeginEvent()
		if ev.kind == alarmEvent {
			err = obj.db.DeleteAlarm() // a failed alarm gets it back; the handler may set a new one
		}
		if err == nil {
			g = obj.scopeOn(obj.inst, ev)
			ev.delivered, obj.current = g, ev
			ev.inline = false // delivered again (its instance ended first): awaited here
			kind, arg := ev.delivery()
			err = obj.inst.Deliver(ev.runCtx, g, kind, arg)
		}
	} else {
		err = g.Await(ev.runCtx)
	}
	if g != nil && g.StorageEnded() {
		return g, err
	}
	if dberr := obj.db.EndEvent(err != nil); dberr != nil && err == nil {
		err = dberr
	}
	return g, err
}

// Chain ends the object's event g on its instance's goroutine, as the
// guest reports it done (under the instance's lock). A call whose object
// has nothing unsynced is answered there and then: its reply would wait
// for no commit. And the object's next queued event is delivered there and
// then. Without these the caller and the next event wait for goroutine
// hand-offs (to the object's goroutine, which ends the storage event, and
// back to the instance), which cost more than a small event's own work.
// It chains only an event that succeeded, on a single host, on an instance
// that keeps its objects, while the batch has room, and never an alarm
// (whose due time the run goroutine checks). The run goroutine finishes g
// as usual and then waits for the chained event. Chain returns g's
// outcome: a failure if its storage event could not end. The instance
// calls it for an event made to chain (Placement.NewEvent).
func (obj *Object) Chain(g Event, failure error) error {
	ev := obj.current
	if ev == nil || ev.delivered != g || !ev.inline {
		return obj.chain(ev, g, failure)
	}
	ev.inline = false
	ev.stopWake() // ev ended: from here on Chain wakes the run goroutine if it must
	failure = obj.chain(ev, g, failure)
	if failure != nil || !obj.finishInline(ev) {
		obj.wakeup.Notify() // the run goroutine finishes it
	}
	return failure
}

// chain is Chain for the event ev delivered as g, if it is the current one.
func (obj *Object) chain(ev *objectEvent, g Event, failure error) error {
	if failure != nil || obj.objs.cluster != nil {
		return failure
	}
	if ev != nil && ev.delivered == g && ev.kind == callEvent && obj.db.Settled() {
		if err := obj.endStorage(g); err != nil {
			return err
		}
		ev.answered = true
		ev.call.settle(nil)
	}
	in := g.Placement()
	if obj.chainRoom <= 0 || in.DrainingLocked() {
		return nil
	}
	// Only the run goroutine takes queued events too, and it waits for g:
	// the first stays first until it moves to chained below.
	obj.mu.Lock()
	var next *objectEvent
	if len(obj.queue) > 0 && obj.queue[0].kind != alarmEvent {
		next = obj.queue[0]
	}
	obj.mu.Unlock()
	if next == nil {
		return nil
	}
	if !g.StorageEnded() {
		if err := obj.endStorage(g); err != nil {
			return err
		}
	}
	obj.chainRoom--
	obj.mu.Lock()
	obj.deliverLocked(in, pop(&obj.queue))
	obj.mu.Unlock()
	return nil
}

// finishInline finishes the call ev, delivered while the object was idle
// (deliverNowLocked) and answered as it ended (Chain), on the instance's
// goroutine as the run goroutine would have, and makes the object idle
// again: with no write to commit and nothing else to run, waking the run
// goroutine would cost the call more than the call itself. It reports
// false, leaving ev to the run goroutine, if ev was not answered, its read
// transaction did not commit, or the run goroutine woke meanwhile (another
// event came, or the host needs the object's room) or chained an event
// after it.
func (obj *Object) finishInline(ev *objectEvent) bool {
	// The run goroutine touches the database only once it took ev, after
	// it ended; else it sleeps until the object is idle again.
	if !ev.answered || obj.db.Commit() != nil {
		return false
	}
	o := obj.objs
	o.mu.Lock()
	defer o.mu.Unlock()
	obj.mu.Lock()
	defer obj.mu.Unlock()
	if !obj.asleep || len(obj.chained) != 1 || obj.chained[0] != ev {
		return false
	}
	pop(&obj.chained)
	ev.cancel()
	ev.finish(nil)
	ev.reply(nil)
	obj.idle, obj.inlineEnded = true, time.Now()
	if obj.lruElem == nil {
		obj.lruElem = o.lru.PushBack(obj)
	}
	if obj.dbElem == nil {
		obj.dbElem = o.idleDBs.PushBack(obj)
	}
	return true
}

// endStorage ends the storage event of g as g ends (see Chain).
func (obj *Object) endStorage(g Event) error {
	g.EndStorage()
	return obj.db.EndEvent(false)
}

// deliverLocked delivers ev on in, for the run goroutine to finish, under
// the instance's lock and mu.
func (obj *Object) deliverLocked(in Placement, ev *objectEvent) {
	obj.number(ev)
	obj.prepare(ev)
	obj.db.BeginEvent()
	ev.scope = obj.scopeOn(in, ev)
	ev.delivered, obj.current = ev.scope, ev
	kind, arg := ev.delivery()
	in.PostLocked(ev.scope, kind, arg)
	obj.chained = append(obj.chained, ev)
}

// scopeOn makes ev's scope on in. Every event but an alarm may chain the
// next one when it ends.
func (obj *Object) scopeOn(in Placement, ev *objectEvent) Event {
	return in.NewEvent(ev.runCtx, ev.id, ev.kind != alarmEvent)
}

// streamed commits before a streamed response's head leaves, so the bytes
// that follow never get ahead of the writes made before them.
func (obj *Object) streamed(ev *objectEvent) error {
	if err := obj.db.Flush(); err != nil {
		return err
	}
	ev.resp.release(nil)
	obj.db.BeginEvent() // the rest of the event gets a savepoint of its own
	return nil
}

// finish records the event's outcome; the reply goes out at the next commit.
// A failure reaches the caller as a short message with the event's id: the
// details (a trap's stack trace, say) are in the log under that id.
func (ev *objectEvent) finish(err error) {
	if err != nil {
		what := guestio.FailedObjectEvent
		if c, ok := errors.AsType[*constructorError](err); ok {
			what = "constructing " + c.class
		}
		err = &guestio.Failure{What: what, ID: ev.id.String(), Err: err}
	}
	switch ev.kind {
	case fetchEvent:
		if err == nil && !ev.resp.responded() {
			err = errors.New("the object returned without sending a response")
		}
		ev.reply = func(commitErr error) { ev.resp.release(errors.Join(err, commitErr)) }
	case callEvent:
		if ev.answered { // by Chain, as it ended
			ev.reply = func(error) { ev.call.over() }
			break
		}
		ev.reply = func(commitErr error) { ev.call.resolve(errors.Join(err, commitErr)) }
	case alarmEvent:
		// done writes the alarm index, a synchronous commit: not on the
		// storage syncer, which releases every object's held replies.
		done := ev.reply
		ev.reply = func(commitErr error) { go done(errors.Join(err, commitErr)) }
	}
}

// Close stops delivering events and retires every object. A nil Objects
// has nothing to close.
func (o *Objects) Close() error {
	if o == nil {
		return nil
	}
	o.alarms.Close()
	o.mu.Lock()
	o.closed = true
	objs := make([]*Object, 0, len(o.live))
	for _, obj := range o.live {
		objs = append(objs, obj)
	}
	o.mu.Unlock()
	for _, obj := range objs {
		obj.wakeup.Notify()
	}
	o.wg.Wait()
	o.mu.Lock()
	var parked []*parkedDB
	for e := o.parkedLRU.Front(); e != nil; e = e.Next() {
		parked = append(parked, e.Value.(*parkedDB))
	}
	o.parkedLRU.Init()
	clear(o.parked)
	o.openDBs -= len(parked)
	o.mu.Unlock()
	o.closeParked(parked)
	return o.commits.Close()
}

// parkedClosers bounds the databases closeParked closes at once. Closing
// one that was written checkpoints its WAL (fsyncs), so a shutdown with
// thousands parked waits on the disk, one at a time, unless they overlap.
const parkedClosers = 16

// closeParked closes databases taken out of the parked list (and out of
// openDBs), up to parkedClosers at once.
func (o *Objects) closeParked(dbs []*parkedDB) {
	next := make(chan *parkedDB)
	var wg sync.WaitGroup
	for range min(len(dbs), parkedClosers) {
		wg.Go(func() {
			for p := range next {
				o.closeParkedDB(p)
			}
		})
	}
	for _, p := range dbs {
		next <- p
	}
	close(next)
	wg.Wait()
}

// closeParkedDB closes one parked database, logging a failure.
func (o *Objects) closeParkedDB(p *parkedDB) {
	if err := p.db.Close(); err != nil {
		o.logger.Error("closing object storage", "object", p.key, "err", err)
	}
}

// Response is an object's answer to a fetch: held until the event's
// writes are durable, or streamed once they are.
type Response struct {
	in      Request
	header  http.Header
	status  int
	body    bytes.Buffer
	pipe    *io.PipeWriter
	once    sync.Once
	deliver func(*http.Response, error)
	// answered is set once a streamed body has ended cleanly: the caller
	// has the whole answer.
	answered atomic.Bool
}

// untilAnswered is ctx (the caller's), whose cancellation no longer ends
// the event once a streamed body has ended cleanly. A caller that read the
// whole answer may finish before the object's event does (the guest ends
// its body, then returns from its handler); that is not a caller going
// away, and the event finishes under its own time limit. ctx's deadline
// still holds. release frees what this holds once the event ended.
func (r *Response) untilAnswered(ctx context.Context) (detached context.Context, release func()) {
	detached, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if !r.answered.Load() || !errors.Is(ctx.Err(), context.Canceled) {
			cancel(context.Cause(ctx))
		}
	})
	endDeadline := func() {}
	if deadline, ok := ctx.Deadline(); ok {
		detached, endDeadline = context.WithDeadline(detached, deadline)
	}
	return detached, func() { stop(); endDeadline(); cancel(nil) }
}

// NewResponse makes the answer to a fetch of an object; deliver gets the
// response (or why there is none) once.
func NewResponse(deliver func(*http.Response, error)) *Response {
	return &Response{header: http.Header{}, deliver: deliver}
}

// Header is the response's header, as the guest sets it.
func (r *Response) Header() http.Header { return r.header }

// WriteHeader sets the response's status.
func (r *Response) WriteHeader(status int) { r.status = status }

// Flush is a no-op: a streamed body goes straight into the caller's pipe.
func (r *Response) Flush() {}

// Write adds to the body: to the buffer, or to the caller's pipe once the
// response streams.
func (r *Response) Write(p []byte) (int, error) {
	if r.pipe != nil {
		return r.pipe.Write(p)
	}
	return r.body.Write(p)
}

func (r *Response) responded() bool { return r.in != nil && r.in.Responded() }

// deliverOnce hands the caller a response (or error) made elsewhere: the
// answer of the host the event was forwarded to.
func (r *Response) deliverOnce(resp *http.Response, err error) {
	r.once.Do(func() { r.deliver(resp, err) })
}

// release hands the response to the caller: the whole buffered body, or a
// pipe the rest of a streamed body flows through.
func (r *Response) release(err error) {
	r.once.Do(func() {
		if err != nil {
			r.deliver(nil, err)
			return
		}
		resp := &http.Response{StatusCode: r.status, Status: fmt.Sprintf("%d %s", r.status, http.StatusText(r.status)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: r.header.Clone(), ContentLength: -1}
		if r.in != nil && r.in.Streams() {
			pr, pw := io.Pipe()
			r.pipe = pw
			resp.Body = pr
		} else {
			resp.ContentLength = int64(r.body.Len())
			resp.Body = io.NopCloser(bytes.NewReader(r.body.Bytes()))
		}
		r.deliver(resp, nil)
	})
}

// EndBody ends a streamed body: cleanly, or with err for the reader.
func (r *Response) EndBody(err error) {
	if r.pipe != nil {
		r.answered.Store(err == nil)
		r.pipe.CloseWithError(err)
	}
}

// constructorError is a Durable Object whose constructor failed.
type constructorError struct {
	class string
	err   error
}

func (e *constructorError) Error() string {
	return fmt.Sprintf("constructing %s: %v", e.class, e.err)
}

func (e *constructorError) Unwrap() error { return e.err }
