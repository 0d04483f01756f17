// Package testnet puts test code into network namespaces the test itself
// creates, so its traffic never leaves them.
package testnet

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// InNamespace creates the named namespace (or enters it, if it exists)
// and runs f inside it on a locked thread; sockets f opens stay in the
// namespace. It returns a handle of the namespace.
func InNamespace(t testing.TB, name string, f func()) netns.NsHandle {
	ns, err := Do(name, f)
	if err != nil {
		t.Fatalf("network namespace %s: %v", name, err)
	}
	return ns
}

// Do is InNamespace returning its error.
func Do(name string, f func()) (netns.NsHandle, error) {
	done := make(chan netns.NsHandle)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromName(name)
		if err != nil {
			ns, err = netns.NewNamed(name) // moves this thread into it
		} else {
			err = netns.Set(ns)
		}
		if err != nil {
			errc <- err
			return
		}
		f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		done <- ns
	}()
	select {
	case ns := <-done:
		return ns, nil
	case err := <-errc:
		return 0, err
	}
}
