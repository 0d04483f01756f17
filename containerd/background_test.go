package containerd

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/agent/wire"
)

// TestBackgroundProcesses drives background processes through the agent
// of a real container: output kept in order from the start or followed
// from now, a buffer that overwrites what is older than abi.BackgroundOutputBuffer and
// says how much, kill of a process group, wait, the errors; afterwards
// no descriptor is left in wharf, the shim or the agent.
func TestBackgroundProcesses(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "bg", "sleep 3600", true)
	ctx := context.Background()
	settled := func() map[string]int {
		last := descriptorCounts(t, c, []*Container{ctr})
		for range 50 {
			time.Sleep(100 * time.Millisecond)
			now := descriptorCounts(t, c, []*Container{ctr})
			if maps.Equal(now, last) {
				break
			}
			last = now
		}
		return last
	}
	// Warm up: the agent's and wharf's lazily opened descriptors.
	_, err := ctr.StartBackground(ctx, ExecSpec{Args: []string{"true"}}, "warm")
	require.NoError(t, err)
	_, err = ctr.WaitBackground(ctx, "warm")
	require.NoError(t, err)
	before := settled()

	// A server that prints a line per request-like tick, in both streams.
	info, err := ctr.StartBackground(ctx, ExecSpec{Args: []string{"sh", "-c",
		`echo "starting $MODE"; i=0; while true; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.05; done`},
		Env: []string{"MODE=dev"}}, "server")
	require.NoError(t, err)
	assert.Equal(t, "server", info.ID)
	assert.Equal(t, "running", info.Status)
	assert.Positive(t, info.Pid)
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"sleep", "1"}}, "server")
	assert.EqualError(t, err, `background process "server" is already running`)

	logs, dropped, err := ctr.BackgroundLogs(ctx, "server", true)
	require.NoError(t, err)
	assert.Zero(t, dropped)
	lines := readLines(t, logs, 7)
	assert.Equal(t, []string{"starting dev", "out 1", "err 1", "out 2", "err 2", "out 3", "err 3"}, lines,
		"from the start, stdout and stderr in the order written")
	logs.Close()

	now, _, err := ctr.BackgroundLogs(ctx, "server", false)
	require.NoError(t, err)
	first := readLines(t, now, 1)[0]
	assert.NotEqual(t, "starting dev", first, "from now: not what was written before")

	list, err := ctr.Backgrounds(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{"warm", "server"}, []string{list[0].ID, list[1].ID})
	assert.Equal(t, "completed", list[0].Status)
	assert.Equal(t, 0, *list[0].ExitCode)

	require.NoError(t, ctr.KillBackground(ctx, "server", int(syscall.SIGTERM)))
	done, err := ctr.WaitBackground(ctx, "server")
	require.NoError(t, err)
	assert.Equal(t, "killed", done.Status)
	assert.Equal(t, 128+15, *done.ExitCode)
	rest, err := io.ReadAll(now)
	require.NoError(t, err, "the followed stream ends when the process group is gone")
	now.Close()
	assert.NotContains(t, string(rest), "starting")
	// The group's sleep may be a zombie for a moment, until wharf-init
	// reaps it (its shell died first).
	var sleeps string
	assert.Eventually(t, func() bool {
		_, sleeps, _ = execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "ps -o comm | grep -c sleep"}})
		return sleeps == "1\n"
	}, 5*time.Second, 50*time.Millisecond, "the kill reached the group: only the main sleep is left")

	// A process writing twice the buffer: from the start, what was
	// overwritten is counted, and the rest ends with the last line.
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"sh", "-c", "seq 1 300000"}}, "chatty")
	require.NoError(t, err)
	_, err = ctr.WaitBackground(ctx, "chatty")
	require.NoError(t, err)
	full, dropped, err := ctr.BackgroundLogs(ctx, "chatty", true)
	require.NoError(t, err)
	out, err := io.ReadAll(full)
	require.NoError(t, err)
	full.Close()
	total := 0
	for i := 1; i <= 300000; i++ {
		total += len(fmt.Sprint(i)) + 1
	}
	assert.Equal(t, abi.BackgroundOutputBuffer, len(out))
	assert.Equal(t, int64(total-abi.BackgroundOutputBuffer), dropped)
	assert.True(t, strings.HasSuffix(string(out), "\n299999\n300000\n"))

	// A shell that leaves a child behind has exited, but its group lives
	// on in the child, which holds the output: a kill still reaches it,
	// and then the stream ends.
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"sh", "-c", "sleep 1000 & echo started"}}, "orphan")
	require.NoError(t, err)
	parent, err := ctr.WaitBackground(ctx, "orphan")
	require.NoError(t, err)
	assert.Equal(t, "completed", parent.Status)
	orphanLogs, _, err := ctr.BackgroundLogs(ctx, "orphan", true)
	require.NoError(t, err)
	assert.Equal(t, []string{"started"}, readLines(t, orphanLogs, 1))
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"true"}}, "orphan")
	assert.EqualError(t, err, `background process "orphan" has exited, but processes it left behind still hold its output: kill it first`,
		"it is not replaced, which would leave its child out of reach")
	require.NoError(t, ctr.KillBackground(ctx, "orphan", int(syscall.SIGKILL)))
	rest, err = io.ReadAll(orphanLogs)
	require.NoError(t, err, "the stream ends once the group is gone")
	orphanLogs.Close()
	assert.Empty(t, string(rest))
	_, left, _ := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "ps -o args | grep -c '^sleep 1000'"}})
	assert.Equal(t, "0\n", left, "the orphan was killed")
	gone, err := ctr.Background(ctx, "orphan")
	require.NoError(t, err)
	assert.Equal(t, "completed", gone.Status, "the recorded exit of the process itself stands")
	assert.EqualError(t, ctr.KillBackground(ctx, "orphan", 15), `background process "orphan" has exited`)

	// Errors.
	_, err = ctr.Background(ctx, "nope")
	assert.EqualError(t, err, `no background process "nope"`)
	assert.EqualError(t, ctr.KillBackground(ctx, "chatty", 15), `background process "chatty" has exited`)
	assert.EqualError(t, ctr.KillBackground(ctx, "chatty", 65), `signal must be from 1 to 64, got 65`)
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"true"}}, "bad id!")
	assert.ErrorContains(t, err, `a process id is 1 to 64 letters`)
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"no-such-program"}}, "")
	assert.ErrorContains(t, err, "executable file not found")
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"true"}, User: "ghost"}, "")
	assert.ErrorIs(t, err, ErrUnknownUser)

	after := settled()
	for who, n := range after {
		assert.LessOrEqual(t, n, before[who], "%s has more descriptors after the background processes", who)
	}

	// The processes belong to the container: they end with it.
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"sleep", "3600"}}, "long")
	require.NoError(t, err)
	wait := make(chan error, 1)
	go func() { _, err := ctr.WaitBackground(ctx, "long"); wait <- err }()
	require.NoError(t, ctr.Signal(ctx, syscall.SIGTERM))
	waitExit(t, ctr)
	select {
	case err := <-wait:
		assert.ErrorContains(t, err, `waiting for background process "long": the container's main process exited`)
		assert.ErrorIs(t, err, hostcontainers.ErrExitedMeanwhile, "told as the container's exit, which the guest gets as not running")
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end with the container")
	}
}

// TestKillBackgroundReachesAPausedContainer: a SIGTERM kill of a
// background process of a container its object paused (SIGSTOP) ends it
// at once, as a SIGTERM, where the signal stayed pending in the stopped
// process until a SIGKILL (the kill's grace in the SDK's users) or a
// SIGCONT. The rest of the container stays paused.
func TestKillBackgroundReachesAPausedContainer(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "bgpaused", "sleep 3600", true)
	ctx := context.Background()
	_, err := ctr.StartBackground(ctx, ExecSpec{Args: []string{"sleep", "3600"}}, "server")
	require.NoError(t, err)
	require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
	defer ctr.Signal(ctx, syscall.SIGCONT)
	require.NoError(t, ctr.KillBackground(ctx, "server", int(syscall.SIGTERM)))
	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	done, err := ctr.WaitBackground(waitCtx, "server")
	require.NoError(t, err, "the paused background process did not exit on its SIGTERM")
	assert.Equal(t, "killed", done.Status)
	assert.Equal(t, 128+int(syscall.SIGTERM), *done.ExitCode, "ended by the SIGTERM")
	_, ps, _ := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "ps -o stat,args | grep '^T.*sleep 3600' | wc -l"}})
	assert.Equal(t, "1\n", ps, "the main process stays paused")
}

// TestBackgroundStatusFollowsPause: a background process of a paused
// container (SIGSTOP) is told as paused, by Background and Backgrounds,
// and as running again once the container goes on (SIGCONT); one started
// during the pause runs, and so is running. A SIGSTOP of the process
// alone pauses it too.
func TestBackgroundStatusFollowsPause(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "bgstatus", "sleep 3600", true)
	ctx := context.Background()
	status := func(id string) string {
		info, err := ctr.Background(ctx, id)
		require.NoError(t, err)
		return info.Status
	}
	eventually := func(id, want, why string) {
		t.Helper()
		assert.Eventually(t, func() bool { return status(id) == want }, 3*time.Second, 20*time.Millisecond, "%s: %s (status %s)", id, why, status(id))
	}
	_, err := ctr.StartBackground(ctx, ExecSpec{Args: []string{"sh", "-c", "while :; do sleep 0.05; done"}}, "server")
	require.NoError(t, err)
	assert.Equal(t, "running", status("server"))

	require.NoError(t, ctr.Signal(ctx, syscall.SIGSTOP))
	defer ctr.Signal(ctx, syscall.SIGCONT)
	eventually("server", "paused", "its container is paused")
	_, err = ctr.StartBackground(ctx, ExecSpec{Args: []string{"sleep", "3600"}}, "late")
	require.NoError(t, err)
	assert.Equal(t, "running", status("late"), "started during the pause, it runs")
	list, err := ctr.Backgrounds(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{"paused", "running"}, []string{list[0].Status, list[1].Status}, "the list says so too")

	require.NoError(t, ctr.Signal(ctx, syscall.SIGCONT))
	eventually("server", "running", "its container went on")

	require.NoError(t, ctr.KillBackground(ctx, "late", int(syscall.SIGSTOP)))
	eventually("late", "paused", "stopped by a signal of its own")
	require.NoError(t, ctr.KillBackground(ctx, "late", int(syscall.SIGCONT)))
	eventually("late", "running", "it went on")

	for _, id := range []string{"server", "late"} {
		require.NoError(t, ctr.KillBackground(ctx, id, int(syscall.SIGKILL)))
		done, err := ctr.WaitBackground(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, "killed", done.Status, id)
	}
}

// readLines reads n lines from r.
func readLines(t *testing.T, r io.Reader, n int) []string {
	t.Helper()
	var lines []string
	var line []byte
	b := make([]byte, 1)
	for len(lines) < n {
		_, err := r.Read(b)
		require.NoError(t, err)
		if b[0] == '\n' {
			lines = append(lines, string(line))
			line = nil
			continue
		}
		line = append(line, b[0])
	}
	return lines
}

// TestBackgroundListOfLongCommands: the list of background processes
// whose commands together are more than one answer of the agent holds
// (wire.MaxMessage; here three of 1.9 MiB each) comes whole, in order,
// each command as started. The agent could not send the list and hung up:
// wharf said "the container stopped", and the guest got IO.
func TestBackgroundListOfLongCommands(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "bglong", "sleep 3600", true)
	ctx := context.Background()
	var commands [][]string
	for i := range 3 {
		args := []string{"sh", "-c", "exec sleep 3600"}
		for j := range 15 { // each within the kernel's 128 KiB, all within its 2 MiB
			args = append(args, fmt.Sprintf("%d%s", i, strings.Repeat(string(rune('a'+j)), 127<<10)))
		}
		_, err := ctr.StartBackground(ctx, ExecSpec{Args: args}, fmt.Sprintf("long-%d", i))
		require.NoError(t, err)
		commands = append(commands, args)
	}
	list, err := ctr.Backgrounds(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	for i, p := range list {
		assert.Equal(t, fmt.Sprintf("long-%d", i), p.ID)
		assert.True(t, slices.Equal(commands[i], p.Command), "the command of long-%d, as started", i)
	}
}

// TestBackgroundDescriptionTooLargeSaysSo: the answer to a wait for a
// background process whose description is larger than an answer of the
// agent may be is a refusal, ErrLimit, saying why, and the container
// serves on. The process's command is as large as a request to the agent
// may be (found by halving: the largest command wharf sends), and what
// the answer carries besides (its id, status, exit code twice and times)
// is more than the request did (the least environment). The agent hung up
// instead: wharf said "the container stopped".
func TestBackgroundDescriptionTooLargeSaysSo(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "bgedge", "sleep 3600", true)
	ctx := context.Background()
	env := []string{"PATH=", "IMAGE_VAR=", "FROM_START=", "HOME="} // the least environment the image's and the container's leave (and HOME, or the user's is added)
	start := func(n int) (ProcessInfo, error) {
		// No PATH to search; a code of 3 digits, twice in the answer.
		args := []string{"/bin/sh", "-c", "exit 255"}
		for range 6 { // 6 bytes of JSON a byte (\u0001), within the kernel's limits
			args = append(args, strings.Repeat("\x01", 113<<10))
		}
		return ctr.StartBackground(ctx, ExecSpec{Args: append(args, strings.Repeat("a", n)), Env: env}, "")
	}
	edge, err := start(0)
	require.NoError(t, err)
	lo, hi := 0, 64<<10 // sent, and too large to send
	_, err = start(hi)
	require.ErrorIs(t, err, ErrBadExec)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if info, err := start(mid); err == nil {
			lo, edge = mid, info
		} else {
			require.ErrorIs(t, err, ErrBadExec)
			hi = mid
		}
	}
	_, err = ctr.WaitBackground(ctx, edge.ID)
	require.ErrorIs(t, err, ErrBackgroundLimit, "wait")
	assert.ErrorContains(t, err, "the answer does not fit in one message: agent message too large: ")
	assert.ErrorContains(t, err, fmt.Sprintf(" bytes, over the limit of %d", wire.MaxMessage))
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"echo", "alive"}})
	assert.Equal(t, "alive\n", out, "the container serves on")
}
