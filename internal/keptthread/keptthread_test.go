package keptthread

import (
	"errors"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestChildOutlivesTheThreadThatAskedForIt: a child with Pdeathsig that
// StartProcess started from a goroutine whose thread then ends (locked,
// as containerd's client leaves the thread of an overlay mount of many
// layers) lives on. Started with cmd.Start from there, it got SIGKILL.
func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	onEndingThread(func() { started <- StartProcess(cmd) })
	require.NoError(t, <-started)
	defer cmd.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("the child ended with the thread that asked for it: %v", err)
	case <-time.After(time.Second):
	}
}

// onEndingThread calls fn on a goroutine locked to a thread that is not
// the main one (which Go never ends), and that thread ends with it.
func onEndingThread(fn func()) {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if unix.Gettid() == unix.Getpid() {
			done := make(chan struct{})
			onEndingThread(func() { fn(); close(done) })
			<-done
			runtime.UnlockOSThread()
			return
		}
		fn()
	}()
}

// TestDoRunsOnOneThreadAndSurvivesPanics: every function given to Do runs
// on the same thread, not the main one; setup runs there first; a panic
// reaches Do's caller and the thread goes on.
func TestDoRunsOnOneThreadAndSurvivesPanics(t *testing.T) {
	var setupTid int
	th, err := Start(func() error { setupTid = unix.Gettid(); return nil })
	require.NoError(t, err)
	var first, second int
	th.Do(func() { first = unix.Gettid() })
	assert.Equal(t, setupTid, first)
	assert.NotEqual(t, unix.Getpid(), first, "not the main thread")
	assert.PanicsWithValue(t, "boom", func() { th.Do(func() { panic("boom") }) })
	th.Do(func() { second = unix.Gettid() })
	assert.Equal(t, first, second, "the same thread after a panic")

	_, err = Start(func() error { return errors.New("no") })
	assert.EqualError(t, err, "no")
}
