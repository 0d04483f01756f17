package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowestFixedPort is the lowest port FreeLoopbackAddr hands out.
const lowestFixedPort = 20000

var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// FreeLoopbackAddr returns a loopback address with a port that was free a
// moment ago, for a server that must be told its address before it
// listens (etcd, a cluster peer). The port lies below the kernel's
// ephemeral range (unless that range starts below 21000), so no outgoing
// connection or ":0" listener of a test running alongside can take it
// before that server binds it, and it is never handed out twice in one
// process.
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	limit := ephemeralLow()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 1000 {
		port := lowestFixedPort + rand.IntN(limit-lowestFixedPort)
		if handedOut[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		handedOut[port] = true
		return addr
	}
	t.Fatalf("no free loopback port between %d and %d", lowestFixedPort, limit)
	return ""
}

// ephemeralLow returns the lowest port of the kernel's ephemeral range.
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	var low, high int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &low, &high); err != nil || low <= lowestFixedPort+1000 {
		return fallback
	}
	return low
}
