package containerd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/client"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/containerd/agent"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// waitExit waits up to 10 s for the container's main process to exit.
func waitExit(t *testing.T, ctr *Container) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := ctr.Wait(ctx)
	require.NoError(t, err)
	return code
}

// TestAgentIsInit: with the agent as PID 1, a shell main process stops on
// SIGTERM (it ignores it as PID 1), its exit code is the container's, and
// orphans are reaped. Without it (init = false) the shell is PID 1 and
// ignores SIGTERM.
func TestAgentIsInit(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	const script = "sleep 3600; echo never"

	ctr := startBusybox(t, c, image, runcRoot, "init", script, true)
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"cat", "/proc/1/cmdline"}})
	assert.Equal(t, "/.wharf/init", strings.Split(out, "\x00")[0], "the agent is PID 1")
	// Orphans: each subshell exits at once, leaving its sleep to PID 1.
	code, _, _ := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "for i in 1 2 3 4 5; do (sleep 0.2 &); done"}})
	require.Equal(t, uint32(0), code)
	time.Sleep(600 * time.Millisecond)
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "cat /proc/[0-9]*/stat"}})
	assert.NotContains(t, out, ") Z ", "no zombie is left:\n%s", out)
	require.NoError(t, ctr.Signal(context.Background(), syscall.SIGTERM))
	assert.Equal(t, uint32(128+15), waitExit(t, ctr), "the shell ended by SIGTERM; its code is the container's")

	ctr = startBusybox(t, c, image, runcRoot, "init-exit", "exit 7", true)
	assert.Equal(t, uint32(7), waitExit(t, ctr))

	ctr = startBusybox(t, c, image, runcRoot, "no-init", script, false)
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"cat", "/proc/1/cmdline"}})
	assert.Equal(t, "sh", strings.Split(out, "\x00")[0], "without the agent the entrypoint is PID 1")
	require.NoError(t, ctr.Signal(context.Background(), syscall.SIGTERM))
	time.Sleep(500 * time.Millisecond)
	assert.False(t, ctr.Exited(), "a shell as PID 1 ignores SIGTERM")
}

// TestAgentCannotBeTraced: no process of the container, root or not, can
// ptrace the agent. Root in the container could (same uid, same
// capabilities, and seccomp allows ptrace), and an agent stopped by a
// tracer answers nothing: every exec, file and background call of wharf
// waited on it, the exec for good. The probe attaches and lets go.
func TestAgentCannotBeTraced(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "traced", "sleep 3600", true)
	for _, user := range []string{"", "app"} {
		code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"probe", "syscall", "ptrace"}, User: user})
		assert.Equal(t, uint32(1), code, "user %q: %s%s", user, out, errOut)
		assert.Contains(t, errOut, "operation not permitted", "user %q", user)
	}
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
	assert.Equal(t, "still serving\n", out)
}

// TestAgentRefusesContainerProcesses: a process of the container can
// neither drive the agent as root (the peer check) nor reach its socket as
// another user (the directory is root's).
func TestAgentRefusesContainerProcesses(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "peer", "sleep 3600", true)
	code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"probe", "agent", "/.wharf/agent.sock", "touch", "/tmp/driven"}})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Equal(t, "started=false error=the agent only serves wharf: the caller is inside the container\n", out)
	code, _, errOut = execOut(t, ctr, ExecSpec{Args: []string{"probe", "agent", "/.wharf/agent.sock", "touch", "/tmp/driven"}, User: "app"})
	assert.Equal(t, uint32(1), code)
	assert.Contains(t, errOut, "permission denied")
	code, _, _ = execOut(t, ctr, ExecSpec{Args: []string{"test", "-e", "/tmp/driven"}})
	assert.Equal(t, uint32(1), code, "nothing ran")
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
	assert.Equal(t, "still serving\n", out)
}

// TestAgentSocketReplacedInTheContainer: the container's root can replace
// the agent's socket. A listener of its own is refused before wharf sends
// it anything (the peer is not the container's init); a symbolic link to
// a socket of the host is not followed (wharf would have connected to the
// host's socket).
func TestAgentSocketReplacedInTheContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctx := context.Background()

	ctr := startBusybox(t, c, image, runcRoot, "impostor", "sleep 3600", true)
	out, outW := io.Pipe()
	imp, err := ctr.Exec(ctx, ExecSpec{Args: []string{"probe", "impostor", "/.wharf/agent.sock"}, Stdout: outW})
	require.NoError(t, err)
	lines := bufio.NewReader(out)
	first, err := lines.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "listening\n", first)
	_, err = ctr.Exec(ctx, ExecSpec{Args: []string{"true"}})
	assert.ErrorIs(t, err, agent.ErrImpostor)
	assert.ErrorContains(t, err, "the agent's socket is not served by the container's init process")
	_, err = ctr.Stat(ctx, "/", "")
	assert.ErrorIs(t, err, agent.ErrImpostor)
	require.NoError(t, imp.Kill(ctx, syscall.SIGKILL)) // on the exec's own connection
	outW.Close()
	rest, _ := io.ReadAll(lines)
	assert.Empty(t, string(rest), "the impostor got no request")

	hostSock := filepath.Join(t.TempDir(), "host.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: hostSock})
	require.NoError(t, err)
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	ctr = startBusybox(t, c, image, runcRoot, "socket-link", "sleep 3600", true)
	code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "rm /.wharf/agent.sock && ln -s " + hostSock + " /.wharf/agent.sock"}})
	require.Equal(t, uint32(0), code, errOut)
	_, err = ctr.Exec(ctx, ExecSpec{Args: []string{"true"}})
	assert.ErrorIs(t, err, agent.ErrNotASocket)
	assert.ErrorContains(t, err, "connecting to the agent: the agent's socket is not a socket")
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, accepted.Load(), "wharf did not connect to the host's socket")
}

// TestExecRefusesWhatTheKernelCannotTake: a NUL byte in an argument, the
// environment or the directory, one of them (or all together) over the
// kernel's length limit, a relative directory and an empty program name,
// are refused with what is wrong (the kernel says only "invalid argument"),
// through the agent and through runc, and the container serves on.
func TestExecRefusesWhatTheKernelCannotTake(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	for _, withInit := range []bool{true, false} {
		ctr := startBusybox(t, c, image, runcRoot, fmt.Sprint("badexec-", withInit), "sleep 3600", withInit)
		for _, bad := range []struct {
			spec ExecSpec
			msg  string
		}{
			{ExecSpec{Args: []string{"echo", "a\x00b"}}, `bad exec: argument "a\x00b" contains a NUL byte`},
			{ExecSpec{Args: []string{"env"}, Env: []string{"A=1\x002"}}, `bad exec: environment entry "A=1\x002" contains a NUL byte`},
			{ExecSpec{Args: []string{"pwd"}, Cwd: "/tmp\x00"}, `bad exec: cwd "/tmp\x00" contains a NUL byte`},
			{ExecSpec{Args: []string{"pwd"}, Cwd: "tmp"}, `bad exec: cwd must be an absolute path, got "tmp"`},
			{ExecSpec{Args: []string{""}}, "bad exec: the program name is empty"},
			{ExecSpec{Args: []string{"echo", strings.Repeat("a", 5<<20)}}, "bad exec: argument 1 is 5242880 bytes, over the kernel's limit of 131072"},
			{ExecSpec{Args: []string{"env"}, Env: []string{"A=" + strings.Repeat("a", 200<<10)}}, "bad exec: environment entry 0 is 204802 bytes, over the kernel's limit of 131072"},
			{ExecSpec{Args: []string{"pwd"}, Cwd: "/" + strings.Repeat("a", 5000)}, "bad exec: cwd is 5001 bytes, over the kernel's limit of 4095"},
		} {
			_, err := ctr.Exec(context.Background(), bad.spec)
			assert.ErrorIs(t, err, ErrBadExec)
			assert.EqualError(t, err, bad.msg)
			_, err = ctr.StartBackground(context.Background(), bad.spec, "")
			if withInit {
				assert.ErrorIs(t, err, ErrBadExec)
			}
		}
		// Arguments each under the limit that together are over the
		// kernel's total: refused with the sizes, not with "argument list
		// too long" (or the agent's message limit) after a start was tried,
		// and not quoted whole in the error.
		many := append([]string{"echo"}, slices.Repeat([]string{strings.Repeat("a", 1000)}, 5000)...)
		for _, spec := range []ExecSpec{{Args: many}, {Args: []string{"env"}, Env: many[1:]}} {
			_, err := ctr.Exec(context.Background(), spec)
			assert.ErrorIs(t, err, ErrBadExec)
			assert.Regexp(t, `^bad exec: the arguments and environment are [0-9]+ bytes, over the kernel's limit of [0-9]+$`, err.Error())
			_, err = ctr.StartBackground(context.Background(), spec, "")
			if withInit {
				assert.ErrorIs(t, err, ErrBadExec)
			}
		}
		if withInit {
			// With a stack limit of 32 MiB the kernel takes 6 MiB of
			// arguments, more than a request to the agent holds: refused
			// before it is sent, naming the limit.
			var old unix.Rlimit
			require.NoError(t, unix.Prlimit(int(ctr.Pid()), unix.RLIMIT_STACK, &unix.Rlimit{Cur: 32 << 20, Max: 32 << 20}, &old))
			huge := ExecSpec{Args: append([]string{"true"}, slices.Repeat([]string{strings.Repeat("a", 1000)}, 5000)...)}
			_, err := ctr.Exec(context.Background(), huge)
			assert.ErrorIs(t, err, ErrBadExec)
			assert.Regexp(t, fmt.Sprintf(`^exec \[true a+… \([0-9]+ bytes\): bad exec: the arguments and environment do not fit in a request to wharf-init: agent message too large: [0-9]+ bytes, over the limit of %d$`, wire.MaxMessage), err.Error())
			_, err = ctr.StartBackground(context.Background(), huge, "")
			assert.ErrorIs(t, err, ErrBadExec)
			assert.ErrorContains(t, err, fmt.Sprintf("over the limit of %d", wire.MaxMessage))
			require.NoError(t, unix.Prlimit(int(ctr.Pid()), unix.RLIMIT_STACK, &unix.Rlimit{Cur: old.Cur, Max: 32 << 20}, nil))
		}
		code, _, errOut := execOut(t, ctr, ExecSpec{Args: append([]string{"true"}, many[1:1900]...)})
		assert.Equal(t, uint32(0), code, "1.9 MB of arguments, under the limit, run: %s", errOut)
		_, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"/no/such", strings.Repeat("a", 100<<10)}})
		assert.ErrorContains(t, err, "exec [/no/such aaa")
		assert.Less(t, len(err.Error()), 500, "a long command line is cut in the error")
		_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
		assert.Equal(t, "still serving\n", out)
	}
}

// TestAgentCombinedKeepsOrder: stdout and stderr on one pipe keep the
// order the process wrote them in.
func TestAgentCombinedKeepsOrder(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "combined", "sleep 3600", true)
	r, w, err := hostcontainers.Pipe()
	require.NoError(t, err)
	p, err := ctr.Exec(context.Background(), ExecSpec{
		Args:   []string{"sh", "-c", `i=0; while [ $i -lt 5000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done`},
		Stdout: w, Stderr: w})
	require.NoError(t, err)
	w.Close()
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	r.Close()
	code, err := p.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint32(0), code)
	var want strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&want, "out %d\nerr %d\n", i, i)
	}
	assert.Equal(t, want.String(), string(got), "10,000 interleaved lines in order")
}

// TestAgentTerminal: `exec -t` gets a terminal the agent opened, which
// wharf can resize.
func TestAgentTerminal(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "tty", "sleep 3600", true)
	var out strings.Builder
	in, inW := io.Pipe()
	p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"sh", "-c", "read line; tty; stty size; echo got $line"},
		Terminal: true, Stdin: in, Stdout: &out})
	require.NoError(t, err)
	require.NoError(t, p.Resize(context.Background(), 123, 45))
	io.WriteString(inW, "typed\n")
	code, err := p.Wait(context.Background())
	require.NoError(t, err)
	inW.Close()
	assert.Equal(t, uint32(0), code)
	assert.Contains(t, out.String(), "/dev/pts/")
	assert.Contains(t, out.String(), "45 123")
	assert.Contains(t, out.String(), "got typed")
}

// TestAgentExecsEndWithTheContainer: an exec still running when the
// container stops is killed, and its Wait returns.
func TestAgentExecsEndWithTheContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "stops", "sleep 3600", true)
	p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"sleep", "3600"}})
	require.NoError(t, err)
	require.NoError(t, ctr.Signal(context.Background(), syscall.SIGTERM))
	waitExit(t, ctr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, err := p.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint32(128+9), code, "killed with its container")
}

// TestAgentLeavesNoDescriptors runs 200 concurrent execs in 20 containers
// and counts the descriptors of wharf (this process), the shims and the
// agents before and after.
func TestAgentLeavesNoDescriptors(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	var ctrs []*Container
	for i := range 20 {
		ctrs = append(ctrs, startBusybox(t, c, image, runcRoot, fmt.Sprintf("fds-%d", i), "sleep 3600", true))
	}
	runAll := func(perContainer int) {
		var wg sync.WaitGroup
		for _, ctr := range ctrs {
			for j := range perContainer {
				wg.Go(func() {
					spec := ExecSpec{Args: []string{"sh", "-c", "cat; echo err >&2"}, Stdin: strings.NewReader("in")}
					var out, errOut strings.Builder
					spec.Stdout, spec.Stderr = &out, &errOut
					if j%2 == 1 { // half with pipes of the caller's
						r, w, err := hostcontainers.Pipe()
						if !assert.NoError(t, err) {
							return
						}
						defer r.Close()
						go io.Copy(&out, r)
						spec.Stdout = w
						defer w.Close()
					}
					p, err := ctr.Exec(context.Background(), spec)
					if !assert.NoError(t, err) {
						return
					}
					code, err := p.Wait(context.Background())
					assert.NoError(t, err)
					assert.Equal(t, uint32(0), code)
					assert.Equal(t, "err\n", errOut.String())
				})
			}
		}
		wg.Wait()
	}
	runAll(1) // warm up: every lazily opened descriptor is open now
	// An agent closes its end of a connection just after wharf has seen
	// the exit, so counts settle a moment after the last Wait.
	settled := func() map[string]int {
		last := descriptorCounts(t, c, ctrs)
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			now := descriptorCounts(t, c, ctrs)
			if maps.Equal(now, last) {
				break
			}
			last = now
		}
		return last
	}
	before := settled()
	runAll(10)
	// A shim's own descriptors come and go (its connections to
	// containerd); none may be left by the execs.
	after := settled()
	for who, n := range after {
		assert.LessOrEqual(t, n, before[who], "%s has more descriptors after 200 execs", who)
	}
}

// descriptorCounts counts the open descriptors of this process, of the
// shims of ctrs and of their agents.
func descriptorCounts(t *testing.T, c *client.Client, ctrs []*Container) map[string]int {
	t.Helper()
	counts := map[string]int{"wharf": countFds(t, os.Getpid())}
	for i, ctr := range ctrs {
		counts["agent "+strconv.Itoa(i)] = countFds(t, int(ctr.Pid()))
		shim := parentPid(t, int(ctr.Pid()))
		counts["shim "+strconv.Itoa(i)] = countFds(t, shim)
	}
	return counts
}

func countFds(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(fds)
}

func parentPid(t *testing.T, pid int) int {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	ppid, err := strconv.Atoi(fields[1])
	require.NoError(t, err)
	return ppid
}

// TestSignalStopPausesTheContainerNotItsAgent: SIGSTOP from the object
// stops the container's processes but its init, the agent, which goes on
// serving execs; SIGCONT lets them go on. Sent to the init, SIGSTOP
// stopped the agent (it cannot catch it), and the next exec waited on it
// for good while the main process ran on.
func TestSignalStopPausesTheContainerNotItsAgent(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "stopped", "sleep 3600", true)
	ctx := context.Background()
	state := func(pid int) string {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(t, err)
		return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[0]
	}
	dir, _, err := processCgroup(int(ctr.Pid()), "pids")
	require.NoError(t, err)
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	require.NoError(t, err)
	var main int
	for _, f := range strings.Fields(string(procs)) {
		if pid, _ := strconv.Atoi(f); pid != int(ctr.Pid()) {
			main = pid
		}
	}
	require.NotZero(t, main, "the main process runs beside the init: %s", procs)

	assert.False(t, ctr.Paused())
	require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
	assert.Eventually(t, func() bool { return state(main) == "T" }, 5*time.Second, 10*time.Millisecond, "the main process stops")
	assert.NotEqual(t, "T", state(int(ctr.Pid())), "the agent does not")
	assert.True(t, ctr.Paused(), "wharf ps tells it")
	served := make(chan string, 1)
	go func() {
		_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "still serving"}})
		served <- out
	}()
	select {
	case out := <-served:
		assert.Equal(t, "still serving\n", out)
	case <-time.After(20 * time.Second):
		ctr.Signal(ctx, syscall.SIGCONT) // let the exec end before the test does
		t.Fatal("the exec waited on a stopped agent")
	}

	running, err := ctr.Exec(ctx, ExecSpec{Args: []string{"sleep", "60"}})
	require.NoError(t, err)
	assert.True(t, ctr.Paused(), "an exec started in the pause runs; the container is still paused")
	running.End()

	require.NoError(t, ctr.Signal(ctx, syscall.SIGCONT))
	assert.Eventually(t, func() bool { return state(main) != "T" }, 5*time.Second, 10*time.Millisecond, "the main process goes on")
	assert.False(t, ctr.Paused())
}

// TestSignalContAfterATermInThePause: a TERM sent to a paused container
// waits for the CONT, which lets it end the container; the CONT was sent
// all the same (it said the container was not running: the init's exit,
// which the CONT caused, came before the CONT reached the init).
func TestSignalContAfterATermInThePause(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctx := context.Background()
	for i := range 3 {
		ctr := startBusybox(t, c, image, runcRoot, fmt.Sprint("termpaused", i), "trap 'exit 0' TERM; while true; do sleep 3600 & wait; done", true)
		require.Eventually(t, func() bool { pids, _ := allButInit(int(ctr.Pid())); return len(pids) == 2 }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
		require.NoError(t, ctr.Signal(ctx, syscall.SIGTERM))
		assert.NoError(t, ctr.Signal(ctx, syscall.SIGCONT), "container %d", i)
		code, err := ctr.Wait(ctx)
		require.NoError(t, err)
		assert.Equal(t, uint32(0), code, "the TERM ended it")
	}
}

// TestExecStartEndsWithItsContext: an exec whose agent does not answer
// (stopped from the host here) fails when its start's context ends, which
// wharf bounds (host/containers.ExecStartTimeout), instead of waiting for
// good while it holds its instance.
func TestExecStartEndsWithItsContext(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "unanswered", "sleep 3600", true)
	require.NoError(t, syscall.Kill(int(ctr.Pid()), syscall.SIGSTOP))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ctr.Exec(ctx, ExecSpec{Args: []string{"true"}})
	require.NoError(t, syscall.Kill(int(ctr.Pid()), syscall.SIGCONT))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "answering again"}})
	assert.Equal(t, "answering again\n", out)
}

// TestRemovedAgentSocketFailsAtOnce: once the agent has answered, a
// socket that is missing was removed (root in the container can): an exec
// fails at once, where it retried for 5 s as if the agent were starting,
// holding its instance each time.
func TestRemovedAgentSocketFailsAtOnce(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "nosocket", "sleep 3600", true)
	code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"rm", "/.wharf/agent.sock"}})
	require.Equal(t, uint32(0), code, errOut)
	start := time.Now()
	_, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"true"}})
	assert.ErrorIs(t, err, syscall.ENOENT)
	assert.Less(t, time.Since(start), time.Second)
}

// TestTerminateReachesAPausedContainer: a container its object paused
// (SIGSTOP) exits on Terminate (a stop, a shutdown) at once: the SIGTERM
// stayed pending in the stopped processes until the grace ran out and the
// container was killed.
func TestTerminateReachesAPausedContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "paused", "sleep 3600", true)
	ctx := context.Background()
	require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
	require.NoError(t, ctr.Terminate(ctx))
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	code, err := ctr.Wait(waitCtx)
	require.NoError(t, err, "the paused container did not exit on its SIGTERM")
	assert.Equal(t, uint32(143), code)
}

// TestSignalAnExitedContainer: SIGSTOP and SIGCONT to a container that has
// exited say that it is not found, as other signals do, not that its init's
// /proc entry is missing (wharf stop failed so when the container exited on
// its SIGTERM before the SIGCONT after it).
func TestSignalAnExitedContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "gone", "true", true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ctr.Wait(ctx)
	require.NoError(t, err)
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGCONT, syscall.SIGTERM} {
		err := ctr.Signal(ctx, sig)
		assert.True(t, errdefs.IsNotFound(err), "%v: %v", sig, err)
		assert.ErrorIs(t, err, hostcontainers.ErrExitedMeanwhile, "the object is told the container is not running")
	}
}

// TestAgentCallsOfAnExitedContainer: a file or background process call
// that meets the container's exit (its agent gone) is ErrExitedMeanwhile,
// as an exec is, so that the object is told the container is not running;
// it was the agent's connection error ("dial unix …: connection
// refused"), an I/O failure.
func TestAgentCallsOfAnExitedContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "gone-agent", "sleep 3600", true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ctr.Stat(ctx, "/etc/passwd", "")
	require.NoError(t, err, "the agent serves while the container runs")
	require.NoError(t, ctr.Signal(ctx, syscall.SIGKILL))
	_, err = ctr.Wait(ctx)
	require.NoError(t, err)
	calls := map[string]func() error{
		"stat":      func() error { _, err := ctr.Stat(ctx, "/etc/passwd", ""); return err },
		"stat as":   func() error { _, err := ctr.Stat(ctx, "/etc/passwd", "root"); return err },
		"list":      func() error { _, err := ctr.ListDir(ctx, "/", ""); return err },
		"read":      func() error { _, err := ctr.OpenFile(ctx, "/etc/passwd", "", false, 0); return err },
		"mkdir":     func() error { return ctr.MkdirAll(ctx, "/tmp/d", "") },
		"watch":     func() error { _, err := ctr.Watch(ctx, "/tmp", ""); return err },
		"processes": func() error { _, err := ctr.Backgrounds(ctx); return err },
		"process":   func() error { _, err := ctr.Background(ctx, "p"); return err },
		"kill":      func() error { return ctr.KillBackground(ctx, "p", 15) },
		"logs":      func() error { _, _, err := ctr.BackgroundLogs(ctx, "p", true); return err },
		"start": func() error {
			_, err := ctr.StartBackground(ctx, ExecSpec{Args: []string{"true"}}, "p")
			return err
		},
	}
	for name, call := range calls {
		assert.ErrorIs(t, call(), hostcontainers.ErrExitedMeanwhile, name)
	}
}

// TestSignalStopPausesForkingProcesses: SIGSTOP stops every process but
// the init of a container whose processes fork all the time, under its
// CPU quota, also right after a SIGCONT. Each pause is checked from the
// host: every process in the container's cgroup but the init is stopped
// (T) or has exited (Z). A child forked between the read of the cgroup's
// processes and its parent's SIGSTOP got none and ran on; and the init
// passed on the SIGCONT before the pause (containerd's kill of it), so
// late that it woke the main process from the pause.
func TestSignalStopPausesForkingProcesses(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	// Each loop forks a busy subshell and kills it: one that escaped a
	// pause runs on (R) until it ends.
	const loop = "while :; do (while :; do :; done) & kill $!; wait; done"
	ctr := startBusybox(t, c, image, runcRoot, "forking", "("+loop+") & ("+loop+") & "+loop, true)
	ctx := context.Background()
	dir, _, err := processCgroup(int(ctr.Pid()), "pids")
	require.NoError(t, err)
	running := func() []string {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		require.NoError(t, err)
		var run []string
		for _, f := range strings.Fields(string(procs)) {
			pid, _ := strconv.Atoi(f)
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if pid == int(ctr.Pid()) || err != nil { // the init, or one that exited
				continue
			}
			if state := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[0]; state != "T" && state != "Z" {
				status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				run = append(run, fmt.Sprintf("%s%s", stat, status))
			}
		}
		return run
	}
	escapes := 0
	const pauses = 20
	for i := range pauses {
		time.Sleep(time.Duration(i%4*20) * time.Millisecond) // none: the pause follows the SIGCONT at once
		require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
		var run []string
		for range 50 { // a process under its quota can take a period to stop
			time.Sleep(20 * time.Millisecond)
			if run = running(); len(run) == 0 {
				break
			}
		}
		if len(run) > 0 {
			escapes++
			t.Logf("pause %d: %d processes run on, the first:\n%s", i, len(run), run[0])
		}
		require.NoError(t, ctr.Signal(ctx, syscall.SIGCONT))
	}
	assert.Zero(t, escapes, "pauses that some process escaped, of %d", pauses)
}

// TestSignalStopWhileExecsStart: a pause while the agent starts execs
// holds none of the execs after it. Its child that had not executed its
// program yet (the agent's binary still, in a vfork) was stopped there:
// the agent waited on it, and every exec after it, until a SIGCONT.
func TestSignalStopWhileExecsStart(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "execstart", "sleep 3600", true)
	ctx := context.Background()
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if p, err := ctr.Exec(ctx, ExecSpec{Args: []string{"true"}}); err == nil {
				p.Wait(ctx)
			}
		}
	}()
	held := 0
	const pauses = 30
	for i := range pauses {
		time.Sleep(time.Duration(i%3*10) * time.Millisecond)
		require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
		execCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if p, err := ctr.Exec(execCtx, ExecSpec{Args: []string{"true"}}); err != nil {
			held++
			t.Logf("pause %d: %v", i, err)
		} else {
			p.Wait(ctx)
		}
		cancel()
		require.NoError(t, ctr.Signal(ctx, syscall.SIGCONT))
	}
	stop.Store(true)
	<-done
	assert.Zero(t, held, "pauses that held a new exec, of %d", pauses)
}
