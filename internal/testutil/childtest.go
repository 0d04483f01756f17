package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/wharfhq/wharf/internal/dirlock"
)

// ChildTest is this test binary run again as a child process, for a test
// that kills it: it runs only the test named name (on this run's engine),
// with env added to its environment, and is killed, if still running,
// when the test ends. Its temporary directory is one of the test's, so
// what it keeps there (its scratch, its tests' TempDirs), which a kill
// leaves, goes when the test ends. Its BuildWharf gives the wharf this
// process built, if it has.
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
	if bin, ok := builtWharf.Load().(string); ok {
		cmd.Env = append(cmd.Env, builtWharfEnv+"="+bin)
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

// LockDir takes the lock a wharf holds on its data directory dir (package
// dirlock) until release is called or the test ends: a test that kills a child test with containers holds it
// while it looks at what the child left, which another test process
// starting meanwhile would otherwise reclaim (see containerd.ReclaimEnded).
func LockDir(t testing.TB, dir string) (release func()) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := dirlock.Wait(d); err != nil {
		t.Fatal(err)
	}
	return func() { d.Close() }
}

// KillChildTestWith runs the test name as a ChildTest given a new data
// directory in the environment variable dataEnv, kills it with SIGKILL as
// soon as it prints the line when, and waits until no process serves that
// directory any more (its containerd and buildkitd go with it). The
// directory stays locked (see LockDir) until release is called, so that
// no test process starting meanwhile reclaims what the child left before
// the test has looked at it.
func KillChildTestWith(t testing.TB, name, dataEnv, when string) (data string, release func()) {
	t.Helper()
	data = t.TempDir()
	release = LockDir(t, data)
	child := StartChildTest(t, name, dataEnv+"="+data)
	for child.Stdout.Scan() && child.Stdout.Text() != when {
	}
	if child.Stdout.Text() != when {
		t.Fatalf("the child test %s ended before it said %q", name, when)
	}
	child.Kill(t)
	deadline := time.Now().Add(30 * time.Second)
	for len(Processes("--config "+data+"/")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the killed test's containerd or buildkitd still runs: %v", Processes("--config "+data+"/"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return data, release
}
