package plugins

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/atomicfile"
)

// ModuleFile is a Wasm module to compile: its content digest, which keys
// compiled code, and its bytes, read only when an engine needs them. With a
// warm cache, wasmtime loads compiled code by the digest alone, so a start
// neither reads nor hashes the (often 10+ MB) module.
type ModuleFile struct {
	// Digest identifies the module's contents (hex, 128 bits of SHA-256).
	Digest string
	path   string
	wasm   []byte
}

// ModuleBytes is a module already in memory.
func ModuleBytes(wasm []byte) *ModuleFile {
	return &ModuleFile{Digest: digestOf(wasm), wasm: wasm}
}

// Bytes returns the module's contents, reading the file once. A file that
// no longer has the digest it was opened with (rewritten since) is refused.
func (f *ModuleFile) Bytes() ([]byte, error) {
	if f.wasm != nil {
		return f.wasm, checkNoStart(f.wasm)
	}
	wasm, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(checkMagic(wasm), checkNoStart(wasm)); err != nil {
		return nil, err
	}
	if digestOf(wasm) != f.Digest {
		return nil, fmt.Errorf("%s changed while it was loading", f.path)
	}
	f.wasm = wasm
	return wasm, nil
}

func digestOf(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:16])
}

// OpenModule names the module at path by its digest. The digest of a file
// whose identity (device, inode, size, modification and change times, to
// the nanosecond) is unchanged since it was last hashed comes from an index
// in cacheDir; any write or replacement of the file changes that identity.
// Without cacheDir the file is read and hashed.
func OpenModule(path, cacheDir string) (*ModuleFile, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	identity := fmt.Sprintf("%d %d %d %d.%d %d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	var index string
	if cacheDir != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		index = filepath.Join(cacheDir, "digests", digestOf([]byte(abs)))
		if raw, err := os.ReadFile(index); err == nil {
			if known, digest, ok := strings.Cut(strings.TrimSpace(string(raw)), "\n"); ok && known == identity {
				return &ModuleFile{Digest: digest, path: path}, nil
			}
		}
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkMagic(wasm); err != nil {
		return nil, err
	}
	f := ModuleBytes(wasm)
	f.path = path
	if index != "" { // best effort: without it the next start hashes again
		atomicfile.Write(index, []byte(identity+"\n"+f.Digest+"\n"), 0o600, false)
	}
	return f, nil
}

// castagnoli is the CRC-32C table, which amd64 and arm64 compute in
// hardware: checking a 44 MB file costs about 10 ms, most of it reading.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged is a cache entry that fails its checksum: damaged on disk.
var errDamaged = errors.New("checksum mismatch")

// writeChecked writes data to path atomically, followed by its CRC-32C
// (4 bytes): mapChecked then notices a file damaged on disk (a bit
// flipped, or a power loss leaving zeros or a short file: writes are not
// synced) rather than returning what is no longer what was written.
func writeChecked(path string, data []byte) error {
	sum := binary.LittleEndian.AppendUint32(nil, crc32.Checksum(data, castagnoli))
	return atomicfile.Write(path, append(data[:len(data):len(data)], sum...), 0o600, false)
}

// mapChecked maps a file writeChecked wrote, read-only, and returns it
// without its checksum and its mapping, which must be read through its
// read method and unmapped after. A file that fails the check is
// errDamaged. Mapped, a large file costs a start less than read: 14 MB
// took 70 ms to read into fresh memory here (a first touch of a page is
// dear in a virtual machine), 8–12 ms to map and check. writeChecked
// replaces a file, never writes into it, so a mapping never sees it
// change.
func mapChecked(path string) (data []byte, m *mapping, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() < 4 {
		return nil, nil, fmt.Errorf("%s: %w", path, errDamaged)
	}
	all, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	m = &mapping{path: path, data: all}
	n := len(all) - 4
	err = m.read(func() error {
		if crc32.Checksum(all[:n], castagnoli) != binary.LittleEndian.Uint32(all[n:]) {
			return fmt.Errorf("%s: %w", path, errDamaged)
		}
		return nil
	})
	if err != nil {
		m.unmap()
		return nil, nil, err
	}
	return all[:n], m, nil
}

// mapping is a file mapped read-only (mapChecked).
type mapping struct {
	path string
	data []byte
}

// read calls fn, which reads the mapping (on the calling goroutine). A
// fault there, a SIGBUS that would end wharf (another program cut the
// file short, or the disk could not read a page), is errDamaged instead.
func (m *mapping) read(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if f, ok := r.(interface{ Addr() uintptr }); ok && m.holds(f.Addr()) {
			err = fmt.Errorf("%s: %w: reading it faulted (cut short since it was mapped, or unreadable)", m.path, errDamaged)
			return
		}
		panic(r)
	}()
	return fn()
}

// holds reports whether addr is in the mapping.
func (m *mapping) holds(addr uintptr) bool {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
	return addr >= start && addr < start+uintptr(len(m.data))
}

// unmap ends the mapping; its bytes must not be used after.
func (m *mapping) unmap() { unix.Munmap(m.data) }

// fileChecksum is the CRC-32C of the file at path, read in pieces (a
// compiled module can be tens of MB).
func fileChecksum(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	_, err = io.CopyBuffer(h, f, make([]byte, 256<<10))
	return h.Sum32(), err
}

// staleTemp is the age past which a temporary file in a compile cache is a
// killed writer's: a live one writes it in well under a second.
const staleTemp = time.Minute

// sweepCache removes from cacheDir's directories what no reader should
// open there: the temporary files that writers killed mid-write left
// (atomicfile.Write's, and those of wazero's compilation cache,
// <key>.<random>.tmp), and anything that is not a regular file (wharf
// writes none): a named pipe at a cache path would block a start's open
// forever. wharf dev kills a compile at the next save, which may be while
// it writes 50 MB of code; nothing reads these files, but each would
// stay. Temporary files younger than staleTemp may still be written, by
// this process or another using the cache, and are kept. A symbolic link
// in place of one of the directories, which would take the cache's reads
// and writes elsewhere, is removed, never what it names. Everything is
// looked at and removed through an os.Root of cacheDir, so an entry
// swapped for a link after it was listed cannot take a removal out of
// the cache.
func sweepCache(cacheDir string) {
	root, err := os.OpenRoot(cacheDir)
	if err != nil {
		return
	}
	defer root.Close()
	dirs, _ := fs.ReadDir(root.FS(), ".")
	for _, d := range dirs {
		if d.Type()&fs.ModeSymlink != 0 {
			root.Remove(d.Name())
			continue
		}
		if !d.IsDir() {
			continue
		}
		files, _ := fs.ReadDir(root.FS(), d.Name())
		for _, f := range files {
			name := f.Name()
			path := d.Name() + "/" + name
			if !f.Type().IsRegular() {
				root.RemoveAll(path)
				continue
			}
			temp := strings.HasPrefix(name, atomicfile.TempPrefix) ||
				strings.HasPrefix(d.Name(), "wazero-") && strings.HasSuffix(name, ".tmp")
			if info, err := root.Lstat(path); temp && err == nil && time.Since(info.ModTime()) > staleTemp {
				root.Remove(path)
			}
		}
	}
}
