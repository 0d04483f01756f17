package cluster_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testetcd"
)

// etcdProxy forwards a loopback port to etcd, and can go away (its
// listener and connections closed: a refused connection, as when etcd
// is stopped) and come back on the same port.
type etcdProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        []net.Conn
}

func startEtcdProxy(t *testing.T, target string) *etcdProxy {
	t.Helper()
	p := &etcdProxy{target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *etcdProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

// stop closes the listener and every connection: etcd is gone.
func (p *etcdProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restart listens on the same port again, if it stopped: etcd is back.
func (p *etcdProxy) restart(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	up := p.ln != nil
	p.mu.Unlock()
	if up {
		return
	}
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(t, err)
	p.serve(ln)
}

// TestClusterSaysWhyEtcdIsGoneAndThatItRejoined: while etcd cannot be
// reached, a host's failed lease renewals say what a connection to it
// meets (they said only "context deadline exceeded"); once it is back and
// the lease has expired, the host logs that it rejoined (its last word
// was the ERROR "...; rejoining"), and its object serves the value it
// had acknowledged.
func TestClusterSaysWhyEtcdIsGoneAndThatItRejoined(t *testing.T) {
	etcd := testetcd.Start(t, 1)
	proxy := startEtcdProxy(t, strings.TrimPrefix(etcd, "http://"))
	c := newTestClusterOn(t, "http://"+proxy.addr, nil)
	t.Cleanup(func() { proxy.restart(t) }) // before the check that the hosts left etcd, even after a failure
	h1 := c.start(t, "h1")
	for range 3 {
		_, err := h1.increment("k")
		require.NoError(t, err)
	}
	proxy.stop()
	require.True(t, h1.serve.WaitLog(`msg="renewing the cluster lease" etcd=http://`+proxy.addr+` err="context deadline exceeded: http://`+proxy.addr+
		`: dial tcp `+proxy.addr+`: connect: connection refused (is etcd running there?)"`, 10*ttl), h1.serve.Logs())
	time.Sleep(2 * ttl) // the lease runs out
	proxy.restart(t)
	require.True(t, h1.serve.WaitLog("cluster lease expired: this host's objects may run elsewhere now; rejoining", 10*ttl), h1.serve.Logs())
	require.True(t, h1.serve.WaitLog(`msg="rejoined the cluster" host=h1 cluster=`, 10*ttl), h1.serve.Logs())
	var v int64
	assert.Eventually(t, func() bool {
		var err error
		v, err = h1.increment("k")
		return err == nil
	}, 10*ttl, 100*time.Millisecond)
	assert.Equal(t, int64(4), v, "the acknowledged increments were kept")
}
