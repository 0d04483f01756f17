package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Instance is one long-running copy of the plugin's module: its main runs on
// a goroutine of its own until it returns, traps or is stopped. Wasm has no
// preemption, so a watchdog stops an instance that computes longer than its
// CPU slice without calling the host.
type Instance struct {
	inst ModuleInstance
	// Data is the value given to Launch, seen by host functions as
	// Caller.Data.
	Data any
	act  *activity
	stop context.CancelCauseFunc
	done chan struct{}
	err  error
}

// activity tells the watchdog whether the guest calls the host.
type activity struct {
	inHost atomic.Int32  // host functions running now
	calls  atomic.Uint64 // host functions started
	// stalled is set by the watchdog once the guest has run for a tick
	// without calling the host.
	stalled atomic.Bool
	// watchdog naps while the guest waits in the host; leave rouses it.
	watchdog *napper
}

// newActivity returns an activity whose watchdog may sleep.
func newActivity() *activity { return &activity{watchdog: newNapper()} }

// enter records a host function starting.
func (a *activity) enter() {
	a.calls.Add(1)
	a.inHost.Add(1)
}

// inHostNow reports whether the guest is in a host function (or waits in
// poll_oneoff).
func (a *activity) inHostNow() bool { return a.inHost.Load() > 0 }

// leave records a host function ending, and wakes the watchdog if it
// sleeps: the guest may compute again.
func (a *activity) leave() {
	if a.inHost.Add(-1) == 0 {
		a.watchdog.rouse()
	}
}

func activityOr(a *activity) *activity {
	if a == nil {
		return newActivity()
	}
	return a
}

// tracked reports host function calls to the instance's watchdog.
type tracked interface{ activity() *activity }

// trackAll wraps funcs so the watchdog sees their calls.
func trackAll(funcs []HostFunc) []HostFunc {
	out := make([]HostFunc, len(funcs))
	for i, f := range funcs {
		out[i] = track(f)
	}
	return out
}

func track(f HostFunc) HostFunc {
	fn := f.Fn
	f.Fn = func(ctx context.Context, c Caller, s []uint64) {
		a := c.(tracked).activity()
		a.enter()
		defer a.leave()
		fn(ctx, c, s)
	}
	return f
}

// Launch instantiates the module and runs its main. data is what host
// functions see as Caller.Data; if it implements Descriptors, those are the
// instance's descriptors. stdout and stderr receive its WASI output.
func (p *Plugin) Launch(ctx context.Context, data any, stdout, stderr io.Writer) (*Instance, error) {
	fds, _ := data.(Descriptors)
	act := newActivity()
	mi, err := p.module.Instantiate(ctx, InstanceConfig{Data: data, Stdout: stdout, Stderr: stderr, Descriptors: fds, activity: act})
	if err != nil {
		return nil, p.launchFailure(err)
	}
	runCtx, stop := context.WithCancelCause(context.Background())
	i := &Instance{inst: mi, Data: data, act: act, stop: stop, done: make(chan struct{})}
	go i.run(runCtx)
	go i.watch(runCtx, p.cfg.CPUSlice)
	return i, nil
}

func (i *Instance) run(ctx context.Context) {
	defer close(i.done)
	_, err := i.inst.Call(ctx, "_start")
	switch {
	case ctx.Err() != nil:
		err = context.Cause(ctx)
	case err == nil || err == exitError{0}:
		err = ErrMainReturned
	}
	i.err = err
	i.stop(err)
	i.inst.Close(context.Background())
}

// stallTick is how often the watchdog looks at an instance.
const stallTick = 50 * time.Millisecond

// idleWatchTicks is how many ticks in a row that find the guest waiting in
// the host make the watchdog sleep until the guest comes back: an idle
// instance does not wake the host up 20 times a second.
const idleWatchTicks = 20

// watch marks the instance stalled while it runs guest code for a tick
// without a host call, and stops it past slice. It sleeps while the guest
// waits in the host.
func (i *Instance) watch(ctx context.Context, slice time.Duration) {
	tick := min(slice/4, stallTick)
	t := time.NewTicker(tick)
	defer t.Stop()
	last, since, waiting := i.act.calls.Load(), time.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Not the tick's own time: a tick delivered late on a loaded
			// host carries when it was due, which would date the last call
			// it observes too early and stop the guest before its slice.
			now := time.Now()
			if i.act.inHostNow() {
				if waiting++; waiting >= idleWatchTicks && i.act.watchdog.nap(ctx.Done(), i.act.inHostNow) {
					t.Reset(tick)
					now, waiting = time.Now(), 0
				}
				last, since = i.act.calls.Load(), now
				i.act.stalled.Store(false)
				continue
			}
			waiting = 0
			if calls := i.act.calls.Load(); calls != last {
				last, since = calls, now
				i.act.stalled.Store(false)
				continue
			}
			i.act.stalled.Store(true)
			if now.Sub(since) > slice {
				i.Stop(fmt.Errorf("%w (%s: [limits] cpu_slice, at most timeout)", ErrCPUSlice, slice))
				return
			}
		}
	}
}

// Stalled reports whether the instance has been computing for a while
// without calling the host: new work is better placed elsewhere.
func (i *Instance) Stalled() bool { return i.act.stalled.Load() }

// Stop ends the instance with cause: a guest that is computing traps at its
// next loop, one waiting in the host is woken up to.
func (i *Instance) Stop(cause error) { i.stop(cause) }

// Done is closed once the instance has ended.
func (i *Instance) Done() <-chan struct{} { return i.done }

// Err is why the instance ended; valid once Done is closed.
func (i *Instance) Err() error { return i.err }

// Memory is the instance's linear memory; use it only from host functions.
func (i *Instance) Memory() Memory { return i.inst.Memory() }

// Stopped reports whether err is an instance's end the host asked for.
func Stopped(err error) bool { return errors.Is(err, ErrStopped) }
