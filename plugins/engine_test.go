package plugins

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bytecodealliance/wasmtime-go/v39"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// engineModule is a hand-written guest exercising what both engines must do
// alike: traps with function names, WASI output, memory growth and host
// functions that read guest memory.
const engineModule = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "test" "read" (func $read (param i32 i32) (result i32)))
  (import "test" "boom" (func $boom))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello out")
  (data (i32.const 32) "hello err")
  ;; iovecs at 0 (stdout) and 8 (stderr)
  (data (i32.const 0) "\10\00\00\00\09\00\00\00\20\00\00\00\09\00\00\00")
  (func $inner_function unreachable)
  (func $outer_function (export "trap") call $inner_function)
  (func (export "write") (param $fd i32) (param $iov i32) (result i32)
    (call $fd_write (local.get $fd) (local.get $iov) (i32.const 1) (i32.const 64)))
  (func (export "grow") (param $pages i32) (result i32) (memory.grow (local.get $pages)))
  (func (export "read") (param $ptr i32) (param $len i32) (result i32) (call $read (local.get $ptr) (local.get $len)))
  (func (export "boom") (call $boom))
  (func (export "spin") (loop $l (br $l)))
  (func $deep (export "deep") (param $n i32)
    (if (local.get $n) (then (call $deep (i32.sub (local.get $n) (i32.const 1)))) (else unreachable)))
  (func $depth (export "depth") (param $n i32) (result i32)
    (if (result i32) (local.get $n)
      (then (i32.add (call $depth (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))
      (else (i32.const 0))))
)`

func forEachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, engine := range Engines {
		t.Run(engine, func(t *testing.T) { test(t, engine) })
	}
}

func compileEngineModule(t testing.TB, engine string, memLimit uint64) CompiledModule {
	wasm, err := wasmtime.Wat2Wasm(engineModule)
	require.NoError(t, err)
	read := HostFunc{Name: "read", Params: []ValueType{I32, I32}, Results: []ValueType{I32},
		Fn: func(_ context.Context, c Caller, s []uint64) {
			b, ok := c.Memory().Read(uint32(s[0]), uint32(s[1]))
			if !ok {
				s[0] = 1 // out of bounds is a status, never a host panic
				return
			}
			s[0] = uint64(bytes.Count(b, []byte("l")) + 100)
		}}
	boom := HostFunc{Name: "boom", Fn: func(context.Context, Caller, []uint64) { panic("host bug") }}
	e, err := NewEngine(context.Background(), engine, EngineConfig{
		MemoryLimitBytes: memLimit, HostModules: map[string][]HostFunc{"test": {read, boom}}})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close(context.Background()) })
	m, err := e.Compile(context.Background(), ModuleBytes(wasm))
	require.NoError(t, err)
	return m
}

func instantiate(t testing.TB, m CompiledModule, cfg InstanceConfig) ModuleInstance {
	inst, err := m.Instantiate(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { inst.Close(context.Background()) })
	return inst
}

func TestEnginesBehaveAlike(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := compileEngineModule(t, engine, 4<<16)
		ctx := context.Background()

		t.Run("trap names the guest functions", func(t *testing.T) {
			_, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "trap")
			assert.ErrorIs(t, err, ErrTrap)
			assert.ErrorContains(t, err, "unreachable")
			assert.ErrorContains(t, err, "inner_function")
			assert.ErrorContains(t, err, "outer_function")
		})
		t.Run("a trap's stack trace is cut after its innermost frames", func(t *testing.T) {
			_, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "deep", 10_000)
			require.ErrorIs(t, err, ErrTrap)
			assert.ErrorContains(t, err, "unreachable")
			assert.ErrorContains(t, err, "deep")
			assert.LessOrEqual(t, strings.Count(err.Error(), "\n"), maxTraceFrames+2, "lines of %q", err)
		})
		t.Run("a guest recurses 200,000 calls deep", func(t *testing.T) {
			depth, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "depth", 200_000)
			require.NoError(t, err)
			assert.Equal(t, uint64(200_000), depth)
		})
		t.Run("WASI output goes to the instance's writers", func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			inst := instantiate(t, m, InstanceConfig{Stdout: &stdout, Stderr: &stderr})
			for fd, iov := range map[uint64]uint64{1: 0, 2: 8} {
				errno, err := inst.Call(ctx, "write", fd, iov)
				require.NoError(t, err)
				assert.Equal(t, uint64(0), errno)
			}
			assert.Equal(t, "hello out", stdout.String())
			assert.Equal(t, "hello err", stderr.String())
			n, _ := inst.Memory().ReadUint32(64)
			assert.Equal(t, uint32(9), n, "bytes written")
			errno, err := inst.Call(ctx, "write", 1, 65530)
			require.NoError(t, err)
			assert.Equal(t, uint64(21), errno, "an iovec outside memory is EFAULT")
		})
		t.Run("memory grows up to the limit", func(t *testing.T) {
			inst := instantiate(t, m, InstanceConfig{})
			old, err := inst.Call(ctx, "grow", 3)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), old)
			failed, err := inst.Call(ctx, "grow", 1)
			require.NoError(t, err)
			assert.Equal(t, int32(-1), int32(failed))
			assert.Equal(t, uint64(4<<16), inst.Memory().Size())
		})
		t.Run("a memory of 4 GiB has 4 GiB", func(t *testing.T) {
			// 65,536 pages are one byte past what a uint32 holds: the size
			// must not wrap to 0, and the last byte is readable. The pages
			// are reserved, never touched.
			inst := instantiate(t, compileEngineModule(t, engine, 4<<30), InstanceConfig{})
			old, err := inst.Call(ctx, "grow", maxPages-1)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), old)
			assert.Equal(t, uint64(4<<30), inst.Memory().Size())
			r, err := inst.Call(ctx, "read", 4<<30-1, 1)
			require.NoError(t, err)
			assert.Equal(t, uint64(100), r, "the last byte is in bounds")
			r, err = inst.Call(ctx, "read", 4<<30-1, 2)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), r, "a range past 4 GiB is out of bounds")
			mem := inst.Memory()
			require.True(t, mem.WriteUint32(4<<30-4, 0x6c6c6c6c), "llll in the last 4 bytes")
			v, ok := mem.ReadUint32(4<<30 - 4)
			assert.True(t, ok)
			assert.Equal(t, uint32(0x6c6c6c6c), v)
			_, ok = mem.ReadUint32(4<<30 - 3)
			assert.False(t, ok, "a word past 4 GiB is out of bounds")
			r, err = inst.Call(ctx, "read", 4<<30-4, 4)
			require.NoError(t, err)
			assert.Equal(t, uint64(104), r, "the host function read the last 4 bytes")
		})
		t.Run("host functions see guest memory and bounds", func(t *testing.T) {
			inst := instantiate(t, m, InstanceConfig{})
			r, err := inst.Call(ctx, "read", 16, 9)
			require.NoError(t, err)
			assert.Equal(t, uint64(102), r, `"hello out" has two l`)
			r, err = inst.Call(ctx, "read", 65530, 100)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), r)
			r, err = inst.Call(ctx, "read", 0xffffffff, 0xffffffff)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), r)
		})
		t.Run("host function panic is a trap", func(t *testing.T) {
			_, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "boom")
			assert.ErrorIs(t, err, ErrTrap)
			assert.ErrorContains(t, err, "host bug")
		})
		t.Run("canceled call stops the guest", func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(50*time.Millisecond, cancel)
			_, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "spin")
			assert.ErrorIs(t, err, ErrCanceled)
		})
		t.Run("unknown export", func(t *testing.T) {
			_, err := instantiate(t, m, InstanceConfig{}).Call(ctx, "nope")
			assert.ErrorContains(t, err, `module does not export "nope"`)
		})
	})
}
