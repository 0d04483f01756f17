package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// RepoRoot returns the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// BuildGuest compiles the Go package at pkgDir (relative to the repository
// root), a WASI command, for GOOS=wasip1 GOARCH=wasm, once per test
// binary, and returns the .wasm path.
func BuildGuest(t testing.TB, pkgDir string) string {
	t.Helper()
	return buildWasm(t, pkgDir)
}

// BuildGuestWith compiles the plugin at pkgDir with extra go build flags
// (e.g. -ldflags=-X main.v=2), as a distinct build.
func BuildGuestWith(t testing.TB, pkgDir string, flags ...string) string {
	t.Helper()
	return buildWasm(t, pkgDir, flags...)
}

// BuildReactor compiles the Go package at pkgDir with -buildmode=c-shared:
// a module of exports for engine benchmarks, not a plugin.
func BuildReactor(t testing.TB, pkgDir string) string {
	t.Helper()
	return buildWasm(t, pkgDir, "-buildmode=c-shared")
}

func buildWasm(t testing.TB, pkgDir string, flags ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := strings.Join(append([]string{pkgDir}, flags...), " ")
	if p, ok := buildCache[key]; ok {
		return p
	}
	dir, err := ScratchDir("guest")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, strings.ReplaceAll(pkgDir, "/", "_")+".wasm")
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, ".")...)
	cmd.Dir = filepath.Join(RepoRoot(), pkgDir)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building guest %s: %v\n%s", pkgDir, err, b)
	}
	buildCache[key] = out
	return out
}

// WriteFile writes data to a new file in t's temp dir and returns its path.
func WriteFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
