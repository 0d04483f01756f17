package containerd

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// exitedAfter is a container whose main process exited with code after the
// object sent it signals, in that order.
func exitedAfter(code uint32, signals ...syscall.Signal) *Managed {
	c := &Container{exited: make(chan struct{}), code: code}
	close(c.exited)
	mc := &Managed{Container: c, Class: "Box", Object: "b"}
	for _, sig := range signals {
		mc.NoteObjectSignal(sig)
	}
	return mc
}

// TestExitCreditedToAnyOfTheObjectsSignals: an exit is the object's doing
// when it came of any signal the object sent, not only of the last one. An
// object that sends SIGTERM and then SIGKILL (the usual stop with a grace)
// to a process that died of the SIGTERM (143), or SIGTERM then SIGHUP to
// one that exited cleanly, stopped it; it was logged as a failure
// ('exited unexpectedly, after SIGKILL from the object') and ps -a showed
// no cause.
func TestExitCreditedToAnyOfTheObjectsSignals(t *testing.T) {
	for _, c := range []struct {
		code    uint32
		signals []syscall.Signal
		want    string
	}{
		{143, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, "SIGTERM from the object"},
		{0, []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP}, "SIGTERM from the object"},
		{0, []syscall.Signal{syscall.SIGINT, syscall.SIGUSR1}, "SIGINT from the object"},
		{137, []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM}, "SIGKILL from the object"},
		{129, []syscall.Signal{syscall.SIGHUP}, "SIGHUP from the object"},
		{0, []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM}, "SIGTERM from the object"},
		{3, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, ""}, // it failed by itself
		{137, []syscall.Signal{syscall.SIGTERM}, ""},                // killed, not by the object
		{0, []syscall.Signal{syscall.SIGHUP}, ""},
	} {
		assert.Equal(t, c.want, exitedAfter(c.code, c.signals...).StopCause(), "code %d after %v", c.code, c.signals)
	}

	var log testutil.LogBuffer
	l := newLifecycle(slog.New(slog.NewTextHandler(&log, nil)), nil)
	l.watch(exitedAfter(143, syscall.SIGTERM, syscall.SIGKILL))
	assert.Eventually(t, func() bool { return log.String() != "" }, 5*time.Second, 10*time.Millisecond)
	assert.Regexp(t, `container:Box#b stop" class=Box object=b exit_code=143 reason="SIGTERM from the object"`, log.String())
	assert.NotContains(t, log.String(), "unexpectedly")
}

// TestFailureSaysHowLongAfterTheObjectsSignal: a process that fails by
// itself after the object signalled it is logged as a failure that says how
// long after that signal it came, so a SIGHUP of an hour ago does not read
// as its cause.
func TestFailureSaysHowLongAfterTheObjectsSignal(t *testing.T) {
	mc := exitedAfter(3, syscall.SIGHUP)
	mc.objectSignalAt = time.Now().Add(-2 * time.Hour)
	var log testutil.LogBuffer
	l := newLifecycle(slog.New(slog.NewTextHandler(&log, nil)), nil)
	l.watch(mc)
	assert.Eventually(t, func() bool { return log.String() != "" }, 5*time.Second, 10*time.Millisecond)
	assert.Regexp(t, `container:Box#b error" class=Box object=b exit_code=3 reason="exited unexpectedly, 2h0m0s after SIGHUP from the object"`, log.String())
}

// TestInterruptedStopOwnsOnlyTheExitOfItsSigterm: an operator's stop that
// was interrupted during its grace (Ctrl-C on wharf stop) sent SIGTERM and
// nothing more. A later exit that came of the SIGTERM (died of it, or a
// clean exit) is the operator's doing; one that did not (a failure, a kill
// by someone else) is not: it was logged as "stopped by the operator".
func TestInterruptedStopOwnsOnlyTheExitOfItsSigterm(t *testing.T) {
	for code, want := range map[uint32]string{143: "SIGTERM from the operator", 0: "SIGTERM from the operator", 3: "", 137: ""} {
		mc := exitedAfter(code)
		mc.markStopRequested("stopped by the operator")
		mc.abandonStop()
		assert.Equal(t, want, mc.StopCause(), "exit %d after an interrupted stop", code)
	}
	mc := exitedAfter(3)
	mc.markStopRequested("stopped by the operator")
	assert.Equal(t, "stopped by the operator", mc.StopCause(), "a stop that was not interrupted owns the exit")
}

// TestObjectsSignalAfterAnInterruptedStopOwnsTheExit: a signal the object
// sends after an operator's interrupted stop is the later word: an exit
// that came of it is the object's doing (a SIGTERM the process no longer
// ignores: 143), and a clean exit after it (its SIGHUP trap) is not
// credited to the operator's SIGTERM, which the process ignored. Both were
// logged as "SIGTERM from the operator".
func TestObjectsSignalAfterAnInterruptedStopOwnsTheExit(t *testing.T) {
	for _, c := range []struct {
		code uint32
		sig  syscall.Signal
		want string
	}{
		{143, syscall.SIGTERM, "SIGTERM from the object"},
		{0, syscall.SIGHUP, ""},
		{0, syscall.SIGINT, "SIGINT from the object"},
	} {
		mc := exitedAfter(c.code)
		mc.markStopRequested("stopped by the operator")
		mc.abandonStop()
		mc.NoteObjectSignal(c.sig)
		assert.Equal(t, c.want, mc.StopCause(), "exit %d after an interrupted stop, then the object's %v", c.code, c.sig)
	}
}

// TestStopCutShortOwnsNoFailure: wharf stop cut short (its request ended:
// Ctrl-C) during its grace, or before its signals were sent, leaves a
// container that ignores SIGTERM running; its later failure is its own, not
// "stopped by the operator" (which a stop whose SIGTERM failed left set).
func TestStopCutShortOwnsNoFailure(t *testing.T) {
	m, image := testManager(t)
	spec := ContainerSpec{Image: image, Entrypoint: []string{"sh", "-c", "trap '' TERM; trap 'exit 3' USR1; touch /ready; while true; do sleep 0.1; done"}}
	for object, stopCtx := range map[string]func() (context.Context, context.CancelFunc){
		"grace": func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		},
		"before": func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		},
	} {
		mc, err := m.Start(context.Background(), "Box", object, spec, openPolicy(), 0)
		require.NoError(t, err)
		require.Eventually(t, func() bool { // its traps are set
			code, _, _ := execOut(t, mc.Container, ExecSpec{Args: []string{"test", "-e", "/ready"}})
			return code == 0
		}, 10*time.Second, 50*time.Millisecond)
		ctx, cancel := stopCtx()
		assert.Error(t, m.Stop(ctx, "Box", object, time.Minute, "stopped by the test"), object)
		cancel()
		require.False(t, mc.Exited(), "%s: the container ignores SIGTERM", object)
		require.NoError(t, mc.Signal(context.Background(), syscall.SIGUSR1))
		wait, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, err := mc.Wait(wait)
		cancel()
		require.NoError(t, err)
		assert.Equal(t, uint32(3), code)
		assert.Equal(t, "", mc.StopCause(), "%s: the container failed by itself after the stop was cut short", object)
		require.NoError(t, m.Destroy(context.Background(), "Box", object))
	}
}
