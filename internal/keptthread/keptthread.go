// Package keptthread runs functions on an OS thread kept for them: locked
// to a goroutine of its own for good, never the process's main thread,
// never ending. Two things need one. A child process started with
// Pdeathsig gets that signal when the thread that started it ends, not the
// process (prctl(2), PR_SET_PDEATHSIG), and Go ends a thread whenever a
// goroutine locked to it exits: containerd's client does so after each
// overlay mount of many layers, wharf after a network namespace it could
// not leave; a containerd started from such a thread would be stopped
// with it. And a thread whose file-system attributes or namespaces change
// must not run other goroutines, nor show its state as the process's
// (/proc/self is the main thread's).
package keptthread

import (
	"os/exec"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Thread is an OS thread kept for the functions given to Do.
type Thread struct{ jobs chan func() }

// Start keeps a thread and runs setup on it first (if not nil). If setup
// fails, the thread goes back to the runtime (setup must leave it as it
// was) and Start returns setup's error.
func Start(setup func() error) (*Thread, error) {
	jobs := make(chan func())
	started := make(chan error, 1)
	go keep(jobs, setup, started)
	if err := <-started; err != nil {
		return nil, err
	}
	return &Thread{jobs: jobs}, nil
}

// keep locks its goroutine to a thread that is not the main one, sets it
// up, says so on started, and runs jobs there for good.
func keep(jobs <-chan func(), setup func() error, started chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() { // the main thread: held until another is locked, so the other is not it
		locked := make(chan error, 1)
		go keep(jobs, setup, locked)
		started <- <-locked
		runtime.UnlockOSThread()
		return
	}
	if setup != nil {
		if err := setup(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
	}
	started <- nil
	for job := range jobs {
		job()
	}
}

// Do runs fn on the thread and returns once it has. A panic in fn is
// raised again in the caller; the thread goes on.
func (t *Thread) Do(fn func()) {
	var panicked any
	done := make(chan struct{})
	t.jobs <- func() {
		defer close(done)
		defer func() { panicked = recover() }()
		fn()
	}
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

// starter is the thread StartProcess starts children from.
var starter = sync.OnceValues(func() (*Thread, error) { return Start(nil) })

// StartProcess starts cmd (cmd.Start) from a kept thread, so that the
// Pdeathsig its SysProcAttr sets comes when wharf ends, and only then.
func StartProcess(cmd *exec.Cmd) error {
	t, err := starter()
	if err != nil {
		return err
	}
	t.Do(func() { err = cmd.Start() })
	return err
}
