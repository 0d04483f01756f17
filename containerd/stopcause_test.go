package containerd

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

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
