package host

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd/egress"
	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/egresspolicy"
	"github.com/wharfhq/wharf/internal/fakenet"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// egressWorker serves the objects guest with containers, resolving
// permitted names with the fake internet's DNS.
func egressWorker(t testing.TB, manifest string) (*testWorker, *fakenet.Internet, string) {
	inet := fakenet.Start(t)
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuestConfig(t, "testdata/guests/objects", manifest, data, func(c *Config, o *hostbackend.Options) {
		o.DNSUpstream, c.Client = []string{inet.DNS}, inet.Client()
	})
	return w, inet, data
}

// run runs cmd in the object's container and returns its output.
func (w *testWorker) run(t testing.TB, name string, cmd ...string) (stdout, stderr string, code int) {
	t.Helper()
	var r struct {
		Stdout, Stderr string
		Code           int
	}
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", name, "Exec", map[string]any{"Cmd": cmd})), &r))
	return r.Stdout, r.Stderr, r.Code
}

// runEnv runs cmd with env added and returns its stdout.
func (w *testWorker) runEnv(t *testing.T, name string, env map[string]string, cmd ...string) string {
	t.Helper()
	var r struct{ Stdout string }
	require.NoError(t, json.Unmarshal([]byte(w.mustCall(t, "BOX", name, "Exec", map[string]any{"Cmd": cmd, "Env": env})), &r))
	return r.Stdout
}

func (w *testWorker) startBox(t testing.TB, name string, internet bool) {
	w.mustCall(t, "BOX", name, "StartWith", map[string]any{"Entrypoint": []string{"sleep", "3600"}, "Internet": internet})
}

func (w *testWorker) intercept(t testing.TB, name, kind, target, handler string) {
	w.mustCall(t, "BOX", name, "Intercept", map[string]string{"Kind": kind, "Target": target, "Handler": handler})
}

// TestEgressInterceptionByTarget routes a container's HTTP and HTTPS
// through the Worker by each kind of target, with enableInternet off: the
// fake internet never sees a request.
func TestEgressInterceptionByTarget(t *testing.T) {
	w, inet, data := egressWorker(t, containersManifest)
	fake := inet.Addr.String()

	// A rule made before Start applies once the container runs.
	w.intercept(t, "b", "http", "api.internal.test", "inject")
	w.startBox(t, "b", false)
	out, _, code := w.run(t, "b", "probe", "get", "http://api.internal.test/v1?q=1")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "status=200\nX-Injected: yes\n")
	assert.Contains(t, out, "inject: GET http://api.internal.test/v1?q=1 from Box/")

	w.intercept(t, "b", "http", "*.glob.test", "other")
	out, _, _ = w.run(t, "b", "probe", "get", "http://deep.sub.glob.test/x")
	assert.Contains(t, out, "other: http://deep.sub.glob.test/x")
	out, _, _ = w.run(t, "b", "probe", "get", "http://glob.test/x")
	assert.NotContains(t, out, "other:", "*.glob.test does not match glob.test itself")

	// By address: IP, IP:port and CIDR, each in a container of its own.
	for _, tc := range []struct{ name, target, url, want string }{
		{"by-ip", fake, "http://" + fake + "/ip", "inject: GET http://" + fake + "/ip"},
		{"by-ipport", fake + ":8080", "http://" + fake + ":8080/p", "inject: GET http://" + fake + ":8080/p"},
		{"by-cidr", "10.210.0.0/16", "http://" + fake + "/c", "inject: GET http://" + fake + "/c"},
	} {
		w.startBox(t, tc.name, false)
		w.intercept(t, tc.name, "http", tc.target, "inject")
		out, _, _ := w.run(t, tc.name, "probe", "get", tc.url)
		assert.Contains(t, out, tc.want, tc.name)
	}
	out, _, _ = w.run(t, "by-ipport", "probe", "get", "http://"+fake+"/other-port")
	assert.Contains(t, out, "status=403", "IP:port does not claim another port")
	assert.Contains(t, out, "is not allowed: enableInternet is false and it is not in allowedHosts")

	// HTTPS: terminated only for the name intercepted, with a leaf the
	// container verifies against wharf's CA at both paths.
	w.intercept(t, "b", "https", "secrets.internal.test", "inject")
	for _, ca := range []string{egress.WharfCAPath, egress.ReferenceCAPath} {
		out, errOut, code := w.run(t, "b", "probe", "get", "https://secrets.internal.test/key", ca)
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, out, "inject: GET https://secrets.internal.test/key")
	}
	_, errOut, code := w.run(t, "b", "probe", "get", "https://secrets.internal.test/key")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "certificate signed by unknown authority", "the leaf comes from wharf's CA, not a public one")

	// A catch-all takes what no other rule claims, even names nobody
	// could resolve.
	w.intercept(t, "b", "all", "", "other")
	out, _, _ = w.run(t, "b", "probe", "get", "http://anything.example/z")
	assert.Contains(t, out, "other: http://anything.example/z")
	out, _, _ = w.run(t, "b", "probe", "get", "http://api.internal.test/still")
	assert.Contains(t, out, "inject: GET http://api.internal.test/still", "a specific rule beats the catch-all")

	// The deny list beats an interception: in DNS, and for a request
	// that names the host only in its Host header.
	w.mustCall(t, "BOX", "b", "EditHosts", map[string]any{"List": "denied", "Edit": "add", "Hosts": []string{"api.internal.test"}})
	_, errOut, code = w.run(t, "b", "probe", "resolve", "api.internal.test")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no such host")
	out = w.runEnv(t, "b", map[string]string{"PROBE_HOST": "api.internal.test"}, "probe", "get", "http://"+fake+"/x")
	assert.Contains(t, out, "status=403")
	assert.Contains(t, out, "api.internal.test is in deniedHosts")
	w.mustCall(t, "BOX", "b", "EditHosts", map[string]any{"List": "denied", "Edit": "remove", "Hosts": []string{"api.internal.test"}})
	out, _, _ = w.run(t, "b", "probe", "get", "http://api.internal.test/back")
	assert.Contains(t, out, "inject: GET http://api.internal.test/back")

	assert.Zero(t, inet.Hits(), "nothing reached the internet")
	mgr, _ := hostbackend.Parts(w.services.containers)
	proxyPort, dnsPort := mgr.Gateway().Ports()
	w.stop()
	assertNoLeftovers(t, data)
	for _, port := range []uint16{proxyPort, dnsPort} {
		assert.False(t, listeningHere(t, port), "the host still listens on port %d after Close", port)
	}
}

// listeningHere reports whether this process holds a TCP socket listening
// on port (another process may have taken the port since).
func listeningHere(t *testing.T, port uint16) bool {
	t.Helper()
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(table)
		require.NoError(t, err)
		for _, line := range strings.Split(string(raw), "\n") {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) && f[3] == "0A" {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && inodes[target] {
			return true
		}
	}
	return false
}

// TestEgressRuleChangeOnOpenConnection changes a rule while a keep-alive
// connection is open: its next request follows the new rule, on the same
// connection.
func TestEgressRuleChangeOnOpenConnection(t *testing.T) {
	w, _, data := egressWorker(t, containersManifest)
	w.intercept(t, "k", "http", "ka.test", "inject")
	w.startBox(t, "k", false)
	w.run(t, "k", "sh", "-c", "(probe keepalive http://ka.test/ /tmp/go; touch /tmp/ka.exited) > /tmp/ka.out 2>&1 &")
	require.Eventually(t, func() bool {
		_, _, code := w.run(t, "k", "test", "-e", "/tmp/go.ready")
		return code == 0
	}, 10*time.Second, 50*time.Millisecond, "the first request was answered")
	w.intercept(t, "k", "http", "ka.test", "other")
	w.run(t, "k", "touch", "/tmp/go")
	// The probe prints a response in several writes: read its output once
	// it has exited, not as soon as "request 2" shows.
	require.Eventually(t, func() bool {
		_, _, code := w.run(t, "k", "test", "-e", "/tmp/ka.exited")
		return code == 0
	}, 10*time.Second, 50*time.Millisecond, "the probe exited")
	out, _, _ := w.run(t, "k", "cat", "/tmp/ka.out")
	assert.Contains(t, out, "request 1 reused=false\nstatus=200\nX-Injected: yes\ninject: GET http://ka.test/")
	assert.Contains(t, out, "request 2 reused=true\nstatus=200\nother: http://ka.test/")
	w.stop()
	assertNoLeftovers(t, data)
}

// TestEgressInternetSwitch runs clients in containers against the fake
// internet: without enableInternet nothing reaches it, by IP or by name,
// over TCP or UDP; with it, all of that does; allowedHosts opens single
// names; an interception can fetch upstream with a secret added.
func TestEgressInternetSwitch(t *testing.T) {
	w, inet, data := egressWorker(t, containersManifest)
	fake := inet.Addr.String()
	name := fakenet.Name("www")

	w.startBox(t, "closed", false)
	out, _, _ := w.run(t, "closed", "probe", "get", "http://"+fake+"/")
	assert.Contains(t, out, "status=403")
	_, errOut, code := w.run(t, "closed", "probe", "get", "http://"+name+"/")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no such host")
	refusal := regexp.MustCompile(`msg="egress refused" class=Box object=\S+ to=` + regexp.QuoteMeta(name) +
		` why="enableInternet is false and it is not in allowedHosts \(DNS\)"`)
	assert.Len(t, refusal.FindAllString(w.logs.String(), -1), 1,
		"the refused lookup is logged, once, not once per query type: %s", w.logs.String())
	_, errOut, code = w.run(t, "closed", "probe", "tcp", fake+":7", "hi")
	assert.Equal(t, 1, code, "TCP by IP is refused")
	assert.NotContains(t, errOut, "echo")
	_, errOut, code = w.run(t, "closed", "probe", "udp", fake+":7", "hi")
	assert.Equal(t, 1, code, "UDP by IP is dropped")
	assert.Contains(t, errOut, "timeout")
	assert.Zero(t, inet.Hits())

	w.startBox(t, "open", true)
	out, _, code = w.run(t, "open", "probe", "get", "http://"+name+"/page")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "hello from the internet: "+name+" /page")
	out, _, _ = w.run(t, "open", "probe", "tcp", fake+":7", "over tcp")
	assert.Equal(t, "echo: over tcp\n", out)
	out, _, _ = w.run(t, "open", "probe", "udp", fake+":7", "over udp")
	assert.Equal(t, "echo: over udp\n", out)
	// TLS to a name no rule intercepts passes through untouched: the
	// container verifies the internet's own certificate.
	w.mustCall(t, "BOX", "open", "Exec", map[string]any{"Cmd": []string{"sh", "-c", "cat > /tmp/inet.crt"}, "Stdin": string(inet.CACertPEM)})
	out, errOut, code = w.run(t, "open", "probe", "get", "https://"+name+"/tls", "/tmp/inet.crt")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "hello from the internet: "+name+" /tls")
	// The deny list overrides enableInternet.
	w.mustCall(t, "BOX", "open", "EditHosts", map[string]any{"List": "denied", "Edit": "set", "Hosts": []string{"*.inet.test"}})
	_, errOut, _ = w.run(t, "open", "probe", "get", "http://"+name+"/")
	assert.Contains(t, errOut, "no such host")
	out = w.runEnv(t, "open", map[string]string{"PROBE_HOST": name}, "probe", "get", "http://"+fake+"/")
	assert.Contains(t, out, "www.inet.test is in deniedHosts")
	_, _, code = w.run(t, "open", "probe", "get", "https://"+name+"/tls", "/tmp/inet.crt")
	assert.Equal(t, 1, code, "denied over TLS too")
	w.mustCall(t, "BOX", "open", "EditHosts", map[string]any{"List": "denied", "Edit": "set", "Hosts": []string{}})

	// An interception that fetches upstream, adding a secret.
	w.intercept(t, "open", "http", "*.inet.test", "upstream")
	out, _, _ = w.run(t, "open", "probe", "get", "http://api.inet.test/with-secret")
	assert.Contains(t, out, "X-Seen-Secret: s3cret")
	assert.Contains(t, out, "hello from the internet: api.inet.test /with-secret")

	// allowedHosts opens one name without internet, and only for the
	// addresses the container's DNS gave for it: a Host header that names
	// an allowed host does not open another address.
	w.startBox(t, "allow", false)
	w.mustCall(t, "BOX", "allow", "EditHosts", map[string]any{"List": "allowed", "Edit": "add", "Hosts": []string{"www.inet.test"}})
	out = w.runEnv(t, "allow", map[string]string{"PROBE_HOST": name}, "probe", "get", "http://"+fake+"/spoofed")
	assert.Contains(t, out, "status=403", "a Host header alone does not let traffic out")
	out, _, _ = w.run(t, "allow", "probe", "get", "http://"+name+"/allowed")
	assert.Contains(t, out, "hello from the internet: "+name+" /allowed")
	_, errOut, _ = w.run(t, "allow", "probe", "get", "http://"+fakenet.Name("other")+"/")
	assert.Contains(t, errOut, "no such host")

	w.stop()
	assertNoLeftovers(t, data)
}

// TestEgressErrors covers what a plugin author can get wrong: each error
// names the problem and the host keeps serving.
func TestEgressErrors(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	for _, tc := range []struct {
		method string
		args   any
		want   string
	}{
		{"Intercept", map[string]string{"Kind": "http", "Target": "bad host!", "Handler": "inject"}, `invalid egress target "bad host!": want a hostname, a glob such as *.example.com, an IP, IP:port or a CIDR`},
		{"Intercept", map[string]string{"Kind": "https", "Target": "10.0.0.1/8", "Handler": "inject"}, `HTTPS is matched by name`},
		{"Intercept", map[string]string{"Kind": "http", "Target": "a.test", "Handler": "nobody"}, `no outbound handler named "nobody": register it with sdk.HandleOutbound`},
		{"EditHosts", map[string]any{"List": "allowed", "Edit": "add", "Hosts": []string{"a/b"}}, `'/' is not allowed in a host pattern`},
	} {
		code, body := w.call(t, "BOX", "e", tc.method, tc.args)
		assert.Equal(t, 500, code)
		assert.Contains(t, body, tc.want)
		assert.Contains(t, body, "invalid argument")
	}
	code, _ := get(t, w.url+"/alone")
	assert.Equal(t, 200, code, "the host keeps serving")

	// A bad pattern in wharf.toml is refused at load.
	m, err := parseTestManifest([]byte(containersManifest + "allowed_hosts = [\"ok.test\", \"not ok\"]\n"))
	require.NoError(t, err)
	_, err = newWorker(t.Context(), Config{Manifest: m, WasmPath: testutil.BuildGuest(t, "testdata/guests/objects"), DataDir: t.TempDir(),
		CacheDir: filepath.Join(sharedDataDir, "cache"), Logger: discardLogger()}, hostbackend.Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf(`containers[0] (class Box): allowed_hosts/denied_hosts: invalid egress target %q`, "not ok"))
}

// TestEgressHostListIsBounded: an allow or deny list edit past
// egresspolicy.MaxHosts entries is refused at once (TOOLARGE) with the
// count, instead of a quadratic merge that held the policy's lock past the
// event's timeout; the lists stay as they were and the object serves on.
// Interceptions are bounded likewise (egresspolicy.MaxRules of a kind).
func TestEgressHostListIsBounded(t *testing.T) {
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuest(t, "testdata/guests/objects", containersManifest, data)
	w.mustCall(t, "BOX", "b", "Start", []string{"sleep", "3600"})
	hosts := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("h%d.example.test", i)
		}
		return out
	}
	w.mustCall(t, "BOX", "b", "EditHosts", map[string]any{"List": "allowed", "Edit": "add", "Hosts": hosts(egresspolicy.MaxHosts)})
	w.mustCall(t, "BOX", "b", "EditHosts", map[string]any{"List": "allowed", "Edit": "add", "Hosts": hosts(10)}) // already there
	start := time.Now()
	code, body := w.call(t, "BOX", "b", "EditHosts", map[string]any{"List": "denied", "Edit": "add", "Hosts": hosts(300000)})
	assert.Equal(t, 500, code)
	assert.Equal(t, fmt.Sprintf("call EditHosts: too many hosts: the denied hosts would have 300000 entries, the limit is %d", egresspolicy.MaxHosts), strings.TrimSpace(body))
	// The quadratic merge took minutes; the refusal (the guest encodes
	// 300,000 names) took 15.4 s once under a load of 14.
	assert.Less(t, time.Since(start), 30*time.Second)
	code, body = w.call(t, "BOX", "b", "EditHosts", map[string]any{"List": "allowed", "Edit": "add", "Hosts": []string{"one-more.example.test"}})
	assert.Equal(t, 500, code)
	assert.Equal(t, fmt.Sprintf("call EditHosts: too many hosts: the allowed hosts would have %d entries, the limit is %d", egresspolicy.MaxHosts+1, egresspolicy.MaxHosts), strings.TrimSpace(body))
	w.mustCall(t, "BOX", "b", "EditHosts", map[string]any{"List": "allowed", "Edit": "set", "Hosts": []string{"one.example.test"}})

	// Interceptions too, across events: a target already intercepted is
	// replaced, a new one past the limit refused.
	assert.Equal(t, fmt.Sprintf(`"%d added"`, egresspolicy.MaxRules), w.mustCall(t, "BOX", "b", "InterceptMany", egresspolicy.MaxRules))
	assert.Equal(t, fmt.Sprintf(`"%d added, then too many interceptions: the HTTP interceptions would be %d, the limit is %d (too-large=true)"`,
		egresspolicy.MaxRules, egresspolicy.MaxRules+1, egresspolicy.MaxRules), w.mustCall(t, "BOX", "b", "InterceptMany", egresspolicy.MaxRules+1))
	assert.Equal(t, "true", w.mustCall(t, "BOX", "b", "Running", nil))
}

// TestEgressSlowClientIsStillIntercepted: a client that sends its request
// a second after it connected (a container short of CPU) reaches the
// Worker's handler. The proxy waited 300 ms for the first bytes, then
// treated the connection as other TCP and, without internet, closed it.
func TestEgressSlowClientIsStillIntercepted(t *testing.T) {
	w, _, _ := egressWorker(t, containersManifest)
	w.intercept(t, "slow", "http", "api.internal.test", "inject")
	w.startBox(t, "slow", false)
	out, errOut, code := w.run(t, "slow", "sh", "-c",
		`{ sleep 1; printf 'GET /late HTTP/1.0\r\nHost: api.internal.test\r\n\r\n'; sleep 2; } | nc -w 5 api.internal.test 80`)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "200 OK")
	assert.Contains(t, out, "inject: GET http://api.internal.test/late")
}

// TestEgressConnectionsPerContainerAreCapped: a container holding more
// connections open through the proxy than its limit gets the rest closed
// at once, with one warning, and gets connections again once its own
// closed. Each costs wharf a descriptor: one container could use them all
// up and fail every other container and object.
func TestEgressConnectionsPerContainerAreCapped(t *testing.T) {
	inet := fakenet.Start(t)
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuestConfig(t, "testdata/guests/objects", containersManifest, data, func(c *Config, o *hostbackend.Options) {
		o.DNSUpstream, c.Client, o.EgressMaxConns = []string{inet.DNS}, inet.Client(), 8
	})
	w.intercept(t, "many", "http", "api.internal.test", "inject")
	w.startBox(t, "many", false)
	// Twelve clients that connect and send nothing for 3 s.
	_, errOut, code := w.run(t, "many", "sh", "-c",
		`for i in $(seq 12); do sleep 3 | nc api.internal.test 80 >/dev/null 2>&1 & done; sleep 1`)
	require.Equal(t, 0, code, errOut)
	assert.Eventually(t, func() bool {
		return strings.Contains(w.logs.String(), "the container has 8 connections open through wharf, the limit")
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, 1, strings.Count(w.logs.String(), "connections open through wharf, the limit"), "said once")

	// Once they are closed, the container's connections count again.
	assert.Eventually(t, func() bool {
		out, _, _ := w.run(t, "many", "probe", "get", "http://api.internal.test/after")
		return strings.Contains(out, "inject: GET http://api.internal.test/after")
	}, 15*time.Second, 200*time.Millisecond)
}

// TestEgressConnectionsOfAllContainersAreCapped: containers each within
// their own limit cannot together hold more connections open through the
// proxy than the host-wide limit; the rest are closed at once, with one
// warning, and connections are taken again once some closed.
func TestEgressConnectionsOfAllContainersAreCapped(t *testing.T) {
	inet := fakenet.Start(t)
	data := t.TempDir()
	fixture.ImportBusybox(t, data)
	w := serveGuestConfig(t, "testdata/guests/objects", containersManifest, data, func(c *Config, o *hostbackend.Options) {
		o.DNSUpstream, c.Client, o.EgressMaxConns, o.EgressMaxConnsTotal = []string{inet.DNS}, inet.Client(), 8, 12
	})
	for _, box := range []string{"a", "b"} {
		w.intercept(t, box, "http", "api.internal.test", "inject")
		w.startBox(t, box, false)
	}
	// Eight clients in each container that connect and send nothing for
	// 8 s (within the 10 s the proxy waits for a request).
	for _, box := range []string{"a", "b"} {
		_, errOut, code := w.run(t, box, "sh", "-c",
			`for i in $(seq 8); do { sleep 8 | nc api.internal.test 80; } >/dev/null 2>&1 & done; sleep 1`)
		require.Equal(t, 0, code, errOut)
	}
	assert.Eventually(t, func() bool {
		return strings.Contains(w.logs.String(), "wharf has 12 connections of containers open through its egress proxy, the limit for all containers")
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, 1, strings.Count(w.logs.String(), "the limit for all containers"), "said once")
	assert.NotContains(t, w.logs.String(), "the container has 8 connections open through wharf", "neither container went past its own limit")

	// Once they are closed, connections are taken again.
	assert.Eventually(t, func() bool {
		out, _, _ := w.run(t, "b", "probe", "get", "http://api.internal.test/after")
		return strings.Contains(out, "inject: GET http://api.internal.test/after")
	}, 15*time.Second, 200*time.Millisecond)
}

// TestEgressInterceptedBodyStreams sends intercepted requests whose bodies
// are larger than the Worker's guest memory (memory_mib = 64): the body
// streams to the outbound handler, so one that reads it through counts
// every byte while neither the host's heap nor the guest holds it. One
// that reads it whole (io.ReadAll) runs its instance out of memory: the
// container gets a 500 naming the request id, the instance is replaced,
// and the host serves on (the next intercepted request, the object).
func TestEgressInterceptedBodyStreams(t *testing.T) {
	w, _, _ := egressWorker(t, containersManifest+"[limits]\nmemory_mib = 64\n")
	w.intercept(t, "big", "http", "count.test", "count")
	w.intercept(t, "big", "http", "slurp.test", "slurp")
	w.startBox(t, "big", false)
	// post sends size bytes to host with busybox nc (the basic instance
	// type's quarter of a CPU sends about 10 MB/s) and returns the answer.
	// nc's input stays open a while after the body, as net/http takes a
	// client's half-close for its going away.
	post := func(host string, size int) string {
		t.Helper()
		out, errOut, code := w.run(t, "big", "sh", "-c", fmt.Sprintf(
			`{ printf 'POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n'; head -c %d /dev/zero; sleep 2; } | nc -w 20 %s 80`,
			host, size, size, host))
		require.Equal(t, 0, code, errOut)
		return out
	}
	const size = 96 << 20
	runtime.GC()
	before := heapInUse()
	peak := sampleHeap()
	out := post("count.test", size)
	grown := int64(peak()) - int64(before)
	assert.Contains(t, out, "200 OK")
	assert.Contains(t, out, fmt.Sprintf("counted %d bytes, err=<nil>", size))
	t.Logf("host heap grew by %d MiB during the %d MiB body", grown>>20, size>>20)
	assert.Less(t, grown, int64(48<<20), "the host held the body")

	out = post("slurp.test", size)
	assert.Contains(t, out, "500 Internal Server Error")
	assert.Regexp(t, `worker failed \(request id [0-9a-f]+-[0-9]+\)`, out)
	assert.Contains(t, w.logs.String(), "the guest reached its memory limit")
	assert.Contains(t, post("count.test", 1<<20), "counted 1048576 bytes, err=<nil>", "the host serves on")
	assert.Equal(t, "true", w.mustCall(t, "BOX", "big", "Running", nil))
}
