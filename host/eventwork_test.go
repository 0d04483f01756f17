package host

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
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
