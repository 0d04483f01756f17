package plugins

import (
	"slices"

	"github.com/wharfhq/wharf/internal/leb128"
)

// Go's linker writes a module's data as up to 100,000 active segments,
// split at runs of zeros (examples/hello: 100,000 segments, 4.7 MB). wazero
// keeps a decoded segment and, in every instance, a slice header per
// segment: about 12 MB of Go heap for hello with two instances, which the
// garbage collector lets the heap grow to twice. mergeDataSegments joins
// segments whose gaps are short into one, writing the gap's zeros: hello
// keeps 1 segment of 6.5 MB. Memory starts zeroed, so a merged module
// initialises memory to the same bytes.

// maxMergedGap is the longest run of zeros written to join two segments.
const maxMergedGap = 4096

// dataSegment is an active segment of memory 0 at a constant offset.
type dataSegment struct {
	offset uint32
	init   []byte
}

// end is the offset of the byte after the segment.
func (s dataSegment) end() uint64 { return uint64(s.offset) + uint64(len(s.init)) }

// mergeDataSegments returns wasm with its data segments merged where the
// module allows it: without a data count section (so no instruction names
// a segment by index), with every segment active in memory 0 at an
// i32.const offset, within the module's own memory's initial size, and no
// two overlapping. Otherwise wasm is returned as it is.
func mergeDataSegments(wasm []byte) []byte {
	sections, err := splitSections(wasm)
	if err != nil || hasSection(sections, 12) {
		return wasm
	}
	memory, ok := initialMemory(sections)
	if !ok {
		return wasm
	}
	out := append([]byte{}, wasm[:8]...)
	for _, s := range sections {
		body := s.body
		if s.id == 11 {
			segments, ok := activeSegments(body)
			if !ok || len(segments) > 0 && segments[len(segments)-1].end() > memory {
				return wasm // out of bounds: the engine names the segment
			}
			body = encodeDataSection(mergeSegments(segments))
		}
		out = appendSectionBytes(out, s.id, body)
	}
	return out
}

// initialMemory is the initial size in bytes of the module's memory when
// it defines one 32-bit memory (imports none); false otherwise.
func initialMemory(sections []section) (uint64, bool) {
	for _, s := range sections {
		if s.id != 5 {
			continue
		}
		r := &wasmReader{b: s.body}
		if r.u32() != 1 {
			return 0, false
		}
		flags := r.byte()
		pages := r.u32()
		if r.err != nil || flags > 1 {
			return 0, false
		}
		return uint64(pages) << 16, true
	}
	return 0, false
}

// activeSegments decodes a data section whose segments are all active in
// memory 0 at constant offsets, sorted by offset; false if one is not, or
// two overlap.
func activeSegments(body []byte) ([]dataSegment, bool) {
	r := &wasmReader{b: body}
	n := r.u32()
	segments := make([]dataSegment, 0, min(n, 1<<20))
	for i := uint32(0); i < n && r.err == nil; i++ {
		// flags 0, then i32.const offset end.
		if r.u32() != 0 || r.byte() != 0x41 {
			return nil, false
		}
		offset := r.s32()
		if r.byte() != 0x0b || offset < 0 {
			return nil, false
		}
		size := int(r.u32())
		if r.err != nil || r.pos+size > len(r.b) {
			return nil, false
		}
		segments = append(segments, dataSegment{uint32(offset), r.b[r.pos : r.pos+size]})
		r.pos += size
	}
	if r.err != nil || r.pos != len(r.b) {
		return nil, false
	}
	slices.SortStableFunc(segments, func(a, b dataSegment) int { return int(int64(a.offset) - int64(b.offset)) })
	for i := 1; i < len(segments); i++ {
		if segments[i-1].end() > uint64(segments[i].offset) {
			return nil, false
		}
	}
	return segments, true
}

// maxMergedZeros is how many zeros mergeSegments may write beyond as many
// as the segments hold bytes.
const maxMergedZeros = 1 << 20

// mergeSegments joins sorted, disjoint segments whose gap is at most
// maxMergedGap, writing no more zeros in all than the segments hold bytes
// and maxMergedZeros: a byte every 4 KiB would otherwise make a module of
// 1 MB a segment of 400 MB (Go's data grows 1.4 times).
func mergeSegments(segments []dataSegment) []dataSegment {
	var merged []dataSegment
	zeros := maxMergedZeros // how many more zeros may be written
	for _, s := range segments {
		zeros += len(s.init)
	}
	for _, s := range segments {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			end := last.offset + uint32(len(last.init))
			if gap := s.offset - end; gap <= maxMergedGap && int(gap) <= zeros {
				zeros -= int(gap)
				last.init = append(last.init, make([]byte, gap)...)
				last.init = append(last.init, s.init...)
				continue
			}
		}
		merged = append(merged, dataSegment{s.offset, slices.Clip(s.init)})
	}
	return merged
}

// encodeDataSection is the body of a data section of active segments in
// memory 0.
func encodeDataSection(segments []dataSegment) []byte {
	out := leb128.AppendU32(nil, uint32(len(segments)))
	for _, s := range segments {
		out = append(out, 0x00, 0x41)
		out = leb128.AppendS32(out, int32(s.offset))
		out = append(out, 0x0b)
		out = leb128.AppendU32(out, uint32(len(s.init)))
		out = append(out, s.init...)
	}
	return out
}
