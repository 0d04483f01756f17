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

// recursiveModule is a module, as a C or AssemblyScript compiler may emit
// one, whose export "fib" recurses without a single loop:
//
//	(func $fib (param i32) (result i32)
//	  (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
//	    (then (local.get 0))
//	    (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
//	                   (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
func recursiveModule() []byte {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	fib := []byte{0x00, // no locals
		0x20, 0x00, 0x41, 0x02, 0x49, // local.get 0; i32.const 2; i32.lt_u
		0x04, 0x7f, // if (result i32)
		0x20, 0x00, // local.get 0
		0x05,                                     // else
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, // fib(n-1)
		0x20, 0x00, 0x41, 0x02, 0x6b, 0x10, 0x00, // fib(n-2)
		0x6a,       // i32.add
		0x0b, 0x0b, // end if; end
	}
	wasm := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	wasm = append(wasm, section(1, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f)...) // (i32) -> i32
	wasm = append(wasm, section(3, 0x01, 0x00)...)
	wasm = append(wasm, section(5, 0x01, 0x00, 0x01)...) // memory of one page
	wasm = append(wasm, section(7, 0x02, 0x03, 'f', 'i', 'b', 0x00, 0x00, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00)...)
	return append(wasm, section(10, append([]byte{0x01, byte(len(fib))}, fib...)...)...)
}

// TestInterruptStopsRecursionWithoutLoops: a guest that computes by
// recursion alone (no loop anywhere, as a naive fib in C at -O0) is
// stopped at its deadline on both engines, and the host's garbage
// collector does not wait for it.
func TestInterruptStopsRecursionWithoutLoops(t *testing.T) {
	const deadline = time.Second
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) {
			e, err := NewEngine(context.Background(), engine, EngineConfig{})
			require.NoError(t, err)
			defer e.Close(context.Background())
			m, err := e.Compile(context.Background(), ModuleBytes(recursiveModule()))
			require.NoError(t, err)
			newInstance := func() ModuleInstance {
				inst, err := m.Instantiate(context.Background(), InstanceConfig{})
				require.NoError(t, err)
				t.Cleanup(func() { inst.Close(context.Background()) })
				return inst
			}
			v, err := newInstance().Call(context.Background(), "fib", 20)
			require.NoError(t, err)
			assert.Equal(t, uint64(6765), v, "the module computes")

			// First without a collection: a guest never stopped fails the
			// test here, where one that froze the collector would freeze the
			// test too.
			stopped := func(gc bool) {
				inst := newInstance() // a stopped instance stays stopped
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				gcDone := make(chan time.Duration, 1)
				if gc {
					go func() {
						time.Sleep(50 * time.Millisecond)
						runtime.GC()
						gcDone <- time.Since(start)
					}()
				}
				callDone := make(chan error, 1)
				go func() {
					_, err := inst.Call(ctx, "fib", 60) // 2^41 calls: hours
					callDone <- err
				}()
				select {
				case err := <-callDone:
					assert.ErrorIs(t, err, ErrDeadline)
					assert.Less(t, time.Since(start), 2*time.Second, "the guest ran past its deadline")
				case <-time.After(5 * time.Second):
					t.Fatal("the recursing guest was not stopped 4s past its deadline")
				}
				if gc {
					select {
					case gc := <-gcDone:
						assert.Less(t, gc, deadline*3/4, "the GC waited for the guest")
					case <-time.After(5 * time.Second):
						t.Fatal("GC never finished")
					}
				}
			}
			stopped(false)
			stopped(true)
		})
	}
}
