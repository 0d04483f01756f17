package plugins

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tetratelabs/wazero"

	"github.com/wharfhq/wharf/internal/leb128"
	"github.com/wharfhq/wharf/internal/testutil"
)

// moduleWithData is a module of one memory (pages of 64 KiB), an optional
// data count section and a data section of the raw segments given.
func moduleWithData(pages uint32, dataCount bool, segments ...[]byte) []byte {
	wasm := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	wasm = appendSectionBytes(wasm, 5, leb128.AppendU32([]byte{1, 0}, pages))
	if dataCount {
		wasm = appendSectionBytes(wasm, 12, leb128.AppendU32(nil, uint32(len(segments))))
	}
	body := leb128.AppendU32(nil, uint32(len(segments)))
	for _, s := range segments {
		body = append(body, s...)
	}
	return appendSectionBytes(wasm, 11, body)
}

// active is an active segment of memory 0 at offset, as encoded.
func active(offset int32, init string) []byte {
	return encodeDataSection([]dataSegment{{uint32(offset), []byte(init)}})[1:]
}

// memoryAfterInstantiation instantiates wasm on wazero and returns its
// memory.
func memoryAfterInstantiation(t *testing.T, wasm []byte) []byte {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, wasm)
	require.NoError(t, err)
	mem := mod.Memory()
	b, ok := mem.Read(0, uint32(mem.Size()))
	require.True(t, ok)
	return append([]byte(nil), b...)
}

func TestMergeDataSegmentsKeepsTheMemory(t *testing.T) {
	wasm := moduleWithData(2, false,
		active(8300, "far"),  // out of order; 92 bytes after the empty one
		active(10, "abc"),    // 4,096 bytes before the next: merged
		active(4109, "de"),   // 4,097 bytes before the next: not
		active(8208, ""),     // empty
		active(70000, "end"), // in the second page
	)
	merged := mergeDataSegments(wasm)
	sections, err := splitSections(merged)
	require.NoError(t, err)
	var segments []dataSegment
	for _, s := range sections {
		if s.id == 11 {
			var ok bool
			segments, ok = activeSegments(s.body)
			require.True(t, ok)
		}
	}
	var offsets []uint32
	for _, s := range segments {
		offsets = append(offsets, s.offset)
	}
	assert.Equal(t, []uint32{10, 8208, 70000}, offsets, "segments 4,096 bytes apart or less are one")
	assert.Equal(t, memoryAfterInstantiation(t, wasm), memoryAfterInstantiation(t, merged))
}

// TestMergeDataSegmentsOfAGoModule compares the memory of a Go module as
// wasmtime instantiates it, from its own segments, with the memory wazero
// instantiates from the merged ones.
func TestMergeDataSegmentsOfAGoModule(t *testing.T) {
	wasm, err := os.ReadFile(testutil.BuildReactor(t, "testdata/guests/nop"))
	require.NoError(t, err)
	count := func(wasm []byte) uint32 {
		sections, err := splitSections(wasm)
		require.NoError(t, err)
		for _, s := range sections {
			if s.id == 11 {
				return (&wasmReader{b: s.body}).u32()
			}
		}
		return 0
	}
	merged := mergeDataSegments(wasm)
	t.Logf("data segments: %d before, %d after", count(wasm), count(merged))
	assert.Greater(t, count(wasm), uint32(1000), "Go writes many segments")
	assert.Less(t, count(merged), uint32(100))

	nop := HostFunc{Name: "nop", Results: []ValueType{I32}, Fn: func(_ context.Context, c Caller, s []uint64) { s[0] = 1 }}
	memory := map[string][]byte{}
	for _, engine := range Engines {
		e, err := NewEngine(context.Background(), engine, EngineConfig{HostModules: map[string][]HostFunc{"bench": {nop}}})
		require.NoError(t, err)
		defer e.Close(context.Background())
		m, err := e.Compile(context.Background(), ModuleBytes(wasm))
		require.NoError(t, err)
		inst, err := m.Instantiate(context.Background(), InstanceConfig{})
		require.NoError(t, err)
		defer inst.Close(context.Background())
		b, ok := inst.Memory().Read(0, uint32(inst.Memory().Size()))
		require.True(t, ok)
		memory[engine] = append([]byte(nil), b...)
	}
	require.Len(t, memory, 2)
	assert.True(t, bytes.Equal(memory["wasmtime"], memory["wazero"]), "the memories differ")
}

func TestMergeDataSegmentsLeavesWhatItCannotMerge(t *testing.T) {
	passive := append([]byte{1}, leb128.AppendU32(nil, 3)...)
	passive = append(passive, "abc"...)
	for name, wasm := range map[string][]byte{
		// memory.init and data.drop name segments by index.
		"a data count section": moduleWithData(1, true, active(10, "abc"), active(20, "de")),
		"a passive segment":    moduleWithData(1, false, active(10, "abc"), passive),
		"overlapping segments": moduleWithData(1, false, active(10, "abcdef"), active(12, "x")),
		"a negative offset":    moduleWithData(1, false, active(10, "abc"), active(-1, "x")),
		"a truncated section":  moduleWithData(1, false, active(10, "abc"))[:30],
		// Numbers whose fifth byte sets bits beyond 32: malformed, and
		// encoded again they would not be.
		"flags too large":  moduleWithData(1, false, []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0x41, 10, 0x0b, 1, 'a'}),
		"offset too large": moduleWithData(1, false, []byte{0, 0x41, 0x8a, 0x80, 0x80, 0x80, 0x10, 0x0b, 1, 'a'}),
		"size too large":   moduleWithData(1, false, []byte{0, 0x41, 10, 0x0b, 0x81, 0x80, 0x80, 0x80, 0x10, 'a'}),
	} {
		assert.Equal(t, wasm, mergeDataSegments(wasm), name)
	}
}

// TestMergeDataSegmentsBoundsTheZeros merges a byte every 4,097 bytes: the
// merged data holds at most maxMergedZeros more zeros than the module's
// bytes, not 4,096 per byte, and initialises memory the same.
func TestMergeDataSegmentsBoundsTheZeros(t *testing.T) {
	var segments [][]byte
	for i := range 10_000 {
		segments = append(segments, active(int32(i*4097), "x"))
	}
	wasm := moduleWithData(1000, false, segments...)
	merged := mergeDataSegments(wasm)
	assert.Less(t, len(merged), len(wasm)+maxMergedZeros+10_000, "the module grew by %d bytes", len(merged)-len(wasm))
	assert.True(t, bytes.Equal(memoryAfterInstantiation(t, wasm), memoryAfterInstantiation(t, merged)), "the memories differ")
}

// TestMergedDataSegmentsFailAsTheOriginal instantiates modules whose data
// is malformed or out of bounds on both engines (wazero from the merged
// segments): both refuse each, and wazero names the segment out of bounds
// (such data is not merged).
func TestMergedDataSegmentsFailAsTheOriginal(t *testing.T) {
	export := []byte{1, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0}
	withExport := func(wasm []byte) []byte {
		sections, err := splitSections(wasm)
		require.NoError(t, err)
		out := append([]byte{}, wasm[:8]...)
		for _, s := range sections {
			out = appendSectionBytes(out, s.id, s.body)
			if s.id == 5 {
				out = appendSectionBytes(out, 7, export)
			}
		}
		return out
	}
	for name, c := range map[string]struct {
		wasm []byte
		err  string
	}{
		"ending at the memory's end": {moduleWithData(1, false, active(65530, "a"), active(65533, "xyz")), ""},
		"a byte past it":             {moduleWithData(1, false, active(65530, "a"), active(65534, "xyz")), "out of bounds memory access"},
		"empty, past it":             {moduleWithData(1, false, active(65530, "a"), active(65540, "")), "out of bounds memory access"},
		"near 2 GiB":                 {moduleWithData(1, false, active(10, "a"), active(1<<31-2, "xy")), "out of bounds memory access"},
		"an offset too large":        {moduleWithData(1, false, active(100, "a"), []byte{0, 0x41, 0x8a, 0x80, 0x80, 0x80, 0x10, 0x0b, 1, 'a'}), "integer"},
		"a size too large":           {moduleWithData(1, false, active(100, "a"), []byte{0, 0x41, 10, 0x0b, 0x81, 0x80, 0x80, 0x80, 0x10, 'a'}), "integer"},
	} {
		for _, engine := range Engines {
			t.Run(name+"/"+engine, func(t *testing.T) {
				ctx := context.Background()
				e, err := NewEngine(ctx, engine, EngineConfig{})
				require.NoError(t, err)
				defer e.Close(ctx)
				m, err := e.Compile(ctx, ModuleBytes(withExport(c.wasm)))
				if err == nil {
					var inst ModuleInstance
					if inst, err = m.Instantiate(ctx, InstanceConfig{}); err == nil {
						inst.Close(ctx)
					}
				}
				if c.err == "" {
					assert.NoError(t, err)
				} else if assert.Error(t, err) {
					assert.Contains(t, err.Error(), c.err)
					if engine == "wazero" && strings.Contains(c.err, "out of bounds") {
						assert.Contains(t, err.Error(), "data[1]", "wazero names the segment that does not fit, not a merged one")
					}
				}
			})
		}
	}
}
