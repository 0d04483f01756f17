package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// ChildTest is this test binary run again as a child process, for a test
// that kills it: it runs only the test named name (on this run's engine),
// with env added to its environment, and is killed, if still running,
// when the test ends. Its temporary directory is one of the test's, so
// what it keeps there (its scratch, its tests' TempDirs), which a kill
// leaves, goes when the test ends.
type ChildTest struct {
	Cmd *exec.Cmd
	// Stdout reads the child's standard output, line by line.
	Stdout *bufio.Scanner
}

// StartChildTest starts the ChildTest running the test name.
func StartChildTest(t testing.TB, name string, env ...string) *ChildTest {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), append(env, "TMPDIR="+t.TempDir())...)
	if Engine != "" {
		cmd.Env = append(cmd.Env, "WHARF_TEST_ENGINES="+Engine)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &ChildTest{Cmd: cmd, Stdout: bufio.NewScanner(out)}
}

// Kill kills the child with SIGKILL, which leaves it no chance to clean
// up, and waits for it.
func (c *ChildTest) Kill(t testing.TB) {
	t.Helper()
	go func() { // it may write on (wharf's own output can be this pipe too)
		for c.Stdout.Scan() {
		}
	}()
	if err := c.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.Cmd.Wait()
}

// LockDir takes the lock a wharf holds on its data directory dir (a flock
// of the directory, see host.LockDataDir) until release is called or the
// test ends: a test that kills a child test with containers holds it
// while it looks at what the child left, which another test process
// starting meanwhile would otherwise reclaim (see containerd.ReclaimEnded).
func LockDir(t testing.TB, dir string) (release func()) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { d.Close() }
}
