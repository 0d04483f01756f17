package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/wharfhq/wharf/internal/agent/wire"
)

// BuildStatic compiles the Go package pkg (an import path) without cgo
// for this machine's Linux, so it runs in any container, into out.
func BuildStatic(pkg, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, msg)
	}
	return nil
}

// BuildInit compiles the container agent into dir as wharf-init (where
// wharf looks for it, next to its own binary) and returns its path.
func BuildInit(dir string) (string, error) {
	out := filepath.Join(dir, wire.InitName)
	return out, BuildStatic("github.com/wharfhq/wharf/cmd/wharf-init", out)
}

// UseInit builds the container agent into a scratch directory and points
// WHARF_INIT at it, for a TestMain of tests that start containers in the
// test process.
func UseInit() error {
	dir, err := ScratchDir("init")
	if err != nil {
		return err
	}
	path, err := BuildInit(dir)
	if err != nil {
		return err
	}
	return os.Setenv(wire.InitEnv, path)
}
