// Package testnet puts test code into network namespaces the test itself
// creates, so its traffic never leaves them.
package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/wharfhq/wharf/internal/ephemeral"
)

// Name is a name for a new namespace of this test process: prefix, the
// process's pid, a dash and a number (names made from it by adding to its
// end are the process's too). It first removes the namespaces named from
// prefix by test processes that ended without removing theirs (killed),
// and with them their links. Keep prefix short: a link named after the
// namespace has 15 characters at most.
func Name(prefix string) string {
	removeEnded(prefix)
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// seq numbers the names Name gives.
var seq atomic.Uint64

// removeEnded deletes the namespaces named prefix<pid>… whose process
// ended.
func removeEnded(prefix string) {
	paths, _ := filepath.Glob(filepath.Join("/run/netns", prefix+"*"))
	for _, path := range paths {
		rest := strings.TrimPrefix(filepath.Base(path), prefix)
		digits := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if digits < 0 {
			digits = len(rest)
		}
		if pid, err := strconv.Atoi(rest[:digits]); err == nil && ephemeral.ProcessEnded(pid) {
			netns.DeleteNamed(filepath.Base(path))
		}
	}
}

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
