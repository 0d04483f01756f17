// Package testetcd runs etcd inside a test process, for the cluster tests.
package testetcd

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/wharfhq/wharf/internal/pki"
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
	var configs []*embed.Config
	var clients []string
	for _, m := range members {
		cfg := config(t, m.name, m.peer, m.client)
		cfg.InitialCluster = strings.Join(initial, ",")
		configs = append(configs, cfg)
		clients = append(clients, m.client)
	}
	startMembers(t, configs)
	return strings.Join(clients, ",")
}

// startMembers starts etcd's members together (they wait for each other)
// and waits until they are ready. They stop at cleanup.
func startMembers(t testing.TB, configs []*embed.Config) {
	t.Helper()
	started := make(chan *embed.Etcd, len(configs))
	errs := make(chan error, len(configs))
	for _, cfg := range configs {
		go func() {
			e, err := embed.StartEtcd(cfg)
			if err != nil {
				errs <- err
				return
			}
			started <- e
		}()
	}
	for range configs {
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
}

// TLSFiles are the PEM files of an etcd served over https: the CA that
// signed its certificates, and a client certificate it accepts.
type TLSFiles struct {
	CA, Cert, Key string
}

// StartTLS runs one etcd member inside the test process that serves its
// clients over https on loopback and accepts only clients with a
// certificate of its CA (--client-cert-auth). It returns its client URL
// and the files a client needs. It stops at cleanup.
func StartTLS(t testing.TB) (string, TLSFiles) {
	t.Helper()
	dir := t.TempDir()
	caPEM, caKeyPEM, err := pki.NewCA(pkix.Name{CommonName: "test etcd CA"})
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := pki.Parse(caPEM, caKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	files := TLSFiles{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client-key.pem")}
	server := TLSFiles{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")}
	write := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(files.CA, caPEM)
	// etcd's gateway reaches etcd with the server's certificate: it is a
	// client's too.
	for _, c := range []struct {
		to   TLSFiles
		tmpl x509.Certificate
	}{
		{server, x509.Certificate{Subject: pkix.Name{CommonName: "etcd"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}},
		{files, x509.Certificate{Subject: pkix.Name{CommonName: "wharf"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	} {
		c.tmpl.NotBefore, c.tmpl.NotAfter, c.tmpl.KeyUsage = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), x509.KeyUsageDigitalSignature
		der, key, err := pki.Sign(&c.tmpl, ca, caKey)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := pki.EncodePEM(der, key)
		if err != nil {
			t.Fatal(err)
		}
		write(c.to.Cert, certPEM)
		write(c.to.Key, keyPEM)
	}
	client := "https://" + testutil.FreeLoopbackAddr(t)
	cfg := config(t, "etcd", "http://"+testutil.FreeLoopbackAddr(t), client)
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: server.Cert, KeyFile: server.Key, TrustedCAFile: files.CA, ClientCertAuth: true}
	startMembers(t, []*embed.Config{cfg})
	return client, files
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

// User is an etcd user EnableAuth creates, with a role of its own name
// that has Permission ("read", "write" or "readwrite"; "" for none) on
// the keys under Prefix.
type User struct {
	Name, Password string
	Permission     string
	Prefix         string
}

// EnableAuth turns etcd's authentication on at the etcd at the URLs etcd
// (joined by commas) as an operator does with etcdctl: user add root,
// role add and grant-permission --prefix=true, user add and grant-role
// for each user, auth enable. Root's password is rootPassword.
func EnableAuth(t testing.TB, etcd, rootPassword string, users ...User) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(etcd, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
	}
	for _, u := range users {
		steps = append(steps,
			func() error { _, err := cli.RoleAdd(ctx, u.Name); return err },
			func() error { _, err := cli.UserAdd(ctx, u.Name, u.Password); return err },
			func() error { _, err := cli.UserGrantRole(ctx, u.Name, u.Name); return err })
		if u.Permission != "" {
			perm, ok := map[string]clientv3.PermissionType{"read": clientv3.PermissionType(clientv3.PermRead), "write": clientv3.PermissionType(clientv3.PermWrite), "readwrite": clientv3.PermissionType(clientv3.PermReadWrite)}[u.Permission]
			if !ok {
				t.Fatalf("etcd permission %q", u.Permission)
			}
			steps = append(steps, func() error {
				_, err := cli.RoleGrantPermission(ctx, u.Name, u.Prefix, clientv3.GetPrefixRangeEnd(u.Prefix), perm)
				return err
			})
		}
	}
	steps = append(steps, func() error { _, err := cli.AuthEnable(ctx); return err })
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("enabling etcd's authentication: %v", err)
		}
	}
}
