package plugins

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// commandPipe is descriptor 3 of the descriptors guest: lines the test
// sends, read without blocking.
type commandPipe struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closed bool
	wake   chan struct{}
}

func newCommandPipe() *commandPipe { return &commandPipe{wake: make(chan struct{}, 1)} }

func (p *commandPipe) send(line string) {
	p.mu.Lock()
	p.buf.WriteString(line + "\n")
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *commandPipe) Read(fd uint32, b []byte) (int, Errno) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd != 3 {
		return 0, ErrnoBadf
	}
	if p.buf.Len() == 0 {
		if p.closed {
			return 0, ErrnoSuccess
		}
		return 0, ErrnoAgain
	}
	n, _ := p.buf.Read(b)
	return n, ErrnoSuccess
}

func (p *commandPipe) Write(uint32, []byte) (int, Errno) { return 0, ErrnoBadf }
func (p *commandPipe) Close(uint32) Errno                { return ErrnoSuccess }
func (p *commandPipe) Open(fd uint32) bool               { return fd == 3 }
func (p *commandPipe) Ready(fd uint32, write bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fd != 3 || write || p.buf.Len() > 0 || p.closed
}
func (p *commandPipe) Wait(ctx context.Context, timeout time.Duration) {
	WaitFor(ctx, p.wake, timeout)
}

// lockedBuffer collects a guest's stdout.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loadDescriptors loads the descriptors guest, built at wasm, on engine;
// it is closed when the test ends.
func loadDescriptors(t *testing.T, wasm, engine string, slice time.Duration) *Plugin {
	p, err := Load(context.Background(), Config{Name: "descriptors", Path: wasm, Engine: engine,
		CacheDir: t.TempDir(), CPUSlice: slice})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// waitEnded fails the test unless inst ends within d.
func waitEnded(t *testing.T, inst *Instance, d time.Duration) {
	select {
	case <-inst.Done():
	case <-time.After(d):
		t.Fatalf("the instance did not end within %s", d)
	}
}

// launchDescriptors runs the descriptors guest with a short CPU slice.
func launchDescriptors(t *testing.T, engine string) (*Instance, *commandPipe, *lockedBuffer) {
	p := loadDescriptors(t, testutil.BuildGuest(t, "testdata/guests/descriptors"), engine, 300*time.Millisecond)
	pipe := newCommandPipe()
	inst, out := launchOn(t, p, pipe)
	return inst, pipe, out
}

// launchOn runs an instance of p with fds as its descriptors; it is stopped
// when the test ends. out collects its output.
func launchOn(t *testing.T, p *Plugin, fds Descriptors) (inst *Instance, out *lockedBuffer) {
	out = &lockedBuffer{}
	inst, err := p.Launch(context.Background(), fds, out, out)
	require.NoError(t, err)
	t.Cleanup(func() {
		inst.Stop(ErrStopped)
		<-inst.Done()
	})
	return inst, out
}

// TestGoroutinesWaitOnDescriptors runs a Go guest whose goroutines wait on
// a host descriptor and on time.Sleep at once, on both engines.
func TestGoroutinesWaitOnDescriptors(t *testing.T) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			inst, pipe, out := launchDescriptors(t, engine)
			pipe.send("sleep")
			pipe.send("echo first")
			require.Eventually(t, func() bool { return bytes.Contains([]byte(out.String()), []byte("slept")) }, 10*time.Second, 5*time.Millisecond)
			// The reader answered before the sleeper woke: neither blocked the other.
			assert.Equal(t, "first\nslept\n", out.String())
			time.Sleep(50 * time.Millisecond) // idle: parked in poll_oneoff
			pipe.send("echo second")
			require.Eventually(t, func() bool { return out.String() == "first\nslept\nsecond\n" }, 10*time.Second, 5*time.Millisecond)
			select {
			case <-inst.Done():
				t.Fatalf("instance ended: %v", inst.Err())
			default:
			}
		})
	}
}

// TestSpinningGuestIsStopped: a guest that computes without calling the
// host for longer than its CPU slice is stopped with ErrCPUSlice.
func TestSpinningGuestIsStopped(t *testing.T) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			inst, pipe, _ := launchDescriptors(t, engine)
			pipe.send("spin")
			waitEnded(t, inst, 20*time.Second)
			assert.ErrorIs(t, inst.Err(), ErrCPUSlice)
		})
	}
}

// TestWatchdogSleepsWhileGuestWaits: the watchdog of an instance waiting
// in the host goes to sleep (an idle host does not wake up every tick),
// and a guest that then spins is still stopped at its CPU slice.
func TestWatchdogSleepsWhileGuestWaits(t *testing.T) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			inst, pipe, _ := launchDescriptors(t, engine)
			require.Eventually(t, inst.act.watchdog.sleeping.Load, 20*idleWatchTicks*stallTick, 5*time.Millisecond,
				"the watchdog kept ticking while the guest waited")
			start := time.Now()
			pipe.send("spin")
			waitEnded(t, inst, 20*time.Second)
			assert.ErrorIs(t, inst.Err(), ErrCPUSlice)
			assert.Less(t, time.Since(start), 5*time.Second, "the sleeping watchdog did not wake for the guest")
		})
	}
}

// TestMainReturning: a guest whose main returns ends with ErrMainReturned,
// which tells the author to call sdk.Serve.
func TestMainReturning(t *testing.T) {
	inst, pipe, _ := launchDescriptors(t, EngineWazero)
	pipe.send("exit")
	<-inst.Done()
	assert.ErrorIs(t, inst.Err(), ErrMainReturned)
	assert.Contains(t, inst.Err().Error(), "sdk.Serve()")
}

// TestPollOneoffRefusesHugeSubscriptionCounts: a subscription count whose
// byte size overflows 32 bits, or more subscriptions than Go's netpoller
// ever asks for, is refused without a host panic or a huge allocation; a
// valid poll still works after.
func TestPollOneoffRefusesHugeSubscriptionCounts(t *testing.T) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			inst, pipe, out := launchDescriptors(t, engine)
			// 1<<31 subscriptions and their events take 0 bytes in 32-bit
			// arithmetic (a 86 GB table on the host); 1<<20 is more than Go
			// ever asks for.
			want := fmt.Sprintf("poll 2147483648 errno %d\npoll 1048576 errno %d\npoll 1 errno 0\n", ErrnoInval, ErrnoInval)
			for _, n := range []string{"2147483648", "1048576", "1"} {
				pipe.send("poll " + n)
			}
			assert.Eventually(t, func() bool { return out.String() == want }, 10*time.Second, 5*time.Millisecond)
			assert.Equal(t, want, out.String())
			select {
			case <-inst.Done():
				t.Fatalf("instance ended: %v", inst.Err())
			default:
			}
		})
	}
}

// TestPollOneoffWaitsForAbsoluteClockTimes: a clock subscription with an
// absolute time waits until the guest's clock (realtime or monotonic, as
// clock_time_get gives it) reads that time, on both engines.
func TestPollOneoffWaitsForAbsoluteClockTimes(t *testing.T) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			_, pipe, out := launchDescriptors(t, engine)
			for i, clock := range []string{"0", "1"} {
				pipe.send("abs " + clock + " 400")
				var got string
				require.Eventually(t, func() bool {
					lines := strings.Split(strings.TrimSpace(out.String()), "\n")
					got = lines[len(lines)-1]
					return len(lines) == i+1 && got != ""
				}, 10*time.Second, 5*time.Millisecond)
				var waited int
				_, err := fmt.Sscanf(got, "abs "+clock+" waited %dms", &waited)
				require.NoError(t, err, got)
				assert.GreaterOrEqual(t, waited, 395, "clock %s: woke before its time", clock)
				assert.Less(t, waited, 2000, "clock %s: overslept", clock)
			}
		})
	}
}

// TestWaitingInstancesHoldNoThreads: an instance waiting in poll_oneoff
// keeps no OS thread of its own, on both engines. (On wasmtime a wait inside
// a host function would hold one: Go locks a goroutine called back from C
// to its thread.)
func TestWaitingInstancesHoldNoThreads(t *testing.T) {
	const instances = 40
	wasm := testutil.BuildGuest(t, "testdata/guests/descriptors")
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			p := loadDescriptors(t, wasm, engine, 0)
			before := testutil.SelfNumber(t, "status", "Threads")
			for i := range instances {
				pipe := newCommandPipe()
				_, out := launchOn(t, p, pipe)
				pipe.send(fmt.Sprintf("echo %d", i))
				require.Eventually(t, func() bool { return out.String() == fmt.Sprintf("%d\n", i) }, 10*time.Second, time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // all of them parked in poll_oneoff
			assert.Less(t, testutil.SelfNumber(t, "status", "Threads")-before, instances/4, "threads added by %d waiting instances", instances)
		})
	}
}

// panickingPipe is a commandPipe whose readiness check, or its wait when
// inWait is set, panics once armed.
type panickingPipe struct {
	*commandPipe
	inWait bool
	armed  atomic.Bool
}

func (p *panickingPipe) Ready(fd uint32, write bool) bool {
	if p.armed.Load() && !p.inWait {
		panic("readiness check panicked on purpose")
	}
	return p.commandPipe.Ready(fd, write)
}

func (p *panickingPipe) Wait(ctx context.Context, timeout time.Duration) {
	if p.armed.Load() && p.inWait {
		panic("wait panicked on purpose")
	}
	p.commandPipe.Wait(ctx, timeout)
}

// TestPanicWhilePollingEndsTheInstance: a host panic in poll_oneoff, in
// its readiness check or its wait while the guest waits, ends the instance
// with ErrTrap naming the panic, not the host process, on both engines.
func TestPanicWhilePollingEndsTheInstance(t *testing.T) {
	wasm := testutil.BuildGuest(t, "testdata/guests/descriptors")
	for _, engine := range Engines {
		for _, tc := range []struct {
			name   string
			inWait bool
			panic  string
		}{
			{"ready", false, "readiness check panicked on purpose"},
			{"wait", true, "wait panicked on purpose"},
		} {
			t.Run(engine+"/"+tc.name, func(t *testing.T) {
				p := loadDescriptors(t, wasm, engine, 0)
				pipe := &panickingPipe{commandPipe: newCommandPipe(), inWait: tc.inWait}
				inst, out := launchOn(t, p, pipe)
				pipe.send("echo ready")
				require.Eventually(t, func() bool { return out.String() == "ready\n" }, 10*time.Second, time.Millisecond)
				time.Sleep(50 * time.Millisecond) // parked in poll_oneoff
				pipe.armed.Store(true)
				pipe.send("echo never")
				waitEnded(t, inst, 10*time.Second)
				assert.ErrorIs(t, inst.Err(), ErrTrap)
				assert.ErrorContains(t, inst.Err(), tc.panic)
			})
		}
	}
}
