package plugins

import (
	"fmt"
	"os"
)

// pageSize is the size of a Wasm memory page.
const pageSize = 64 << 10

// maxPages is the most pages a 32-bit memory has: 4 GiB.
const maxPages = 65536

// memoryTooSmall explains a module that cannot start under limit bytes of
// linear memory because its memory's declared minimum is larger; nil when
// it fits, when limit is 0 (none) or when wasm declares no memory of its
// own. wazero refuses such a module as it compiles and wasmtime as it
// instantiates, each in its own words and neither naming the setting, so
// both failures are reported with this error instead.
func memoryTooSmall(wasm []byte, limit uint64) error {
	if limit == 0 {
		return nil
	}
	pages, ok := memoryMinimumPages(wasm)
	limitPages := min(limit/pageSize, maxPages) // as the engines round it
	if !ok || pages <= limitPages {
		return nil
	}
	return fmt.Errorf("the module needs %.1f MiB of linear memory to start (%d pages of 64 KiB), more than its limit of %.1f MiB: set [limits] memory_mib in wharf.toml to at least %d",
		float64(pages*pageSize)/(1<<20), pages, float64(limitPages*pageSize)/(1<<20), (pages*pageSize+(1<<20)-1)>>20)
}

// memoryMinimumPages is the minimum size, in pages, of the first memory
// wasm's memory section defines, and whether there is one.
func memoryMinimumPages(wasm []byte) (uint64, bool) {
	sections, err := splitSections(wasm)
	if err != nil {
		return 0, false
	}
	for _, s := range sections {
		if s.id != 5 { // the memory section
			continue
		}
		r := &wasmReader{b: s.body}
		if r.u32() == 0 {
			return 0, false
		}
		r.byte() // flags: whether a maximum follows, shared, 64-bit
		pages := r.leb(10)
		return pages, r.err == nil
	}
	return 0, false
}

// launchFailure is the error of an instance of p that could not be made:
// err, unless the module's memory does not fit p's limit.
func (p *Plugin) launchFailure(err error) error {
	if wasm, readErr := os.ReadFile(p.cfg.Path); readErr == nil {
		if tooSmall := memoryTooSmall(wasm, p.cfg.MemoryLimitBytes); tooSmall != nil {
			return tooSmall
		}
	}
	return fmt.Errorf("instantiate: %w", err)
}
