// Package testetcd runs etcd inside a test process, for the cluster tests.
package testetcd

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/wharfhq/wharf/internal/testutil"
)

// Start runs an etcd cluster of n members inside the test process, on
// loopback, and returns its client URLs joined by commas. The members stop
// at cleanup.
func Start(t testing.TB, n int) string {
	t.Helper()
	type member struct{ name, peer, client string }
	members := make([]member, n)
	var initial []string
	for i := range members {
		members[i] = member{name: fmt.Sprintf("etcd%d", i), peer: "http://" + testutil.FreeLoopbackAddr(t), client: "http://" + testutil.FreeLoopbackAddr(t)}
		initial = append(initial, members[i].name+"="+members[i].peer)
	}
	var clients []string
	started := make(chan *embed.Etcd, n)
	errs := make(chan error, n)
	for _, m := range members {
		cfg := config(t, m.name, m.peer, m.client)
		cfg.InitialCluster = strings.Join(initial, ",")
		clients = append(clients, m.client)
		go func() { // members wait for each other: start them together
			e, err := embed.StartEtcd(cfg)
			if err != nil {
				errs <- err
				return
			}
			started <- e
		}()
	}
	for range n {
		select {
		case e := <-started:
			t.Cleanup(e.Close)
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(30 * time.Second):
				t.Fatal("etcd did not become ready")
			}
		case err := <-errs:
			t.Fatalf("starting etcd: %v", err)
		}
	}
	return strings.Join(clients, ",")
}

func config(t testing.TB, name, peerURL, clientURL string) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = t.TempDir()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	peer, _ := url.Parse(peerURL)
	client, _ := url.Parse(clientURL)
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = name + "=" + peerURL
	cfg.InitialClusterToken = "wharf-test"
	return cfg
}

// StartOne runs a single etcd member listening on host (ports 2379 and
// 2380) and returns its client URL. Its sockets are made by the calling
// thread: called inside a network namespace, etcd serves there. It keeps
// its whole history (no compaction), for tests that read it.
func StartOne(t testing.TB, host string) string {
	t.Helper()
	client := "http://" + net.JoinHostPort(host, "2379")
	e, err := embed.StartEtcd(config(t, "etcd", "http://"+net.JoinHostPort(host, "2380"), client))
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not become ready")
	}
	return client
}
