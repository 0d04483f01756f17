package build_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	port, accepted := countingListener(t, "tcp4", "127.0.0.1:0")
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

// TestRunStepsReachNoLinkLocalServiceButDNS: a RUN step does not reach a
// server at a link-local address (a fake internet the test creates, at an
// address of 169.254.0.0/16 routed to it, as a cloud's metadata server,
// 169.254.169.254, answers there with the host's credentials), but for its
// DNS, as some clouds serve their resolver there. Steps reached it (as
// docker build's do); wharf's containers never did.
func TestRunStepsReachNoLinkLocalServiceButDNS(t *testing.T) {
	f := start(t)
	internet := fakenet.Start(t)
	metadata := netip.MustParseAddr("169.254.77.77")
	internet.AlsoAt(t, metadata)
	resp, err := http.Get("http://" + metadata.String() + "/from-the-host")
	require.NoError(t, err, "the host reaches the fake metadata server")
	resp.Body.Close()
	require.Equal(t, int64(1), internet.Hits())
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG METADATA\nARG NAME\n" +
		"RUN nslookup $NAME $METADATA\n" +
		"RUN if printf 'GET /from-a-build HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $METADATA 80; then echo reached the metadata server; exit 1; fi\n"})
	var progress bytes.Buffer
	_, err = f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/link-local:1", Progress: &progress,
		BuildArgs: map[string]string{"BASE": f.base, "METADATA": metadata.String(), "NAME": fakenet.Name("probe")}})
	require.NoError(t, err, progress.String())
	assert.Contains(t, progress.String(), internet.Addr.String(), "the step's DNS query to a link-local resolver was answered")
	assert.Equal(t, int64(1), internet.Hits(), "a RUN step reached the link-local server")
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
	port, accepted := countingListener(t, "tcp6", "[::]:0")
	// sleep: the step's link-local address is tentative for its first
	// second or so (duplicate address detection).
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG PORT\n" +
		"RUN sleep 3; for i in $(ls /sys/class/net); do [ $i = lo ] && continue; ip addr show dev $i; ping -6 -c 2 ff02::1%$i; " +
		"for a in $(ip -6 neigh show dev $i | cut -d' ' -f1); do if echo hi | nc -w 2 $a%$i $PORT; then echo reached the host at $a; exit 1; fi; done; done\n"})
	var progress bytes.Buffer
	_, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/network-ipv6:1", Progress: &progress,
		BuildArgs: map[string]string{"BASE": f.base, "PORT": fmt.Sprint(port)}})
	require.NoError(t, err, progress.String())
	assert.Zero(t, accepted.Load(), "a RUN step reached the host over IPv6")
	assert.NotContains(t, progress.String(), "inet6 fe80:", "the step's link has an IPv6 address")
}

// TestLostStepAddressesAreReleased: host-local's record of an address whose
// step's network namespace is gone (no route to it on the host) is
// released when a build engine starts, once it is older than a minute: a
// killed wharf's removed data directory, whose steps another wharf swept,
// left its addresses taken until a reboot. The address of a step that runs
// (another data directory's build, its record aged as a long step's is)
// stays taken, and so does one just recorded, whose route may follow.
func TestLostStepAddressesAreReleased(t *testing.T) {
	f := start(t)
	records := stepRecords(t)

	slow := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 15\n"})
	built := make(chan error, 1)
	go func() {
		_, err := f.engine.Build(context.Background(), build.Options{Context: slow, Tag: "wharf.test/slow:1", BuildArgs: map[string]string{"BASE": f.base}})
		built <- err
	}()
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(f.leftovers(t), func(l string) bool { return strings.HasPrefix(l, "build task ") })
	}, 2*time.Minute, 100*time.Millisecond, "the slow build's step never ran")
	live := filepath.Join(records, stepAddress(t, f))
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(live, old, old))

	lost, fresh := filepath.Join(records, "10.218.255.250"), filepath.Join(records, "10.218.255.251")
	for _, p := range []string{lost, fresh} {
		require.NoFileExists(t, p)
		require.NoError(t, os.WriteFile(p, []byte("wharf-test-gone\r\neth1"), 0o644))
		t.Cleanup(func() { os.Remove(p) })
	}
	require.NoError(t, os.Chtimes(lost, old, old))

	start(t) // another data directory's build engine
	assert.NoFileExists(t, lost, "the lost address is released")
	assert.FileExists(t, fresh, "an address just recorded stays taken")
	assert.FileExists(t, live, "the running step's address stays taken")
	require.NoError(t, <-built)
}

// TestRunStepsReachNoOtherStep: a RUN step of one data directory's build
// does not reach a service a RUN step of another data directory's build,
// running at the same time, listens on (their addresses are of one
// subnet, each routed through the host). The host forwarded between them:
// one wharf's (one tenant's) build connected to another's.
func TestRunStepsReachNoOtherStep(t *testing.T) {
	listening := start(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN timeout 30 nc -l -p 8000 > /got; cat /got; true\n"})
	listened := make(chan error, 1)
	var listenerProgress bytes.Buffer
	go func() {
		_, err := listening.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/listen:1", Progress: &listenerProgress,
			BuildArgs: map[string]string{"BASE": listening.base}})
		listened <- err
	}()
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(listening.leftovers(t), func(l string) bool { return strings.HasPrefix(l, "build task ") })
	}, 2*time.Minute, 100*time.Millisecond, "the listening step never ran")
	addr := stepAddress(t, listening)

	f := start(t)
	dir = writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG STEP\n" +
		"RUN sleep 1; if echo from-another-build | nc -w 3 $STEP 8000; then echo reached the other step; exit 1; fi\n"})
	var progress bytes.Buffer
	_, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/connect:1", Progress: &progress,
		BuildArgs: map[string]string{"BASE": f.base, "STEP": addr}})
	require.NoError(t, err, progress.String())
	require.NoError(t, <-listened)
	assert.NotContains(t, listenerProgress.String(), "from-another-build")
}

// stepRecords is the directory of host-local's records of the build
// steps' addresses, one file an address, as BuildCNIConfig names it.
func stepRecords(t *testing.T) string {
	var conf struct {
		Name    string
		Plugins []struct{ IPAM struct{ DataDir string } }
	}
	require.NoError(t, json.Unmarshal([]byte(containerd.BuildCNIConfig()), &conf))
	return filepath.Join(conf.Plugins[0].IPAM.DataDir, conf.Name)
}

// stepAddress is the address of the RUN step f's build runs: the record
// in stepRecords naming a network namespace of f's buildkitd.
func stepAddress(t *testing.T, f *fixture) string {
	records := stepRecords(t)
	ours, err := os.ReadDir(filepath.Join(build.Dir(f.dataDir), "root", "net", "cni"))
	require.NoError(t, err)
	taken, err := os.ReadDir(records)
	require.NoError(t, err)
	for _, e := range taken {
		record, _ := os.ReadFile(filepath.Join(records, e.Name()))
		id, _, _ := strings.Cut(string(record), "\r\n") // host-local's lines end so
		if slices.ContainsFunc(ours, func(n os.DirEntry) bool { return n.Name() == id }) {
			return e.Name()
		}
	}
	t.Fatal("the step's address is not recorded")
	return ""
}

// countingListener listens on address, closing each connection it
// accepts, and returns its port and the count of those connections.
func countingListener(t *testing.T, network, address string) (port int, accepted *atomic.Int64) {
	ln, err := net.Listen(network, address)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	accepted = new(atomic.Int64)
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
	return ln.Addr().(*net.TCPAddr).Port, accepted
}
