package host

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowServer accepts connections on loopback and never answers; it counts
// the connections its clients hold open.
type slowServer struct {
	addr string
	open atomic.Int64
}

func startSlowServer(t *testing.T) *slowServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &slowServer{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.open.Add(1)
			go func() {
				io.Copy(io.Discard, c) // until the client closes
				c.Close()
				s.open.Add(-1)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// assertReleased checks every connection to s is closed soon.
func (s *slowServer) assertReleased(t *testing.T) {
	t.Helper()
	assert.Eventually(t, func() bool { return s.open.Load() == 0 }, 5*time.Second, 20*time.Millisecond,
		"the event's fetches still hold %d sockets", s.open.Load())
}

func TestEventDeadlineCancelsItsPendingFetches(t *testing.T) {
	slow := startSlowServer(t)
	w := startWorker(t, "[limits]\ntimeout = \"2s\"\n")
	start := time.Now()
	code, body := get(t, fmt.Sprintf("%s/fetchflood?n=900&sleep=1h&url=http://%s/", w.url, slow.addr))
	took := time.Since(start)
	assert.Equal(t, 504, code, body)
	assert.Less(t, took, 4*time.Second, "the event outlived its 2s deadline")
	slow.assertReleased(t)
	w.assertServing(t)
}

func TestPendingFetchesPerEventAreCapped(t *testing.T) {
	slow := startSlowServer(t)
	w := startWorker(t, "")
	done := make(chan string, 1)
	go func() {
		_, body := get(t, fmt.Sprintf("%s/fetchflood?n=5000&sleep=3s&url=http://%s/", w.url, slow.addr))
		done <- body
	}()
	w.assertServing(t) // meanwhile
	body := <-done
	assert.Equal(t, "started 1000; status=12 msg=TOOLARGE: 1000 pending results (fetches, object calls, forwards, monitors) are open in this event, the limit is 1000", strings.TrimSpace(body))
	slow.assertReleased(t)
	w.assertServing(t)
}

// startBlackhole returns a loopback port whose connection attempts hang: a
// socket that listens with a backlog of 0 and never accepts, its accept
// queue filled, so the kernel drops later SYNs.
func startBlackhole(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	port := sa.(*syscall.SockaddrInet4).Port
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 300*time.Millisecond)
		if err != nil {
			break // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	return port
}

// connecting counts this network namespace's sockets still connecting to
// 127.0.0.1:port (SYN_SENT in /proc/net/tcp).
func connecting(t *testing.T, port int) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	remote := fmt.Sprintf("0100007F:%04X", port)
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[2] == remote && f[3] == "02" {
			n++
		}
	}
	return n
}

func TestEventEndStopsItsFetchesStillConnecting(t *testing.T) {
	port := startBlackhole(t)
	w := startWorker(t, "")
	done := make(chan string, 1)
	go func() {
		_, body := get(t, fmt.Sprintf("%s/fetchflood?n=20&sleep=1s&url=http://127.0.0.1:%d/", w.url, port))
		done <- body
	}()
	require.Eventually(t, func() bool { return connecting(t, port) == 20 }, 5*time.Second, 20*time.Millisecond,
		"the event's fetches should be connecting (%d are)", connecting(t, port))
	assert.Equal(t, "started 20;", strings.TrimSpace(<-done))
	assert.Eventually(t, func() bool { return connecting(t, port) == 0 }, 2*time.Second, 20*time.Millisecond,
		"%d connection attempts outlived their event", connecting(t, port))
	w.assertServing(t)
}
