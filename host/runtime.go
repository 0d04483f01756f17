package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// instanceSet keeps a plugin's long-running instances: a few per host (one per
// core by default), each serving many concurrent Worker requests and hosting
// many live Durable Objects. An instance that ends (a trap, memory
// exhaustion, a CPU slice overrun) is replaced; one whose memory grew past
// the drain threshold takes no new work and is replaced once idle.
type instanceSet struct {
	plugin  *plugins.Plugin
	logs    *guestLogs
	logger  *slog.Logger
	want    int
	drainAt uint32
	timeout time.Duration // to initialise (serve) and to serve one event
	overdue error         // the cause of an event's end at its timeout

	mu        sync.Mutex
	instances []*instance
	changed   chan struct{} // closed and replaced when instances change
	closed    bool
	retired   bool // replaced by new code: an instance that ends is not replaced
	refilling bool
	// unserved counts the instances in a row that ended before any event
	// ended on them: each replacement waits longer (retryPause).
	unserved int
	// lastEnd is why the last instance ended, which a pick that finds
	// none up tells.
	lastEnd error
	started uint64
	ended   uint64
	wg      sync.WaitGroup
}

// minInitTimeout is the least time an instance's main gets to call
// sdk.Serve, whatever the event timeout: a Go runtime's start-up is not an
// event, and on a loaded host it can take longer than a short timeout.
const minInitTimeout = 10 * time.Second

func newInstanceSet(p *plugins.Plugin, logs *guestLogs, logger *slog.Logger, want int, drainAt uint32, timeout time.Duration) *instanceSet {
	return &instanceSet{plugin: p, logs: logs, logger: logger, want: max(want, 1), drainAt: drainAt,
		timeout: timeout, overdue: fmt.Errorf("the event did not end within %s", timeout), changed: make(chan struct{})}
}

// start launches the instances at once (each runs its Go runtime's
// start-up); an error (a module that traps or never calls serve) is
// returned, and the instances that did start are in the set for close.
// With early, start launches one instance alone and returns once it is
// up, so the set serves while the others start (a failed one is logged and
// replaced); its failure is returned.
func (rt *instanceSet) start(ctx context.Context, early bool) error {
	if early {
		in, err := rt.launch(ctx)
		if err != nil {
			return err
		}
		rt.add(in)
		for range rt.want - 1 {
			rt.wg.Add(1) // close waits for launches under way
			go func() {
				defer rt.wg.Done()
				in, err := rt.launch(ctx)
				if err == nil {
					rt.add(in)
					return
				}
				rt.mu.Lock()
				closed := rt.closed || rt.retired
				rt.mu.Unlock()
				if !closed && ctx.Err() == nil {
					rt.logger.Error("starting a plugin instance failed", "plugin", rt.plugin.Name(), "err", err)
					rt.replace()
				}
			}()
		}
		return nil
	}
	errs := make([]error, rt.want)
	var wg sync.WaitGroup
	for i := range rt.want {
		wg.Go(func() {
			in, err := rt.launch(ctx)
			if err == nil {
				rt.add(in)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return cmp.Or(errs...)
}

// launch starts one instance and waits until its main called serve.
func (rt *instanceSet) launch(ctx context.Context) (*instance, error) {
	in := newInstance(rt.logs)
	in.drainAt = rt.drainAt
	run, err := rt.plugin.Launch(ctx, in,
		&lineWriter{in: in, logs: rt.logs, level: slog.LevelInfo, name: "stdout"},
		&lineWriter{in: in, logs: rt.logs, level: slog.LevelWarn, name: "stderr"})
	if err != nil {
		return nil, err
	}
	in.run = run
	limit := max(rt.timeout, minInitTimeout)
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-in.ready:
		return in, nil
	case <-run.Done():
		return nil, fmt.Errorf("initialise: %w", run.Err())
	case <-t.C:
		err = fmt.Errorf("initialise: the plugin's main did not call sdk.Serve() within %s", limit)
	case <-ctx.Done():
		err = fmt.Errorf("initialise: %w", context.Cause(ctx))
	}
	run.Stop(fmt.Errorf("%w: %w", plugins.ErrStopped, err))
	<-run.Done()
	return nil, err
}

// add puts a launched instance in service under supervision; one launched
// while the set closed is stopped at once (close waits for it).
func (rt *instanceSet) add(in *instance) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	in.upAt = time.Now() // before supervise reads it
	rt.instances = append(rt.instances, in)
	rt.started++
	rt.notifyLocked()
	rt.wg.Add(1)
	go rt.supervise(in)
	if rt.closed {
		in.run.Stop(fmt.Errorf("%w: the host is shutting down", plugins.ErrStopped))
	}
}

func (rt *instanceSet) notifyLocked() {
	close(rt.changed)
	rt.changed = make(chan struct{})
}

// supervise waits for the instance to end, fails what it was serving and
// replaces it.
func (rt *instanceSet) supervise(in *instance) {
	defer rt.wg.Done()
	<-in.run.Done()
	err := in.run.Err()
	if msg, ok := in.lastPanic.Load().(string); ok {
		if strings.HasPrefix(msg, "fatal error: out of memory") {
			msg += ": the guest reached its memory limit, [limits] memory_mib in wharf.toml"
		}
		err = fmt.Errorf("%w (%s)", err, msg)
	}
	in.mu.Lock()
	in.dead.Store(true)
	var failed []string
	ended := func(g *guest) {
		failed = append(failed, g.id.String())
		if !g.ended {
			g.lose(fmt.Errorf("the instance ended: %w", err))
		}
	}
	for _, d := range in.queue {
		if g := d.scope; g != nil && !g.ended { // never started: its caller delivers it again
			g.lose(guestio.ErrNotStarted)
		}
	}
	in.queue = nil
	in.table.Drain(func(kind abi.Kind, obj any) {
		if g, ok := obj.(*guest); ok && kind == abi.KindEvent {
			ended(g)
			return
		}
		releaseObject(obj, err)
	})
	in.mu.Unlock()
	rt.mu.Lock()
	for i, x := range rt.instances {
		if x == in {
			rt.instances = append(rt.instances[:i], rt.instances[i+1:]...)
			break
		}
	}
	closed := rt.closed || rt.retired
	rt.ended++
	rt.lastEnd = err
	rt.notifyLocked()
	var pause time.Duration
	if in.served.Load() || len(failed) > 0 || time.Since(in.upAt) >= unservedWithin {
		rt.unserved = 0
	} else {
		rt.unserved++
		pause = retryPause(rt.unserved)
	}
	inARow := rt.unserved
	rt.mu.Unlock()
	if closed || plugins.Stopped(err) {
		return
	}
	if pause == 0 {
		rt.logger.Error("plugin instance ended; replacing it", "plugin", rt.plugin.Name(), "err", err, "events_failed", failed)
	} else {
		rt.logger.Error("plugin instance ended before it served anything; replacing it after a pause", "plugin", rt.plugin.Name(),
			"err", err, "pause", pause, "in_a_row", inARow)
		if !rt.sleepInService(pause) {
			return
		}
	}
	rt.replace()
}

// unservedWithin is how soon after it went into service an instance
// that ended unserved counts as failing on its own: one that ran longer
// (idle, then ended) resets the pauses.
var unservedWithin = time.Minute

// retryPause is the pause before the nth try in a row after a failure:
// 100 ms, doubling up to 10 s. An instance that ended before it served
// anything fails on its own, not on what it was sent (its CPU slice is
// too short for its Go runtime, say), so its replacement waits too, where
// one that ended on an event is replaced at once.
func retryPause(n int) time.Duration {
	return min(100*time.Millisecond<<min(n-1, 7), 10*time.Second)
}

// sleepInService waits for d, or until the set is closed or retired; it
// reports whether the set is still in service.
func (rt *instanceSet) sleepInService(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		rt.mu.Lock()
		out, changed := rt.closed || rt.retired, rt.changed
		rt.mu.Unlock()
		if out {
			return false
		}
		select {
		case <-t.C:
			return true
		case <-changed:
		}
	}
}

// replace launches a new instance, retrying with a growing pause while the
// module keeps failing.
func (rt *instanceSet) replace() {
	for failures := 1; ; failures++ {
		rt.mu.Lock()
		closed := rt.closed
		rt.mu.Unlock()
		if closed {
			return
		}
		in, err := rt.launch(context.Background())
		if err == nil {
			rt.add(in)
			return
		}
		rt.logger.Error("starting a plugin instance failed", "plugin", rt.plugin.Name(), "err", err)
		if !rt.sleepInService(retryPause(failures)) {
			return
		}
	}
}

// stalledPenalty ranks a stalled instance after every one that is not.
const stalledPenalty = 1 << 62

// loadRank orders instances for new work: lower ranks first.
type loadRank func(events, objects int) int64

// requestRank ranks instances for a Worker request by events in flight
// (idle objects cost no CPU); among equals the one with the most live
// objects goes first, as the objects a request calls are most likely there,
// and a call to an object on the caller's own instance crosses no thread.
func requestRank(events, objects int) int64 { return int64(events)<<32 - int64(objects) }

// placeRank ranks instances for a new object by events and live objects
// together, which spreads objects evenly.
func placeRank(events, objects int) int64 { return int64(events + objects) }

// pick returns the instance of lowest rank for new work, waiting while none
// is up until ctx ends.
func (rt *instanceSet) pick(ctx context.Context, rank loadRank) (*instance, error) {
	for {
		rt.mu.Lock()
		if rt.retired {
			rt.mu.Unlock()
			return nil, errRetired
		}
		if rt.closed {
			rt.mu.Unlock()
			return nil, plugins.ErrPoolClosed
		}
		var best *instance
		var bestLoad int64
		for _, in := range rt.instances {
			events, objects := in.events.Load(), in.objects.Load()
			load, ok := rank(int(events), int(objects)), in.alive()
			if in.run.Stalled() {
				load += stalledPenalty // a guest computing without yielding serves nothing meanwhile
			}
			if in.draining.Load() && events == 0 && objects == 0 {
				rt.stopDrained(in)
			}
			if ok && (best == nil || load < bestLoad) {
				best, bestLoad = in, load
			}
		}
		draining := len(rt.instances) - rt.countLive()
		changed, lastEnd := rt.changed, rt.lastEnd
		rt.mu.Unlock()
		if draining > 0 {
			rt.refill()
		}
		if best != nil {
			return best, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if lastEnd != nil {
				return nil, fmt.Errorf("no plugin instance is up (the last one ended: %v): %w", lastEnd, context.Cause(ctx))
			}
			return nil, fmt.Errorf("no plugin instance is up: %w", context.Cause(ctx))
		}
	}
}

// stopDrained stops a draining instance that has no event and no object
// left, unless an import holds it: the next pick looks again.
func (rt *instanceSet) stopDrained(in *instance) {
	if !in.mu.TryLock() {
		return
	}
	defer in.mu.Unlock()
	if in.events.Load() == 0 && in.objects.Load() == 0 { // under mu, no event is posted meanwhile
		in.run.Stop(fmt.Errorf("%w: drained (its memory grew past %d bytes)", plugins.ErrStopped, rt.drainAt))
	}
}

// countLive counts instances taking new work (under rt.mu).
func (rt *instanceSet) countLive() int {
	n := 0
	for _, in := range rt.instances {
		if in.alive() {
			n++
		}
	}
	return n
}

// refill launches replacements for draining instances, one at a time.
func (rt *instanceSet) refill() {
	rt.mu.Lock()
	if rt.closed || rt.countLive() >= rt.want || rt.refilling {
		rt.mu.Unlock()
		return
	}
	rt.refilling = true
	rt.wg.Add(1) // close waits for the replacement too
	rt.mu.Unlock()
	go func() {
		defer rt.wg.Done()
		rt.replace()
		rt.mu.Lock()
		rt.refilling = false
		rt.mu.Unlock()
	}()
}

// InstanceStats is a snapshot of a plugin's instances.
type InstanceStats struct {
	// Live instances are running; Started and Ended count them since
	// the host started (replacements included).
	Live           int
	Started, Ended uint64
	// Events are being served now; Objects are live on the instances.
	Events, Objects int
	// MemoryBytes is the instances' linear memory together, as of the end
	// of their last events.
	MemoryBytes uint64
}

func (rt *instanceSet) stats() InstanceStats {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st := InstanceStats{Live: len(rt.instances), Started: rt.started, Ended: rt.ended}
	for _, in := range rt.instances {
		st.Events += int(in.events.Load())
		st.Objects += int(in.objects.Load())
		st.MemoryBytes += in.memory.Load()
	}
	return st
}

// first is an instance that is up, for checks after start.
func (rt *instanceSet) first() *instance {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.instances[0]
}

// close stops every instance, waits for them and releases the plugin; the
// set owns its plugin. Only the first call does anything.
func (rt *instanceSet) close() error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	rt.notifyLocked() // wakes picks and paused replacements
	// A copy: supervise removes each stopped instance from rt.instances,
	// in place, while this loop is still stopping the others.
	instances := slices.Clone(rt.instances)
	rt.mu.Unlock()
	for _, in := range instances {
		in.run.Stop(fmt.Errorf("%w: the host is shutting down", plugins.ErrStopped))
	}
	rt.wg.Wait()
	return rt.plugin.Close(context.Background())
}

// deliver posts the event g to in and waits for it (see await).
func (in *instance) deliver(ctx context.Context, g *guest, kind abi.EventKind, arg any) error {
	if err := in.post(&delivery{kind: kind, scope: g, obj: g.object, arg: arg}); err != nil {
		return err
	}
	return in.await(ctx, g)
}

// await waits until the guest ends the posted event g, the instance ends
// or ctx (see eventContext) ends; then the event is abandoned (its handles
// released, the guest's later calls for it refused) and the error says
// whether the time ran out or the caller went away.
func (in *instance) await(ctx context.Context, g *guest) error {
	select {
	case <-g.done:
	case <-ctx.Done():
		kind := plugins.ErrCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = plugins.ErrDeadline
		}
		in.abandon(g, fmt.Errorf("%w: %w", kind, context.Cause(ctx)))
		<-g.done
	}
	err := g.status
	if err != nil && !errors.Is(err, plugins.ErrDeadline) && pastDeadline(ctx) {
		// Stopped as its time ran out, by whichever came first: the CPU
		// slice (which the deadline caps) ends at the same moment.
		err = fmt.Errorf("%w: %w", plugins.ErrDeadline, err)
	}
	return err
}

// pastDeadline reports whether ctx's deadline has passed by the clock; on
// a loaded host the timer that ends ctx may not have run yet.
func pastDeadline(ctx context.Context) bool {
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// eventContext bounds an event, however often it is delivered, by the
// plugin's time limit.
func (rt *instanceSet) eventContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, rt.timeout, rt.overdue)
}

// alive reports whether the instance still runs and takes work: its
// objects stay on it. An object on a draining instance (grown too large, or
// running replaced code) moves at its next event.
func (in *instance) alive() bool {
	return !in.dead.Load() && !in.draining.Load()
}

// currentSet holds the instance set new events go to; Reload swaps it.
type currentSet struct{ atomic.Pointer[instanceSet] }

// pick returns the instance of lowest rank of the current set, moving on
// to the set that replaced one retired under it.
func (c *currentSet) pick(ctx context.Context, rank loadRank) (*instance, error) {
	for {
		in, err := c.Load().pick(ctx, rank)
		if !errors.Is(err, errRetired) {
			return in, err
		}
	}
}

// errRetired is a pick from a set that new code replaced: the current set
// takes the work.
var errRetired = errors.New("the instance set was replaced")

// retire takes the set out of service: its instances get no new work, its
// objects move at their next event, and it closes (with its plugin) once
// its events have ended, or after its event time limit at most.
func (rt *instanceSet) retire() {
	rt.mu.Lock()
	rt.retired = true
	for _, in := range rt.instances {
		in.draining.Store(true)
	}
	rt.notifyLocked() // a pick waiting here moves to the new set
	rt.mu.Unlock()
	for deadline := time.Now().Add(rt.timeout); rt.stats().Events > 0 && time.Now().Before(deadline); {
		time.Sleep(retirePoll)
	}
	rt.close()
}

// retirePoll is how often a retiring set looks whether its events ended.
const retirePoll = 20 * time.Millisecond
