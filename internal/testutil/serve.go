package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	wharfOnce sync.Once
	wharfBin  string
	wharfErr  error
)

// BuildWharf builds the wharf command once per test binary, with the
// container agent next to it as `make build` puts it, and returns its path.
func BuildWharf(t testing.TB) string {
	t.Helper()
	wharfOnce.Do(func() {
		// A child test (StartChildTest) runs the wharf its parent built.
		if bin := os.Getenv(builtWharfEnv); bin != "" {
			wharfBin = bin
			return
		}
		dir, err := ScratchDir("bin")
		if err != nil {
			wharfErr = err
			return
		}
		wharfBin = filepath.Join(dir, "wharf")
		cmd := exec.Command("go", "build", "-o", wharfBin, "./cmd/wharf")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			wharfErr = err
			wharfBin = string(out)
			return
		}
		if _, err := BuildInit(dir); err != nil {
			wharfErr, wharfBin = err, ""
		}
	})
	if wharfErr != nil {
		t.Fatalf("building wharf: %v\n%s", wharfErr, wharfBin)
	}
	builtWharf.Store(wharfBin)
	return wharfBin
}

// builtWharfEnv names, in a child test's environment, the wharf binary
// (with its agent beside it) its parent built: linking another takes
// seconds.
const builtWharfEnv = "WHARF_TEST_BUILT_WHARF"

// builtWharf is the path BuildWharf returned, once it has.
var builtWharf atomic.Value

// Serve is a running `wharf serve` or `wharf dev` process.
type Serve struct {
	URL  string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	urls chan string // the URL it serves at, once it listens
	done chan struct{}
	err  error
}

var servingURL = regexp.MustCompile(`msg=serving .*url=(http://\S+)`)

// StartServe runs `wharf serve args...` (on Engine) and waits until it listens. The
// process is killed at cleanup if still running; its log is printed if the
// test failed.
func StartServe(t testing.TB, args ...string) *Serve {
	t.Helper()
	return start(t, nil, "serve", args)
}

// StartServeIn is StartServe inside the named network namespace.
func StartServeIn(t testing.TB, netns string, args ...string) *Serve {
	t.Helper()
	return StartServeUnder(t, []string{"ip", "netns", "exec", netns}, args...)
}

// StartServeUnder is StartServe run by a command that sets something up and
// execs it, so the pid is still wharf's: ip netns exec, prlimit, setpriv.
func StartServeUnder(t testing.TB, wrapper []string, args ...string) *Serve {
	t.Helper()
	return start(t, wrapper, "serve", args)
}

// StartDev runs `wharf dev args...` (on Engine) like StartServe.
func StartDev(t testing.TB, args ...string) *Serve {
	t.Helper()
	return start(t, nil, "dev", args)
}

func start(t testing.TB, wrapper []string, command string, args []string) *Serve {
	t.Helper()
	s := launch(t, wrapper, command, args)
	select {
	case s.URL = <-s.urls:
	case <-s.done:
		t.Fatalf("wharf %s exited before listening: %v\n%s", command, s.err, s.Logs())
	case <-time.After(10 * time.Minute): // a load may build an image first
		t.Fatalf("wharf %s did not start listening\n%s", command, s.Logs())
	}
	return s
}

// LaunchServe runs `wharf serve args...` (on Engine) like StartServe but
// returns at once, before it listens (URL is empty).
func LaunchServe(t testing.TB, args ...string) *Serve {
	t.Helper()
	return launch(t, nil, "serve", args)
}

func launch(t testing.TB, wrapper []string, command string, args []string) *Serve {
	t.Helper()
	argv := append(append(slices.Clone(wrapper), BuildWharf(t), command), engineArgs(args)...)
	s := &Serve{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	s.cmd.Dir = RepoRoot()
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = os.Stdout
	// A test binary that is killed (kill -9, or its -timeout) runs no
	// cleanup: SIGTERM makes wharf stop cleanly then, as in Stop. The
	// kernel sends it when the thread that started wharf ends, so that
	// thread stays locked to the goroutine that waits for wharf.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	urls := make(chan string, 1)
	s.urls = urls
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			if m := servingURL.FindStringSubmatch(line); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A clean stop, even after a failed test: wharf removes its
		// containers, networks and firewall rules on the way out.
		s.Stop(30 * time.Second)
		if t.Failed() {
			t.Logf("wharf %s log:\n%s", command, s.Logs())
		}
	})
	return s
}

// Pid is the process id of the wharf serve.
func (s *Serve) Pid() int { return s.cmd.Process.Pid }

// Logs returns what the process has logged so far.
func (s *Serve) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// WaitLog reports whether the process logs a line containing substr within
// timeout; lines reach the log asynchronously.
func (s *Serve) WaitLog(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.Logs(), substr) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// Stop sends SIGTERM and waits for a clean exit, returning its error.
func (s *Serve) Stop(timeout time.Duration) error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(timeout):
		s.Kill()
		return os.ErrDeadlineExceeded
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process to go.
func (s *Serve) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

var (
	buildkitdOnce sync.Once
	buildkitdErr  error
)

// cniPlugins are the Makefile's CNI_PLUGINS: the CNI plugins of the build
// steps' network.
var cniPlugins = []string{
	"github.com/containernetworking/plugins/plugins/main/ptp",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/meta/tuning",
}

// BuildBuildkitd builds buildkitd (a tool of this module) next to the wharf
// binary of BuildWharf, where wharf looks for it, and the CNI plugins of
// the build steps' network (tools too) in cni/ beside it, as `make build`
// does, once per test binary, and puts that directory first on PATH for
// in-process builds. It returns the directory.
func BuildBuildkitd(t testing.TB) string {
	t.Helper()
	dir := filepath.Dir(BuildWharf(t))
	buildkitdOnce.Do(func() {
		for _, args := range [][]string{
			{"-o", filepath.Join(dir, "buildkitd"), "github.com/moby/buildkit/cmd/buildkitd"},
			append([]string{"-o", filepath.Join(dir, "cni") + "/"}, cniPlugins...),
		} {
			cmd := exec.Command("go", append([]string{"build"}, args...)...)
			cmd.Dir = RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildkitdErr = fmt.Errorf("%v\n%s", err, out)
				return
			}
		}
	})
	if buildkitdErr != nil {
		t.Fatalf("building buildkitd: %v", buildkitdErr)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}
