package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// brokenLog is a log whose reader went away: every write fails, as
// os.Stderr's do with EPIPE once wharf serve's stderr reader has exited.
type brokenLog struct{}

func (brokenLog) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// plugin writes a one-file module whose package main is src and returns
// its manifest.
func plugin(t *testing.T, src string) *Manifest {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.26\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"probe\"\nmain = \".\"\n"), 0o644))
	m, err := Load(filepath.Join(dir, "wharf.toml"))
	require.NoError(t, err)
	return m
}

// TestBuildOutlivesItsLogReader: go build's output is copied to wharf's
// log; a log nobody reads any more (wharf serve 2>&1 | head -1) must not
// fail a build that prints something (go build -v, go: downloading), nor
// lose the output a failed build is explained from.
func TestBuildOutlivesItsLogReader(t *testing.T) {
	t.Setenv("GOFLAGS", "-v") // go build names the packages it compiles
	m := plugin(t, "package main\n\nconst dir = "+`"`+filepath.ToSlash(t.TempDir())+`"`+"\n\nfunc main() { println(dir) }\n")
	out := filepath.Join(t.TempDir(), "probe.wasm")
	_, err := Build(context.Background(), m, out, brokenLog{})
	assert.NoError(t, err, "the build printed to a log nobody reads")
	assert.FileExists(t, out)

	m = plugin(t, "package main\n")
	_, err = Build(context.Background(), m, "", brokenLog{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "needs `func main() { sdk.Serve() }`")
	assert.False(t, errors.Is(err, syscall.EPIPE))
}

// TestBuildNamesMainAndItsPosition: a main that is no Go package directory
// (absent, a file, a directory without Go files, a .wasm file) is reported
// at main's line and column.
func TestBuildNamesMainAndItsPosition(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644))
	for _, main := range []string{"missing", "main.go"} {
		require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\n\nmain   = \""+main+"\"\n"), 0o644))
		m, err := Load(path)
		require.NoError(t, err)
		_, err = Build(context.Background(), m, "", io.Discard)
		assert.EqualError(t, err, path+`:3:10: main: "`+main+`" is neither a Go package directory nor a .wasm file`)
	}

	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.26\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \"empty\"\n"), 0o644))
	m, err := Load(path)
	require.NoError(t, err)
	_, err = Build(context.Background(), m, "", io.Discard)
	assert.EqualError(t, err, path+`:2:8: main: "empty" has no Go files: a plugin is built from a package main that calls sdk.Serve()`)

	// A .wasm main has nothing to build: an absent one is named as
	// CheckModule names it, a present one says so, both at main's position.
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \"m.wasm\"\n"), 0o644))
	m, err = Load(path)
	require.NoError(t, err)
	_, err = Build(context.Background(), m, "", io.Discard)
	assert.EqualError(t, err, path+`:2:8: main: "m.wasm": no such file or directory`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "m.wasm"), []byte("\x00asm"), 0o644))
	_, err = Build(context.Background(), m, "", io.Discard)
	assert.EqualError(t, err, path+`:2:8: main: "m.wasm" is a .wasm file already: there is nothing to build (wharf serve runs it as it is)`)
}

// TestCheckModuleNamesMainAndItsPosition: a main naming a .wasm file that
// is not there is reported at main's position, before anything loads.
func TestCheckModuleNamesMainAndItsPosition(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \"absent.wasm\"\n"), 0o644))
	m, err := Load(path)
	require.NoError(t, err)
	assert.EqualError(t, m.CheckModule(), path+`:2:8: main: "absent.wasm": no such file or directory`)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "absent.wasm"), []byte("\x00asm"), 0o644))
	assert.NoError(t, m.CheckModule())
	require.NoError(t, os.WriteFile(path, []byte("name = \"a\"\nmain = \".\"\n"), 0o644))
	m, err = Load(path)
	require.NoError(t, err)
	assert.NoError(t, m.CheckModule(), "a Go package is Build's to check")
}

// TestBuildRefusesAPackageOtherThanMain: go build of such a package writes
// an archive, not a module; wharf build says so at main's position and
// keeps the module the last good build wrote.
func TestBuildRefusesAPackageOtherThanMain(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() {}\n")
	out, err := Build(context.Background(), m, "", io.Discard)
	require.NoError(t, err)
	good, err := os.ReadFile(out)
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(filepath.Join(m.Dir, "main.go"), []byte("package helpers\n"), 0o644))
	_, err = Build(context.Background(), m, "", io.Discard)
	assert.EqualError(t, err, m.Path+`:2:8: main: "." is package helpers, not package main: a plugin is built from a package main that calls sdk.Serve()`)
	kept, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, good, kept, "the last good module was replaced")
	leftovers, _ := filepath.Glob(out + ".*")
	assert.Empty(t, leftovers)

	// A build killed with its wharf (kill -9) left its directory (an older
	// wharf's, its temporary file); the next build removes it, and leaves
	// a running build's alone.
	require.NoError(t, os.WriteFile(filepath.Join(m.Dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	var abandoned []string
	for range 2 {
		dead := exec.Command("true")
		require.NoError(t, dead.Run())
		abandoned = append(abandoned, buildDir(out, dead.Process.Pid))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(abandoned[0], "go-build1", "b001"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(abandoned[0], "go-build1", "b001", "_pkg_.a"), []byte("partial"), 0o644))
	require.NoError(t, os.WriteFile(abandoned[1], []byte("partial"), 0o644))
	running := buildDir(out, os.Getppid())
	require.NoError(t, os.Mkdir(running, 0o700))
	_, err = Build(context.Background(), m, "", io.Discard)
	require.NoError(t, err)
	for _, path := range abandoned {
		assert.NoFileExists(t, path)
		assert.NoDirExists(t, path)
	}
	assert.DirExists(t, running)
}

// TestBuildIntoADirectory: -o naming a directory (existing, or ending in a
// slash) writes NAME.wasm in it, as go build -o does, and returns that
// path; it does not try to rename the module over the directory.
func TestBuildIntoADirectory(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() {}\n")
	dir := t.TempDir()
	out, err := Build(context.Background(), m, dir, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "probe.wasm"), out)
	assert.True(t, isWasm(out))

	missing := filepath.Join(t.TempDir(), "new") + string(filepath.Separator)
	out, err = Build(context.Background(), m, missing, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(missing, "probe.wasm"), out)
	assert.True(t, isWasm(out))
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Clean(missing)), "*.tmp"))
	assert.Empty(t, leftovers)
}

// TestBuildUnderAPathWithANewline: an output whose directory's path holds
// a newline is built, as go build -o builds it: go build's work files name
// files a line each (importcfg), so its work directory is not put next to
// such an output, and nothing is left there.
func TestBuildUnderAPathWithANewline(t *testing.T) {
	// A package main of its own: go build compiles and links it, not
	// taking both from its cache.
	m := plugin(t, "package main\n\nconst dir = "+`"`+filepath.ToSlash(t.TempDir())+`"`+"\n\nfunc main() { println(dir) }\n")
	dir := filepath.Join(t.TempDir(), "new\nline")
	out, err := Build(context.Background(), m, dir+string(filepath.Separator), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "probe.wasm"), out)
	assert.True(t, isWasm(out))
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, "probe.wasm", left[0].Name())
}

// TestBuildKeepsWhatIsNotAModule: -o naming a file that is not a module
// (a source file, by a slip) or no regular file at all (a FIFO, a device
// such as /dev/null) is refused before the build, and the file is left as
// it was: the build renames its module over its output.
func TestBuildKeepsWhatIsNotAModule(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() {}\n")
	src := filepath.Join(m.Dir, "main.go")
	_, err := Build(context.Background(), m, src, io.Discard)
	assert.EqualError(t, err, src+" exists and is not a Wasm module: wharf build does not replace it")
	kept, err := os.ReadFile(src)
	require.NoError(t, err)
	assert.Equal(t, "package main\n\nfunc main() {}\n", string(kept))

	fifo := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))
	_, err = Build(context.Background(), m, fifo, io.Discard)
	assert.EqualError(t, err, fifo+" is not a regular file: wharf build writes a module file, or NAME.wasm in a directory")
	st, err := os.Lstat(fifo)
	require.NoError(t, err)
	assert.Equal(t, os.ModeNamedPipe, st.Mode().Type(), "the FIFO was replaced")
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(fifo), "*.tmp"))
	assert.Empty(t, leftovers)
}

// TestBuildNamesTheManifestAsGiven: build errors name the manifest as the
// user gave it, as its warnings and parse errors do.
func TestBuildNamesTheManifestAsGiven(t *testing.T) {
	m := plugin(t, "package helpers\n")
	t.Chdir(m.Dir)
	m, err := Load(FileName)
	require.NoError(t, err)
	_, err = Build(context.Background(), m, "", io.Discard)
	assert.ErrorContains(t, err, FileName+`:2:8: main: "." is package helpers`)
	assert.False(t, strings.HasPrefix(err.Error(), "/"), err.Error())
}

// TestRebuildFollowsTheSources: a rebuild starts from the last module, which
// go build keeps only while it is what the sources make: after an edit the
// module holds the new code, and an unchanged rebuild gives the same bytes.
func TestRebuildFollowsTheSources(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() { println(\"first-version-marker\") }\n")
	first := buildModule(t, m)
	require.Contains(t, string(first), "first-version-marker")

	require.NoError(t, os.WriteFile(filepath.Join(m.Dir, "main.go"), []byte("package main\n\nfunc main() { println(\"second-version-marker\") }\n"), 0o644))
	second := buildModule(t, m)
	assert.Contains(t, string(second), "second-version-marker")
	assert.NotContains(t, string(second), "first-version-marker", "the last module was kept over the edit")

	assert.Equal(t, second, buildModule(t, m))
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(m.WasmPath()), "*.tmp"))
	assert.Empty(t, leftovers)
}

// buildModule builds m into its default output and returns the module.
func buildModule(t *testing.T, m *Manifest) []byte {
	t.Helper()
	out, err := Build(context.Background(), m, "", io.Discard)
	require.NoError(t, err)
	module, err := os.ReadFile(out)
	require.NoError(t, err)
	return module
}

// TestRebuildReplacesADamagedModule: a module changed since its build (cut
// short, or a byte changed) keeps its build ID, which is all go build reads
// of the output it starts from: a rebuild must link the module afresh, not
// keep the damaged one for good.
func TestRebuildReplacesADamagedModule(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() { println(\"damage-probe\") }\n")
	good := buildModule(t, m)
	require.True(t, builtIntact(good), "a module go build just wrote is not seen as intact: every rebuild would link")
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0xff
	for name, damaged := range map[string][]byte{"cut short": good[:len(good)/2], "a byte changed": flipped} {
		require.NoError(t, os.WriteFile(m.WasmPath(), damaged, 0o755))
		rebuilt := buildModule(t, m)
		assert.True(t, bytes.Equal(good, rebuilt), "%s: the rebuild left %d bytes, not the %d of the module the sources make", name, len(rebuilt), len(good))
	}
}

// TestBuildRemovesALeftoverOfItsOwnPid: a wharf killed during a build
// leaves its directory, named by its pid; a later wharf that got the
// same pid (a container's wharf is pid 1 at every start) must not take it
// for its own: go build would keep a copy cut short there, build ID intact.
func TestBuildRemovesALeftoverOfItsOwnPid(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() { println(\"leftover-probe\") }\n")
	good := buildModule(t, m)
	dir := buildDir(m.WasmPath(), os.Getpid())
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(m.WasmPath())), good[:len(good)/2], 0o755))
	rebuilt := buildModule(t, m)
	assert.True(t, bytes.Equal(good, rebuilt), "the build left %d bytes, not the %d of the module the sources make", len(rebuilt), len(good))
}

// TestRebuildHasAFreshBuildsMode: a rebuild go build keeps the last module
// for (the sources unchanged) has the mode a fresh build gives, whatever
// the user made the last module's.
func TestRebuildHasAFreshBuildsMode(t *testing.T) {
	m := plugin(t, "package main\n\nfunc main() { println(\"mode-probe\") }\n")
	good := buildModule(t, m)
	fresh := fileMode(t, m.WasmPath())
	for _, perm := range []os.FileMode{0o600, 0o777} {
		require.NoError(t, os.Chmod(m.WasmPath(), perm))
		require.Equal(t, good, buildModule(t, m))
		assert.Equal(t, fresh, fileMode(t, m.WasmPath()), "the rebuild of a module chmodded %v", perm)
	}
}

// fileMode is the mode of the file at path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Mode()
}

// TestKilledBuildLeavesNoWorkDirectory: a wharf killed (SIGKILL) during a
// build takes go build with it, and the compile go build started (the
// first process of a PID namespace of its own, go build's end ends it):
// orphaned, it went on writing into the work directory go build left.
// The next build removes that directory, and none was made in TMPDIR.
func TestKilledBuildLeavesNoWorkDirectory(t *testing.T) {
	if path := os.Getenv("WHARF_TEST_KILLED_BUILD"); path != "" {
		buildUntilKilled(t, path, os.Getenv("WHARF_TEST_KILLED_BUILD_OUT"))
	}
	m := plugin(t, "package main\n\nconst dir = "+`"`+filepath.ToSlash(t.TempDir())+`"`+"\n\nfunc main() { println(dir) }\n")
	out := filepath.Join(t.TempDir(), "probe.wasm")
	// The child's go build runs its compile of package main through
	// toolexec, which holds it until the test lets it go on.
	gate := t.TempDir()
	toolexec := filepath.Join(gate, "toolexec")
	require.NoError(t, os.WriteFile(toolexec, []byte(`#!/bin/sh
case " $* " in *" -p main "*)
	: > `+gate+`/started
	i=0
	while [ ! -e `+gate+`/go-on ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
	"$@"
	status=$?
	: > `+gate+`/ended
	exit $status
esac
exec "$@"
`), 0o755))
	goOn := func() { os.WriteFile(filepath.Join(gate, "go-on"), nil, 0o644) }
	t.Cleanup(goOn)

	child := testutil.StartChildTest(t, "TestKilledBuildLeavesNoWorkDirectory",
		"WHARF_TEST_KILLED_BUILD="+m.Path, "WHARF_TEST_KILLED_BUILD_OUT="+out,
		"GOFLAGS="+os.Getenv("GOFLAGS")+" -toolexec="+toolexec)
	require.True(t, child.Stdout.Scan(), "the child test ended before it said its TMPDIR")
	tmpdir := child.Stdout.Text()
	require.Eventually(t, func() bool { _, err := os.Stat(filepath.Join(gate, "started")); return err == nil },
		2*time.Minute, 50*time.Millisecond, "the child's go build never compiled package main")
	child.Kill(t)
	assert.NotEmpty(t, workDirs(t, filepath.Dir(out)), "the killed build's go build worked elsewhere than next to its output")

	require.Eventually(t, func() bool { return len(processesWith(t, gate)) == 0 },
		10*time.Second, 50*time.Millisecond, "the killed build's compile runs on")
	goOn()
	_, err := Build(context.Background(), m, out, io.Discard)
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(gate, "ended"), "the killed build's compile went on")
	for _, dir := range []string{filepath.Dir(out), tmpdir} {
		assert.Empty(t, workDirs(t, dir), "go build work directories left under %s", dir)
	}
	left, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, "probe.wasm", left[0].Name())
}

// processesWith lists the pids of the processes whose command line holds
// s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var found []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			found = append(found, e.Name())
		}
	}
	return found
}

// buildUntilKilled is the child of TestKilledBuildLeavesNoWorkDirectory: it
// says its TMPDIR and builds the manifest at path into out until killed.
func buildUntilKilled(t *testing.T, path, out string) {
	fmt.Println(os.TempDir())
	m, err := Load(path)
	require.NoError(t, err)
	_, err = Build(context.Background(), m, out, os.Stderr)
	t.Fatalf("the build ended: %v", err)
}

// workDirs lists go build's work directories (go-build*) under dir.
func workDirs(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "go-build") {
			found = append(found, path)
			return filepath.SkipDir
		}
		return err
	}))
	return found
}

// BenchmarkRebuildUnchanged measures wharf build of examples/hello with its
// sources unchanged, against the same build into an empty directory (the
// baseline: go build links the module afresh there).
func BenchmarkRebuildUnchanged(b *testing.B) {
	m, err := Load(filepath.Join("..", "examples", "hello", FileName))
	require.NoError(b, err)
	var fresh, unchanged []float64
	for i := 0; i < b.N*testutil.BenchRounds; i++ {
		dir := b.TempDir()
		for _, times := range []*[]float64{&fresh, &unchanged} {
			start := time.Now()
			_, err := Build(context.Background(), m, dir, io.Discard)
			require.NoError(b, err)
			*times = append(*times, float64(time.Since(start).Milliseconds()))
		}
	}
	b.ReportMetric(testutil.Median(fresh), "fresh_ms")
	b.ReportMetric(testutil.Median(unchanged), "unchanged_ms")
	b.ReportMetric(testutil.Median(fresh)/testutil.Median(unchanged), "ratio")
}
