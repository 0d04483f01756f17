package manifest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/wharfhq/wharf/internal/keptthread"
)

// DefaultStateDir is the directory, next to wharf.toml, that holds build
// output and the default data directory.
const DefaultStateDir = ".wharf"

// WasmPath returns the module the manifest's main names: the .wasm file
// itself, or where Build puts the module compiled from a Go package.
func (m *Manifest) WasmPath() string {
	if strings.HasSuffix(m.Main, ".wasm") {
		return m.MainPath()
	}
	return filepath.Join(m.Dir, DefaultStateDir, "build", m.Name+".wasm")
}

// MainPath is the file or directory main names: relative to the
// manifest's directory, unless absolute.
func (m *Manifest) MainPath() string {
	if filepath.IsAbs(m.Main) {
		return m.Main
	}
	return filepath.Join(m.Dir, m.Main)
}

// CheckModule reports a main naming a .wasm file that cannot be read, at
// main's position; it is nil for a Go package, which Build checks.
func (m *Manifest) CheckModule() error {
	if m.NeedsBuild() {
		return nil
	}
	f, err := os.Open(m.MainPath())
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return fmt.Errorf("%s:%s: main: %q: %w", m.name(), m.mainAt, m.Main, err)
	}
	return f.Close()
}

// ListenError is err, met listening on Listen, told as coming from where
// that address is set: the manifest's listen, or the default.
func (m *Manifest) ListenError(err error) error {
	if m.listenAt == "" {
		return fmt.Errorf("%w (the default address: set listen in %s, or pass --listen)", err, FileName)
	}
	return fmt.Errorf("%s:%s: listen: %w (or pass --listen)", m.name(), m.listenAt, err)
}

// name is the manifest's path as messages give it: as the user gave it.
func (m *Manifest) name() string { return cmp.Or(m.shown, m.Path) }

// NeedsBuild reports whether main is a Go package rather than a .wasm file.
func (m *Manifest) NeedsBuild() bool { return !strings.HasSuffix(m.Main, ".wasm") }

// Build compiles the manifest's Go package, a WASI command, with
// GOOS=wasip1 GOARCH=wasm into out (WasmPath() if empty, NAME.wasm in it if
// a directory or ending in a separator) and returns the path.
// The go command's output is passed to stderr.
func Build(ctx context.Context, m *Manifest, out string, stderr io.Writer) (string, error) {
	if !m.NeedsBuild() {
		if err := m.CheckModule(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%s:%s: main: %q is a .wasm file already: there is nothing to build (wharf serve runs it as it is)", m.name(), m.mainAt, m.Main)
	}
	pkg := m.MainPath()
	if st, err := os.Stat(pkg); err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s:%s: main: %q is neither a Go package directory nor a .wasm file", m.name(), m.mainAt, m.Main)
	}
	switch {
	case out == "":
		out = m.WasmPath()
	case os.IsPathSeparator(out[len(out)-1]) || isDir(out): // as go build -o, and not renamed over
		out = filepath.Join(out, m.Name+".wasm")
	}
	out, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if err := checkOutput(out); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building %s needs the Go toolchain (go 1.26 or newer, as go.mod says) on PATH: %w", m.Name, err)
	}
	// go build works in a directory of this process's next to out, which
	// is replaced only by a module: a failed or cut build leaves the last
	// good one in place. The directory holds the module go build writes
	// and, as GOTMPDIR (but see below), its work directory, which go
	// build removes only when it ends by itself (it handles no signal:
	// SIGINT kills it as SIGKILL does). The next build removes what a
	// killed wharf's left.
	removeAbandoned(out)
	dir := buildDir(out, os.Getpid())
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("building %s: %w", m.Name, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, filepath.Base(out))
	// go build does not link again when its output already holds what the
	// sources make (the build ID in it says so): starting from the last
	// module spares an unchanged plugin the link (most of a rebuild's
	// second). Without a copy, go build links afresh.
	copyModule(out, tmp)
	var output bytes.Buffer
	goBuild := func(attrs *syscall.SysProcAttr) *exec.Cmd {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", tmp, ".")
		cmd.Dir = pkg
		cmd.Env = wasip1Env()
		// go build's work files name files a line each (importcfg): a
		// work directory whose path holds a newline fails the link, so
		// next to such an output go build works in the system's temporary
		// directory, as by default.
		if !strings.Contains(dir, "\n") {
			cmd.Env = append(cmd.Env, "GOTMPDIR="+dir)
		}
		cmd.SysProcAttr = attrs
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// A log nobody reads any more (wharf serve 2>&1 | head -1) fails
		// its writes: they are lost, not passed on, or the copy would stop
		// and go build die of SIGPIPE at its next line, failing a good
		// build.
		cmd.Stdout = io.MultiWriter(&output, lossy{stderr})
		cmd.Stderr = cmd.Stdout
		return cmd
	}
	// No build outlives a killed wharf (it is started from a kept thread:
	// see package keptthread), and a cancelled one ends with the compiles
	// it started (its process group), which would write on into the
	// directory being removed. Killed with wharf, go build cannot end
	// them: as root it is the first process of a PID namespace of its
	// own, whose end the kernel ends them with (/proc stays the host's:
	// /proc/self is right, a pid the build's processes see is not the
	// host's). Where no namespace can be made (not root), they finish on
	// their own.
	alone := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd := goBuild(alone)
	if os.Geteuid() == 0 {
		isolated := *alone
		isolated.Cloneflags = syscall.CLONE_NEWPID
		cmd = goBuild(&isolated)
	}
	err = keptthread.StartProcess(cmd)
	if err != nil && cmd.SysProcAttr.Cloneflags != 0 { // no namespace allowed here (in a container, say)
		cmd = goBuild(alone)
		err = keptthread.StartProcess(cmd)
	}
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		switch {
		case strings.Contains(output.String(), "function main is undeclared"):
			return "", fmt.Errorf("go build of %s failed: a plugin's package main needs `func main() { sdk.Serve() }` (register handlers before it, or in init)", pkg)
		case strings.Contains(output.String(), "no Go files in "):
			return "", fmt.Errorf("%s:%s: main: %q has no Go files: a plugin is built from a package main that calls sdk.Serve()", m.name(), m.mainAt, m.Main)
		}
		return "", fmt.Errorf("go build of %s failed: %w", pkg, err)
	}
	if !isWasm(tmp) { // go build of a package other than main writes an archive
		list := exec.CommandContext(ctx, goBin, "list", "-f", "{{.Name}}", ".")
		list.Dir, list.Env = pkg, wasip1Env()
		name, _ := list.Output()
		return "", fmt.Errorf("%s:%s: main: %q is package %s, not package main: a plugin is built from a package main that calls sdk.Serve()",
			m.name(), m.mainAt, m.Main, strings.TrimSpace(string(name)))
	}
	return out, os.Rename(tmp, out)
}

// copyModule copies the module at from to a new file to, with the mode
// go build gives a module it writes (0777 less the umask, as it gives an
// executable), not from's: a rebuild go build keeps it for has the mode a
// fresh one has. It copies nothing if from is not a module as go build
// wrote it.
func copyModule(from, to string) {
	src, err := os.Open(from)
	if err != nil {
		return
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	module, err := io.ReadAll(src)
	if err != nil || !builtIntact(module) {
		return
	}
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o777)
	if err != nil {
		return
	}
	_, err = dst.Write(module)
	if err = errors.Join(err, dst.Close()); err != nil {
		os.Remove(to)
	}
}

// buildIDPrefix precedes the build ID go build writes near the start of
// what it links.
const buildIDPrefix = "\xff Go build ID: \""

// builtIntact reports whether module is a Wasm module as go build wrote
// it: its bytes, with its build ID zeroed, hash to the content ID that ends
// the build ID (the go command's SHA-256, first 15 bytes in URL base64).
// go build keeps an output whose build ID is the one it would write
// without reading the rest, so a module cut short or changed since its
// build must not be given to it. Another scheme of a later go command
// only makes every rebuild link.
func builtIntact(module []byte) bool {
	if !bytes.HasPrefix(module, []byte("\x00asm")) {
		return false
	}
	_, after, ok := bytes.Cut(module[:min(len(module), 32<<10)], []byte(buildIDPrefix))
	if !ok {
		return false
	}
	id, _, ok := bytes.Cut(after, []byte(`"`))
	slash := bytes.LastIndexByte(id, '/')
	if !ok || slash < 0 {
		return false
	}
	h, zeros := sha256.New(), make([]byte, len(id))
	for rest := module; ; {
		before, after, found := bytes.Cut(rest, id)
		h.Write(before)
		if !found {
			break
		}
		h.Write(zeros)
		rest = after
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:15]) == string(id[slash+1:])
}

// buildDir is the directory a build of out by the process pid works in.
func buildDir(out string, pid int) string { return fmt.Sprintf("%s.%d.tmp", out, pid) }

// removeAbandoned removes what builds of out left when their wharf was
// killed: the directories (or, from an older wharf, the files) of
// processes that no longer run, and the one of this process's pid, which
// a killed wharf had before it (a container's wharf is pid 1 at every
// start): go build must not start from a module cut short there.
func removeAbandoned(out string) {
	entries, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range entries {
		path := filepath.Join(filepath.Dir(out), e.Name())
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(e.Name(), filepath.Base(out)+"."), ".tmp"))
		if err != nil || path != buildDir(out, pid) {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); pid == os.Getpid() || errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(path)
		}
	}
}

// checkOutput refuses an out the build must not rename its module over:
// a file that is not a module (go build -o refused it too), or no regular
// file at all (a FIFO, a device such as /dev/null).
func checkOutput(out string) error {
	st, err := os.Stat(out)
	switch {
	case err != nil: // absent, or the build says why it cannot write it
		return nil
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file: wharf build writes a module file, or NAME.wasm in a directory", out)
	case st.Size() > 0 && !isWasm(out):
		return fmt.Errorf("%s exists and is not a Wasm module: wharf build does not replace it", out)
	}
	return nil
}

// isDir reports whether path names a directory.
func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// wasip1Env is the environment go commands build plugins in.
func wasip1Env() []string { return append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm") }

// isWasm reports whether the file at path starts with a WebAssembly
// module's header.
func isWasm(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [4]byte
	_, err = io.ReadFull(f, head[:])
	return err == nil && string(head[:]) == "\x00asm"
}

// lossy passes writes on to a log and drops those the log fails.
type lossy struct{ log io.Writer }

func (w lossy) Write(p []byte) (int, error) {
	w.log.Write(p)
	return len(p), nil
}
