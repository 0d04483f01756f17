package cluster_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/internal/testetcd"
	"github.com/wharfhq/wharf/internal/testnet"
	"github.com/wharfhq/wharf/internal/testutil"
)

// A cluster in network namespaces of the test's own: a "switch" namespace
// holds a bridge and etcd (10.212.0.1), and each host a namespace of its
// own on that bridge (10.212.0.11, .12, ...). Nothing is routed anywhere
// else, so a partition is an nftables rule in one host's namespace.

const etcdIP = "10.212.0.1"

type netCluster struct {
	sw     string // the switch namespace
	etcd   string
	certs  string
	wasm   string
	client *http.Client
	hosts  map[string]*netHost
}

type netHost struct {
	name, ns, ip string
	dataDir      string
	serve        *testutil.Serve
}

func newNetCluster(t *testing.T, names ...string) *netCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the partition test makes network namespaces: it needs root")
	}
	c := &netCluster{sw: testnet.Name("wsw"), certs: t.TempDir(), hosts: map[string]*netHost{}}
	swNS := namespace(t, c.sw)
	h, err := netlink.NewHandleAt(swNS)
	require.NoError(t, err)
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	require.NoError(t, h.LinkAdd(br))
	require.NoError(t, h.AddrAdd(br, mustAddr(etcdIP)))
	require.NoError(t, h.LinkSetUp(br))
	lo, err := h.LinkByName("lo") // etcd's own clients reach it through lo
	require.NoError(t, err)
	require.NoError(t, h.LinkSetUp(lo))
	for i, name := range names {
		hn := &netHost{name: name, ns: c.sw + "-" + name, ip: fmt.Sprintf("10.212.0.%d", 11+i), dataDir: t.TempDir()}
		hostNS := namespace(t, hn.ns)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v" + name}, PeerName: "p" + name}
		require.NoError(t, h.LinkAdd(veth))
		outer, err := h.LinkByName("v" + name)
		require.NoError(t, err)
		require.NoError(t, h.LinkSetMaster(outer, br))
		require.NoError(t, h.LinkSetUp(outer))
		peer, err := h.LinkByName("p" + name)
		require.NoError(t, err)
		require.NoError(t, h.LinkSetNsFd(peer, int(hostNS)))
		hh, err := netlink.NewHandleAt(hostNS)
		require.NoError(t, err)
		inner, err := hh.LinkByName("p" + name)
		require.NoError(t, err)
		require.NoError(t, hh.AddrAdd(inner, mustAddr(hn.ip)))
		require.NoError(t, hh.LinkSetUp(inner))
		lo, _ := hh.LinkByName("lo")
		require.NoError(t, hh.LinkSetUp(lo))
		hh.Close()
		c.hosts[name] = hn
	}
	testnet.InNamespace(t, c.sw, func() { c.etcd = testetcd.StartOne(t, etcdIP) })
	c.client = &http.Client{Transport: &http.Transport{DialContext: c.dial}, Timeout: 30 * time.Second}
	require.NoError(t, cluster.InitCA(c.certs))
	c.wasm = testutil.BuildGuest(t, "examples/counter")
	return c
}

// namespace makes a network namespace that is deleted when the test ends
// (after the processes in it, which stop at cleanups registered later).
func namespace(t *testing.T, name string) netns.NsHandle {
	ns := testnet.InNamespace(t, name, func() {})
	t.Cleanup(func() {
		ns.Close()
		netns.DeleteNamed(name)
	})
	return ns
}

func mustAddr(ip string) *netlink.Addr {
	a, err := netlink.ParseAddr(ip + "/24")
	if err != nil {
		panic(err)
	}
	return a
}

// dial connects from the switch namespace, where every host is reachable.
func (c *netCluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		ns, nsErr := testnet.Do(c.sw, func() { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr) })
		if nsErr != nil {
			err = nsErr
			return
		}
		ns.Close()
	}()
	<-done
	return conn, err
}

func (c *netCluster) start(t *testing.T, h *netHost) {
	t.Helper()
	require.NoError(t, cluster.IssueHost(c.certs, h.name))
	dir := t.TempDir()
	wasm, err := os.ReadFile(c.wasm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "counter.wasm"), wasm, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"counter\"\nmain = \"counter.wasm\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n"), 0o644))
	h.serve = testutil.StartServeIn(t, h.ns, dir, "--listen", h.ip+":8080", "--data-dir", h.dataDir,
		"--cluster", "etcd="+c.etcd, "--cluster-name", h.name, "--cluster-listen", h.ip+":7947",
		"--cluster-certs", c.certs, "--cluster-ttl", ttl.String())
}

func (c *netCluster) increment(h *netHost, name string) (int64, error) {
	resp, err := c.client.Post(h.serve.URL+"/counter/"+name, "", nil)
	if err != nil {
		return 0, err
	}
	return readValue(resp)
}

func (c *netCluster) etcdClient(t *testing.T) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcd}, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return c.dial(ctx, "tcp", addr)
		})}})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// partition drops everything h sends to etcd; the returned func heals it.
func partition(t *testing.T, h *netHost) func() {
	ns, err := netns.GetFromName(h.ns)
	require.NoError(t, err)
	t.Cleanup(func() { ns.Close() }) // the connection opens its sockets in it
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	require.NoError(t, err)
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "partition"})
	chain := conn.AddChain(&nftables.Chain{Name: "out", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.ParseIP(etcdIP).To4()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(2379)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	require.NoError(t, conn.Flush())
	return func() {
		conn.DelTable(table)
		require.NoError(t, conn.Flush())
	}
}

func TestClusterPartitionedOwnerStopsWritingBeforeItsSuccessorStarts(t *testing.T) {
	c := newNetCluster(t, "h1", "h2", "h3")
	for _, h := range c.hosts {
		c.start(t, h)
	}
	_, err := c.increment(c.hosts["h1"], "p")
	require.NoError(t, err)
	cli := c.etcdClient(t)
	objects, err := cli.Get(context.Background(), "wharf/objects/counter/Counter/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, objects.Kvs, 1)
	key, owner := string(objects.Kvs[0].Key), c.hosts[string(objects.Kvs[0].Value)]
	var others []*netHost
	for _, h := range c.hosts {
		if h != owner {
			others = append(others, h)
		}
	}

	load := startLoad(8, []string{"p"}, func(i int, n string) (int64, error) { return c.increment(others[i%2], n) })
	time.Sleep(time.Second)
	heal := partition(t, owner)
	before := load.done()
	load.waitForMore(before+50, ttl+20*time.Second)
	load.end()
	acked := load.sortedAcks("p", 1)
	require.Greater(t, len(acked), before+50, "a successor serves the object while its old owner is cut off")
	assert.True(t, owner.serve.WaitLog("renewing the cluster lease", 0), "the cut-off owner noticed")
	assert.Equal(t, len(acked), len(slices.Compact(slices.Clone(acked))), "two increments returned the same value: split brain")

	// The history in etcd: every commit was written by the placement of its
	// epoch, and before the next placement began.
	type placement struct {
		epoch int64
		owner string
	}
	var placements []placement
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for w := range cli.Watch(wctx, key, clientv3.WithRev(1)) { // the whole history, until wctx ends
		for _, ev := range w.Events {
			if ev.Type == clientv3.EventTypePut && ev.Kv.Version == 1 {
				placements = append(placements, placement{ev.Kv.CreateRevision, string(ev.Kv.Value)})
			}
		}
	}
	require.GreaterOrEqual(t, len(placements), 2, "the object moved")
	assert.Equal(t, owner.name, placements[0].owner)
	assert.NotEqual(t, owner.name, placements[len(placements)-1].owner)
	commits, err := cluster.ReadCommits(context.Background(), cli, strings.TrimPrefix(key, "wharf/objects/"))
	require.NoError(t, err)
	require.NotEmpty(t, commits)
	for i, cm := range commits {
		require.Equal(t, uint64(i+1), cm.Seq, "commits are numbered without a gap")
		j := slices.IndexFunc(placements, func(p placement) bool { return p.epoch == cm.Epoch })
		require.GreaterOrEqual(t, j, 0, "commit %d names epoch %d, which was never a placement", cm.Seq, cm.Epoch)
		assert.Equal(t, placements[j].owner, cm.Host, "commit %d", cm.Seq)
		if j+1 < len(placements) {
			assert.Less(t, cm.Revision, placements[j+1].epoch, "commit %d of epoch %d landed after epoch %d began", cm.Seq, cm.Epoch, placements[j+1].epoch)
		}
	}

	// Healed, the old owner rejoins and serves the object's current value.
	final := acked[len(acked)-1]
	heal()
	require.True(t, owner.serve.WaitLog("rejoining", 5*ttl), "the old owner found its lease gone")
	var v int64
	require.Eventually(t, func() bool {
		v, err = c.increment(owner, "p")
		return err == nil
	}, 5*ttl, 100*time.Millisecond, "the old owner serves again once healed: %v", err)
	assert.Greater(t, v, final)
}
