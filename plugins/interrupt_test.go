package plugins

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestInterruptStopsEndlessLoop runs guests stuck in loops (with and without
// calls) under a deadline while the host collects garbage and another
// instance serves a call: both must finish while the guest spins, and the
// guest must stop at its deadline.
func TestInterruptStopsEndlessLoop(t *testing.T) {
	// A GC that waited for the guest would end at the deadline; a loaded
	// machine may slow a GC that did not to a few hundred milliseconds.
	const deadline = time.Second
	wasm, err := os.ReadFile(testutil.BuildReactor(t, "testdata/guests/nop"))
	require.NoError(t, err)
	nop := HostFunc{Name: "nop", Results: []ValueType{I32}, Fn: func(_ context.Context, c Caller, s []uint64) { s[0] = 1 }}
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			e, err := NewEngine(context.Background(), engine, EngineConfig{HostModules: map[string][]HostFunc{"bench": {nop}}})
			require.NoError(t, err)
			defer e.Close(context.Background())
			m, err := e.Compile(context.Background(), ModuleBytes(wasm))
			require.NoError(t, err)
			newInstance := func() ModuleInstance {
				inst, err := m.Instantiate(context.Background(), InstanceConfig{})
				require.NoError(t, err)
				_, err = inst.Call(context.Background(), "_initialize")
				require.NoError(t, err)
				return inst
			}
			other := newInstance()
			defer other.Close(context.Background())
			for _, export := range []string{"spin", "loop_go", "loop_nop"} {
				inst := newInstance()

				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				start := time.Now()
				gcDone := make(chan time.Duration, 1)
				otherDone := make(chan error, 1)
				go func() {
					time.Sleep(50 * time.Millisecond)
					runtime.GC()
					gcDone <- time.Since(start)
					_, err := other.Call(context.Background(), "loop_go", 1000)
					otherDone <- err
				}()
				_, err = inst.Call(ctx, export, 2_000_000_000)
				elapsed := time.Since(start)
				cancel()
				assert.ErrorIs(t, err, ErrDeadline, export)
				assert.Less(t, elapsed, 2*time.Second, "%s: the guest ran past its deadline", export)
				select {
				case gc := <-gcDone:
					assert.Less(t, gc, deadline*3/4, "%s: the GC waited for the guest", export)
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: GC never finished", export)
				}
				assert.NoError(t, <-otherDone, "%s: another instance ran while the guest spun", export)
				inst.Close(context.Background())
			}
		})
	}
}

func TestInstrumentRefusesModuleWithoutMemory(t *testing.T) {
	wasm := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	_, err := instrumentInterrupts(wasm)
	assert.ErrorContains(t, err, "no memory")
}

// TestEpochTickerSleepsWhileIdle: with no guest running, wasmtime's epoch
// ticker goes to sleep (an idle host does not wake up every tick), and a
// guest that then spins is still stopped at its deadline.
func TestEpochTickerSleepsWhileIdle(t *testing.T) {
	inst := nopInstance(t, EngineWasmtime)
	require.Eventually(t, shared.ticker.sleeping.Load, 10*idleEpochTicks*epochTick, epochTick, "the ticker kept ticking with no guest running")

	const deadline = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := inst.Call(ctx, "spin", 2_000_000_000)
	assert.ErrorIs(t, err, ErrDeadline)
	assert.Less(t, time.Since(start), deadline+400*time.Millisecond, "the sleeping ticker did not wake for the guest")
	assert.False(t, shared.ticker.sleeping.Load(), "the ticker sleeps while a guest ran a moment ago")
}
