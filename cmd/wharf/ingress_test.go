package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// serveHello runs `wharf serve` on examples/hello with the given [limits]
// lines and returns it and its address.
func serveHello(t *testing.T, limits string) (*testutil.Serve, string) {
	t.Helper()
	dir := t.TempDir()
	_, err := run(t, "build", filepath.Join(testutil.RepoRoot(), "examples", "hello"), "-o", filepath.Join(dir, "hello.wasm"))
	require.NoError(t, err)
	manifest := "name = \"hello\"\nmain = \"hello.wasm\"\n[limits]\n" + limits
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte(manifest), 0o644))
	s := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", testutil.CompiledDataDir(t))
	return s, strings.TrimPrefix(s.URL, "http://")
}

// assertHello checks the host answers a fresh client.
func assertHello(t *testing.T, addr string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "Hello from wharf!\n", string(body))
}

// keepAlive opens a connection and completes one request on it, leaving it
// open and idle.
func keepAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	require.Equal(t, 200, resp.StatusCode)
	return conn
}

// closedWithin waits up to limit for the server to close conn and reports
// how long it took, or -1 if it stayed open.
func closedWithin(conn net.Conn, limit time.Duration) time.Duration {
	start := time.Now()
	conn.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return -1
	}
	return time.Since(start)
}

func TestIdleConnectionFloodIsClosed(t *testing.T) {
	_, addr := serveHello(t, "idle_timeout = \"1s\"\nheader_timeout = \"2s\"\n")
	const n = 300
	var conns []net.Conn
	for i := 0; i < n; i++ {
		conns = append(conns, keepAlive(t, addr)) // idle after one request
	}
	for i := 0; i < n; i++ {
		conn, err := net.Dial("tcp", addr) // idle from the start
		require.NoError(t, err)
		conns = append(conns, conn)
	}
	assertHello(t, addr)
	var wg sync.WaitGroup
	took := make([]time.Duration, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			took[i] = closedWithin(c, 15*time.Second)
		}()
	}
	wg.Wait()
	for i, d := range took {
		require.NotEqual(t, time.Duration(-1), d, "connection %d is still open after 15s", i)
	}
	assertHello(t, addr)
}

func TestSlowlorisIsCutOffAtTheHeaderTimeout(t *testing.T) {
	_, addr := serveHello(t, "header_timeout = \"1s\"\n")
	const n = 50
	var wg sync.WaitGroup
	results := make(chan string, n)
	for i := 0; i < n; i++ {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			start := time.Now()
			fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			for time.Since(start) < 20*time.Second { // one byte every 100 ms
				if _, err := conn.Write([]byte("a")); err != nil {
					break
				}
				conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				b, err := io.ReadAll(conn)
				if len(b) > 0 {
					results <- "answered: " + string(b)
					return
				}
				var ne net.Error
				if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
					break // closed by the server
				}
			}
			results <- fmt.Sprintf("closed after %s", time.Since(start).Round(100*time.Millisecond))
		}()
	}
	assertHello(t, addr) // while they trickle
	wg.Wait()
	close(results)
	for r := range results {
		assert.Regexp(t, `^closed after [1-9](\.\d)?s$`, r)
	}
	assertHello(t, addr)
}

// TestOversizedRequestHeadIs431: a head of max_header_bytes is served, one
// byte more gets 431 (net/http alone would let it run 4 KiB over).
func TestOversizedRequestHeadIs431(t *testing.T) {
	_, addr := serveHello(t, "max_header_bytes = 6000\n")
	status := func(headBytes int) int {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer conn.Close()
		head := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \r\n\r\n"
		pad := strings.Repeat("b", headBytes-len(head))
		_, err = fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", pad)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status(6001))
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status(9000), "within net/http's own 4 KiB of slack")
	assert.Equal(t, 200, status(6000), "a head of the limit is served")
	assertHello(t, addr)
}

func TestConnectionCapQueuesTheRest(t *testing.T) {
	_, addr := serveHello(t, "max_connections = 8\nidle_timeout = \"3s\"\n")
	var held []net.Conn
	for i := 0; i < 8; i++ {
		held = append(held, keepAlive(t, addr))
	}
	conn, err := net.Dial("tcp", addr) // the kernel queues it
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a ninth connection was served while eight were held: %v", err)

	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "served once the idle ones are closed")
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	for _, c := range held {
		assert.NotEqual(t, time.Duration(-1), closedWithin(c, 5*time.Second))
		c.Close()
	}
	assertHello(t, addr)
}
