package wharf_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestMakeBuildStampsItsOwnCommit: make build stamps wharf version with
// git describe of the wharf checkout it runs in, and with dev for a
// source tree that is no checkout of its own, even one unpacked inside
// another repository (which describes that repository's commit).
func TestMakeBuildStampsItsOwnCommit(t *testing.T) {
	makefile, err := os.ReadFile("Makefile")
	require.NoError(t, err)
	git := func(dir string, args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t",
			"-c", "commit.gpgsign=false"}, args...)...).CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.TrimSpace(string(out))
	}
	version := func(dir string) string {
		out, err := exec.Command("make", "-n", "-C", dir, "build").CombinedOutput()
		require.NoError(t, err, string(out))
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "main.version="); ok {
				return strings.Trim(v, `"`)
			}
		}
		t.Fatalf("no main.version in:\n%s", out)
		return ""
	}

	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "Makefile"), makefile, 0o644))
	assert.Equal(t, "dev", version(outside), "a source tree outside git")

	repo := t.TempDir()
	git(repo, "init", "-q")
	require.NoError(t, os.WriteFile(filepath.Join(repo, "Makefile"), makefile, 0o644))
	git(repo, "add", "Makefile")
	git(repo, "commit", "-qm", "c")
	assert.Equal(t, git(repo, "rev-parse", "--short", "HEAD"), version(repo), "a checkout of its own")

	nested := filepath.Join(repo, "third_party", "wharf")
	require.NoError(t, os.MkdirAll(nested, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(nested, "Makefile"), makefile, 0o644))
	assert.Equal(t, "dev", version(nested), "a source tree unpacked inside another repository")
}

// TestMakeDemoEngine: make demo serves on wharf's default engine, and on
// the one ENGINE names.
func TestMakeDemoEngine(t *testing.T) {
	serve := func(args ...string) string {
		out, err := exec.Command("make", append([]string{"-n", "demo", "LISTEN=127.0.0.1:18999"}, args...)...).CombinedOutput()
		require.NoError(t, err, string(out))
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, "./bin/wharf serve ") {
				return strings.TrimSpace(line)
			}
		}
		t.Fatalf("no wharf serve in:\n%s", out)
		return ""
	}
	assert.Equal(t, "./bin/wharf serve examples/sandbox --listen 127.0.0.1:18999", serve())
	assert.Equal(t, "./bin/wharf serve examples/sandbox --listen 127.0.0.1:18999 --engine wasmtime", serve("ENGINE=wasmtime"))
}

// TestLeftoversNamesContainerCgroupsLeftByTheTests: scripts/leftovers.sh,
// which make test runs after the tests, fails on a wharf container cgroup
// or shim that was not there before them, naming it, and not on one that
// was (nor on itself, whose argument then names a shim).
func TestLeftoversNamesContainerCgroupsLeftByTheTests(t *testing.T) {
	shim := exec.Command("bash", "-c", `exec -a "containerd-shim-runc-v2 -namespace wharf -id leftovers-test" sleep 60`)
	require.NoError(t, shim.Start())
	defer func() {
		shim.Process.Kill()
		shim.Wait()
	}()
	parent := "/sys/fs/cgroup/memory/wharf"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		parent = "/sys/fs/cgroup/wharf"
	}
	cgroup := filepath.Join(parent, "leftovers-test")
	require.NoError(t, os.MkdirAll(cgroup, 0o755), "needs root")
	defer os.Remove(cgroup)
	before, err := exec.Command("scripts/leftovers.sh", "--containers").Output()
	require.NoError(t, err)
	assert.Contains(t, string(before), "cgroup "+cgroup+"/\n")
	require.Eventually(t, func() bool {
		before, err = exec.Command("scripts/leftovers.sh", "--containers").Output()
		return err == nil && strings.Contains(string(before), "-id leftovers-test")
	}, 10*time.Second, 10*time.Millisecond, "the shim is listed")

	// Other tests' containers may come and go meanwhile.
	out, _ := exec.Command("scripts/leftovers.sh", string(before)).CombinedOutput()
	assert.NotContains(t, string(out), cgroup, "a cgroup there before the tests is not theirs")
	// Only this shim is asked about: other packages' tests start and end
	// shims of their own meanwhile. leftovers.sh's own command line names
	// it too.
	assert.NotContains(t, string(out), "-id leftovers-test", "a shim there before the tests is not theirs, nor is leftovers.sh")
	out, err = exec.Command("scripts/leftovers.sh", "").CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(out), "left behind by the tests: cgroup "+cgroup+"/\n")
	assert.Contains(t, string(out), "-id leftovers-test")
}

// TestLeftoversNamesRegisteredDataDirsOfEndedTests: leftovers.sh fails on
// a data directory that a test process which ended registered for
// reclaiming (internal/ephemeral) and that is still there, and not once
// it is gone.
func TestLeftoversNamesRegisteredDataDirsOfEndedTests(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	data := t.TempDir()
	// Locked, so that no test process running meanwhile reclaims it.
	testutil.LockDir(t, data)
	require.NoError(t, os.MkdirAll("/run/wharf-ephemeral", 0o700), "needs root")
	link := fmt.Sprintf("/run/wharf-ephemeral/%d-leftovers-test", ended.Process.Pid)
	require.NoError(t, os.Symlink(data, link))
	defer os.Remove(link)

	out, err := exec.Command("scripts/leftovers.sh", "").CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(out), fmt.Sprintf("left behind by ended test process %d: registered data directory %s\n", ended.Process.Pid, data))
	require.NoError(t, os.Remove(data))
	out, _ = exec.Command("scripts/leftovers.sh", "").CombinedOutput()
	assert.NotContains(t, string(out), data, "its directory is gone")
}
