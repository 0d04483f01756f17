package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wharfhq/wharf/internal/testutil"
)

// The cluster's costs, each against a baseline measured in the same run:
// a forwarded request against one that lands on the owner, increments with
// replication against a single host, and failover against the lease TTL.
// All hosts share this machine's two cores, so the figures measure overhead,
// not scale.

// latencies times n sequential GETs of path on h, in µs.
func latencies(b *testing.B, h *testHost, path string, n int) []float64 {
	var out []float64
	for range n {
		start := time.Now()
		h.get(b, path)
		out = append(out, float64(time.Since(start).Microseconds()))
	}
	return out
}

func BenchmarkClusterForwardedRequest(b *testing.B) {
	c := newTestCluster(b)
	h1, h2 := c.start(b, "h1"), c.start(b, "h2")
	if _, err := h1.increment("fwd"); err != nil { // placed on h1
		b.Fatal(err)
	}
	var local, forwarded []float64
	for range b.N * testutil.BenchRounds {
		local = append(local, latencies(b, h1, "/counter/fwd", 200)...)
		forwarded = append(forwarded, latencies(b, h2, "/counter/fwd", 200)...)
	}
	l, f := testutil.Median(local), testutil.Median(forwarded)
	b.ReportMetric(l, "owner-p50-µs")
	b.ReportMetric(f, "forwarded-p50-µs")
	b.ReportMetric(f-l, "added-p50-µs")
	b.ReportMetric(f/l, "ratio")
}

// incrementRate runs clients concurrent increments on the counters names
// through hosts (round robin) for d and returns increments per second.
func incrementRate(b *testing.B, hosts []*testHost, names []string, clients int, d time.Duration) float64 {
	via := map[string]*testHost{} // each counter through one host, as clients go round both lists together
	for k, n := range names {
		via[n] = hosts[k%len(hosts)]
	}
	load := startLoad(clients, names, func(_ int, n string) (int64, error) { return via[n].increment(n) })
	time.Sleep(d)
	load.end()
	if len(load.errs) > 0 {
		b.Fatalf("%d increments failed: %v", len(load.errs), load.errs[0])
	}
	return float64(load.done()) / d.Seconds()
}

// singleHost serves the counter without a cluster.
func singleHost(b *testing.B, wasm string) *testHost {
	dir := b.TempDir()
	data, err := os.ReadFile(wasm)
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "counter.wasm"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"counter\"\nmain = \"counter.wasm\"\n[[durable_objects.bindings]]\nname = \"COUNTER\"\nclass_name = \"Counter\"\n"), 0o644)
	return &testHost{name: "single", serve: testutil.StartServe(b, dir, "--listen", "127.0.0.1:0", "--data-dir", b.TempDir())}
}

func BenchmarkClusterIncrements(b *testing.B) {
	c := newTestCluster(b)
	hosts := []*testHost{c.start(b, "h1"), c.start(b, "h2"), c.start(b, "h3")}
	single := singleHost(b, c.wasm)
	one := []string{"hot"}
	if _, err := hosts[0].increment("hot"); err != nil { // placed on h1
		b.Fatal(err)
	}
	many := make([]string, 300)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	const d = 3 * time.Second
	var clusterOne, singleOne, clusterMany, singleMany []float64
	for range b.N * 3 {
		clusterOne = append(clusterOne, incrementRate(b, hosts[:1], one, 32, d))
		singleOne = append(singleOne, incrementRate(b, []*testHost{single}, one, 32, d))
		clusterMany = append(clusterMany, incrementRate(b, hosts, many, 32, d))
		singleMany = append(singleMany, incrementRate(b, []*testHost{single}, many, 32, d))
	}
	co, so := testutil.Median(clusterOne), testutil.Median(singleOne)
	cm, sm := testutil.Median(clusterMany), testutil.Median(singleMany)
	b.ReportMetric(co, "replicated-one-counter-incr/s")
	b.ReportMetric(so, "single-host-one-counter-incr/s")
	b.ReportMetric(co/so, "one-counter-ratio")
	b.ReportMetric(cm, "3-hosts-300-counters-incr/s")
	b.ReportMetric(sm, "1-host-300-counters-incr/s")
	b.ReportMetric(cm/sm, "300-counters-ratio")
}

func BenchmarkClusterFailover(b *testing.B) {
	c := newTestCluster(b)
	for _, n := range []string{"h1", "h2", "h3"} {
		c.start(b, n)
	}
	var times []float64
	for i := range b.N * 3 {
		name := fmt.Sprintf("f%d", i)
		if _, err := c.hosts["h1"].increment(name); err != nil {
			b.Fatal(err)
		}
		owner := c.ownerOf(b, name)
		survivor := c.hosts["h1"]
		if owner == "h1" {
			survivor = c.hosts["h2"]
		}
		killed := time.Now()
		c.hosts[owner].serve.Kill()
		for {
			if _, err := survivor.increment(name); err == nil {
				break
			}
			if time.Since(killed) > time.Minute {
				b.Fatal("the object did not come back within a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
		times = append(times, float64(time.Since(killed).Milliseconds()))
		c.start(b, owner)
	}
	f := testutil.Median(times)
	b.ReportMetric(f, "failover-p50-ms")
	b.ReportMetric(float64(ttl.Milliseconds()), "lease-ttl-ms")
	b.ReportMetric(f/float64(ttl.Milliseconds()+1000), "ratio-to-ttl+1s")
}
