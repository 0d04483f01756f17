package plugins

import (
	"runtime"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mappedMemory is a wazero linear memory outside the Go heap: the memory's
// whole maximum is reserved as address space (no access, no memory) when
// the instance is made, and pages become usable as the guest grows it. So
// growing never copies the memory (wazero's own, a Go slice, is appended
// to: a 64 MB memory growing held 128 MB for a while), and the garbage
// collector neither scans it nor lets the heap grow to twice it before
// collecting (GOGC counts a slice of guest memory as live heap).
type mappedMemory struct {
	region *region
	usable uint64 // bytes made readable and writable
}

// region is the reserved address space; unmapped once, by Free or, for a
// memory wazero dropped without closing its module, by a cleanup.
type region struct {
	b     []byte
	freed bool
}

// allocateMapped is wazero's experimental.MemoryAllocator for
// mappedMemory; where the address space cannot be reserved (a low
// RLIMIT_AS), the memory is a Go slice, as wazero's own.
func allocateMapped(_, max uint64) experimental.LinearMemory {
	if max == 0 {
		max = 1 // mmap refuses an empty mapping
	}
	b, err := unix.Mmap(-1, 0, int(max), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{}
	}
	m := &mappedMemory{region: &region{b: b}}
	runtime.AddCleanup(m, (*region).free, m.region)
	return m
}

// Reallocate makes the first size bytes usable and returns them; nil if
// the kernel refuses (the guest's memory.grow then fails).
func (m *mappedMemory) Reallocate(size uint64) []byte {
	b := m.region.b
	if size > uint64(len(b)) {
		return nil
	}
	if size > m.usable {
		if err := unix.Mprotect(b[m.usable:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return nil
		}
		m.usable = size
	}
	return b[:size:size]
}

// Free unmaps the memory; wazero calls it when the module closes.
func (m *mappedMemory) Free() { m.region.free() }

func (r *region) free() {
	if !r.freed {
		r.freed = true
		unix.Munmap(r.b)
	}
}

// sliceMemory is a linear memory in the Go heap, grown by appending.
type sliceMemory struct{ b []byte }

func (s *sliceMemory) Reallocate(size uint64) []byte {
	if n := int(size) - len(s.b); n > 0 {
		s.b = append(s.b, make([]byte, n)...)
	}
	return s.b[:size]
}

func (s *sliceMemory) Free() { s.b = nil }
