package build_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/internal/fakenet"
)

// TestRunStepsHaveTheirOwnNetwork: a RUN step runs in a network namespace
// of its own, as docker build's do: a service on the host's loopback (a
// listener the test opens on 127.0.0.1) is out of its reach, while it
// reaches the internet (a fake one, in a namespace the test creates,
// behind the host) through the host. With buildkitd's host network, the
// step connected to the listener and the build failed.
func TestRunStepsHaveTheirOwnNetwork(t *testing.T) {
	f := start(t)
	internet := fakenet.Start(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG PORT\nARG INTERNET\n" +
		"RUN ip -4 addr && if echo hi | nc -w 2 127.0.0.1 $PORT; then echo reached the host; exit 1; fi\n" +
		"RUN wget -q -O /fetched http://$INTERNET/from-a-build\n"})
	var progress bytes.Buffer
	img, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/network:1", Progress: &progress,
		BuildArgs: map[string]string{"BASE": f.base, "PORT": fmt.Sprint(port), "INTERNET": internet.Addr.String()}})
	require.NoError(t, err, progress.String())
	assert.Zero(t, accepted.Load(), "a RUN step reached the host's loopback")
	assert.Contains(t, progress.String(), "inet "+strings.TrimSuffix(containerd.BuildSubnet.Addr().String(), "0.0"), "the step's own address, in BuildSubnet")
	_, fetched := inspect(t, f.backend, img.Name, "fetched")
	assert.Equal(t, "hello from the internet: "+internet.Addr.String()+" /from-a-build", fetched)
	assert.Equal(t, int64(1), internet.Hits())
}

// TestRunStepsReachNoHostServiceOverIPv6: a RUN step that finds the host's
// end of its link by IPv6 (a ping to all nodes on each of its links, then
// their neighbours) does not reach a service of the host listening on all
// IPv6 addresses (a listener the test opens on [::]). With IPv6 on the
// steps' links, the step connected to it through the link-local address
// of the host's end of its veth pair, which the nft table (family ip) of
// the build steps does not see.
func TestRunStepsReachNoHostServiceOverIPv6(t *testing.T) {
	f := start(t)
	ln, err := net.Listen("tcp6", "[::]:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	// sleep: the step's link-local address is tentative for its first
	// second or so (duplicate address detection).
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG PORT\n" +
		"RUN sleep 3; for i in $(ls /sys/class/net); do [ $i = lo ] && continue; ip addr show dev $i; ping -6 -c 2 ff02::1%$i; " +
		"for a in $(ip -6 neigh show dev $i | cut -d' ' -f1); do if echo hi | nc -w 2 $a%$i $PORT; then echo reached the host at $a; exit 1; fi; done; done\n"})
	var progress bytes.Buffer
	_, err = f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/network-ipv6:1", Progress: &progress,
		BuildArgs: map[string]string{"BASE": f.base, "PORT": fmt.Sprint(port)}})
	require.NoError(t, err, progress.String())
	assert.Zero(t, accepted.Load(), "a RUN step reached the host over IPv6")
	assert.NotContains(t, progress.String(), "inet6 fe80:", "the step's link has an IPv6 address")
}
