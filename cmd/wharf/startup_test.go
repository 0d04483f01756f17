package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/cluster"
	"github.com/wharfhq/wharf/internal/testutil"
)

// helloPlugin writes a plugin directory serving examples/hello's built
// module (no go build at each start) and returns it.
func helloPlugin(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	wasm, err := os.ReadFile(testutil.BuildGuest(t, "examples/hello"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello.wasm"), wasm, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"hello\"\nmain = \"hello.wasm\"\n"), 0o644))
	return dir
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestServeAnswersARequestSentWhileItLoads: wharf serve listens before it
// loads the plugin, so a request sent while the module compiles (a cold
// cache: seconds) waits in the listen queue and is answered once the
// plugin is up, instead of being refused.
func TestServeAnswersARequestSentWhileItLoads(t *testing.T) {
	dir, addr := helloPlugin(t), freeAddr(t)
	srv := testutil.LaunchServe(t, dir, "--listen", addr, "--data-dir", t.TempDir())
	var conn net.Conn
	require.Eventually(t, func() bool {
		var err error
		conn, err = net.Dial("tcp", addr)
		return err == nil
	}, 2*time.Minute, time.Millisecond, "wharf serve never listened:\n%s", srv.Logs())
	defer conn.Close()
	time.Sleep(200 * time.Millisecond) // lines logged before the connection have reached srv.Logs (the compile takes seconds)
	assert.NotContains(t, srv.Logs(), "compiled hello.wasm", "the connection was made while the module compiled")
	_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: hello\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Minute)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, srv.Logs())
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "Hello from wharf!\n", string(body))
	assert.Contains(t, srv.Logs(), "compiled hello.wasm")
	// The answer can come before the "serving" line reaches the log.
	assert.Eventually(t, func() bool { return strings.Contains(srv.Logs(), "msg=serving") }, 10*time.Second, 10*time.Millisecond, srv.Logs())
	require.NoError(t, srv.Stop(30*time.Second))
}

// TestServeReportsAnAddressInUseBeforeLoading: an address another process
// holds is refused before the module is compiled, not after.
func TestServeReportsAnAddressInUseBeforeLoading(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	data := t.TempDir()
	_, err = run(t, "serve", helloPlugin(t), "--listen", ln.Addr().String(), "--data-dir", data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--listen: listen tcp "+ln.Addr().String()+": bind: address already in use (another program listens there: stop it, or give --listen another address; make demo: LISTEN=host:port)")
	assert.NoDirExists(t, filepath.Join(data, "cache"), "nothing was compiled")

	source := t.TempDir() // main is a Go package: refused before go build
	out, err := exec.Command(testutil.BuildWharf(t), "init", "--name", "hello", source).CombinedOutput()
	require.NoError(t, err, string(out))
	_, err = run(t, "serve", source, "--listen", ln.Addr().String(), "--data-dir", data)
	assert.ErrorContains(t, err, "bind: address already in use")
	assert.NoFileExists(t, filepath.Join(source, "hello.wasm"), "nothing was built")
	_, err = run(t, "serve", source, "--listen", "127.0.0.1:99999", "--data-dir", data)
	assert.EqualError(t, err, "--listen: listen tcp: address 99999: invalid port")
	manifest := filepath.Join(source, "wharf.toml") // the address in use set there
	text, err := os.ReadFile(manifest)
	require.NoError(t, err)
	lines := strings.Split(string(text), "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "listen = ") })
	require.GreaterOrEqual(t, at, 0, "the scaffold sets listen")
	lines[at] = fmt.Sprintf("listen = %q", ln.Addr())
	require.NoError(t, os.WriteFile(manifest, []byte(strings.Join(lines, "\n")), 0o644))
	_, err = run(t, "serve", source, "--data-dir", data)
	assert.EqualError(t, err, fmt.Sprintf("%s:%d:10: listen: listen tcp %s: bind: address already in use (or pass --listen)", manifest, at+1, ln.Addr()))
	wasms, _ := filepath.Glob(filepath.Join(source, ".wharf", "build", "*"))
	assert.Empty(t, wasms, "nothing was built")

	// --metrics-listen's address too: it was refused once the module had
	// compiled (seconds) and the Worker had started.
	_, err = run(t, "serve", helloPlugin(t), "--listen", freeAddr(t), "--metrics-listen", ln.Addr().String(), "--data-dir", data)
	assert.ErrorContains(t, err, "--metrics-listen: listen tcp "+ln.Addr().String()+": bind: address already in use")
	assert.NoDirExists(t, filepath.Join(data, "cache"), "nothing was compiled")

	// Bad --cluster flags and a missing --registry-auth file: refused
	// before go build too, and before the host joins a cluster (the etcd
	// endpoint, on loopback, is never dialled).
	certs := t.TempDir()
	joining := []string{"--cluster", "etcd=127.0.0.1:1", "--cluster-name", "h1", "--cluster-certs", certs}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "nonsense"}, `--cluster: want etcd=<endpoint>[,<endpoint>...], got "nonsense"`},
		{[]string{"--cluster", "etcd=ftp://127.0.0.1:1"}, `--cluster: etcd endpoint "ftp://127.0.0.1:1": want host:port or an http:// or https:// URL`},
		{[]string{"--cluster", "etcd=127.0.0.1"}, `--cluster: etcd endpoint "127.0.0.1": want host:port`},
		{[]string{"--cluster-name", "h1"}, "--cluster-name needs --cluster etcd=<endpoint>[,<endpoint>...]: without it, this host serves alone"},
		{[]string{"--cluster-ttl", "10s"}, "--cluster-ttl needs --cluster"},
		{[]string{"--cluster-adopt"}, "--cluster-adopt needs --cluster"},
		{[]string{"--cluster-etcd-key", "key.pem"}, "--cluster-etcd-key needs --cluster"},
		{[]string{"--cluster-etcd-user", "wharf"}, "--cluster-etcd-user needs --cluster"},
		{[]string{"--cluster-etcd-password-file", "password"}, "--cluster-etcd-password-file needs --cluster"},
		{append(joining, "--cluster-etcd-user", "wharf"), "--cluster-etcd-user needs --cluster-etcd-password-file"},
		{append(joining, "--cluster-etcd-user", "wharf", "--cluster-etcd-password-file", filepath.Join(certs, "password")), `--cluster-etcd-password-file: the password of etcd user "wharf": open ` + filepath.Join(certs, "password") + ": no such file or directory"},
		{append(joining, "--cluster-etcd-cacert", "ca.pem"), "--cluster-etcd-cacert, --cluster-etcd-cert and --cluster-etcd-key are for an etcd served over https"},
		{[]string{"--cluster", "etcd=https://127.0.0.1:1", "--cluster-etcd-cert", "cert.pem"}, "--cluster-etcd-key: etcd's client certificate and its key go together: give both or neither"},
		{append(joining, "--cluster-name", "bad name"), `cluster host name "bad name": use letters`},
		{append(joining, "--cluster-ttl", "1s"), "cluster lease TTL 1s: must be between 2s (etcd's minimum) and 1m0s"},
		{joining, "ca.pem: no such file or directory (make them with wharf cluster init --certs " + certs + ", then wharf cluster cert h1 --certs " + certs + ")"},
		{append(joining, "--cluster-listen", ln.Addr().String()), "--cluster-listen: listen tcp " + ln.Addr().String() + ": bind: address already in use"},
		{append(joining, "--cluster-advertise", "peer-a"), `--cluster-advertise "peer-a": want host:port`},
		{append(joining, "--cluster-advertise", "127.0.0.1:0"), `--cluster-advertise "127.0.0.1:0": want host:port`},
		{[]string{"--registry-auth", filepath.Join(t.TempDir(), "missing.json")}, "missing.json"},
	} {
		if strings.Contains(tc.want, "--cluster-listen") { // with good certificates
			require.NoError(t, cluster.InitCA(certs))
			require.NoError(t, cluster.IssueHost(certs, "h1"))
		}
		_, err = run(t, append([]string{"serve", source, "--listen", freeAddr(t), "--data-dir", data}, tc.args...)...)
		assert.ErrorContains(t, err, tc.want, "%q", tc.args)
	}
	wasms, _ = filepath.Glob(filepath.Join(source, ".wharf", "build", "*"))
	assert.Empty(t, wasms, "nothing was built")

	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "still mine") }))
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "still mine", string(body), "the address's owner keeps serving")
}

// BenchmarkWarmStart measures the time from exec to the first 200 of
// `wharf serve` on examples/hello with a warm compile cache (the issue's
// goal: 100 ms on either engine), against a plain Go net/http server
// answering the same route, started alternately in the same run. The
// client dials and sends GET / every millisecond until one is answered.
func BenchmarkWarmStart(b *testing.B) {
	wharf, plain, addr := helloServers(b)
	firstAnswer(b, addr, wharf, nil) // fills the cache
	var wharfMs, plainMs []float64
	for range b.N * testutil.BenchRounds {
		wharfMs = append(wharfMs, firstAnswer(b, addr, wharf, nil))
		plainMs = append(plainMs, firstAnswer(b, addr, plain, nil))
	}
	w, p := testutil.Median(wharfMs), testutil.Median(plainMs)
	b.ReportMetric(w, "wharf-first-200-p50-ms")
	b.ReportMetric(p, "plain-go-first-200-p50-ms")
	b.ReportMetric(w/p, "ratio")
}

// BenchmarkHelloServerMemory measures the resident memory of `wharf serve`
// on examples/hello (warm compile cache, its default instances) after two
// seconds of GET / from 32 connections (the issue's goal: 100 MB), against
// the plain Go net/http server of the same route under the same load,
// started alternately in the same run.
func BenchmarkHelloServerMemory(b *testing.B) {
	wharf, plain, addr := helloServers(b)
	firstAnswer(b, addr, wharf, nil) // fills the cache
	underLoad := func(argv []string) (mib float64) {
		firstAnswer(b, addr, argv, func(pid int) {
			load(b, "http://"+addr+"/", 32, 2*time.Second)
			mib = rssMiB(b, pid)
		})
		return mib
	}
	var wharfMiB, plainMiB []float64
	for range b.N * testutil.BenchRounds {
		wharfMiB = append(wharfMiB, underLoad(wharf))
		plainMiB = append(plainMiB, underLoad(plain))
	}
	w, p := testutil.Median(wharfMiB), testutil.Median(plainMiB)
	b.ReportMetric(w, "wharf-rss-MiB")
	b.ReportMetric(p, "plain-go-rss-MiB")
	b.ReportMetric(w/p, "ratio")
}

// helloServers are the command lines of `wharf serve` on examples/hello
// (on testutil.Engine) and of a plain Go server of the same route, both
// to listen on addr.
func helloServers(b *testing.B) (wharf, plain []string, addr string) {
	bin, dir, data := testutil.BuildWharf(b), helloPlugin(b), b.TempDir()
	plainBin := filepath.Join(b.TempDir(), "plainhello")
	build := exec.Command("go", "build", "-o", plainBin, "./testdata/plainhello")
	build.Dir = testutil.RepoRoot()
	out, err := build.CombinedOutput()
	require.NoError(b, err, "%s", out)
	addr = freeAddr(b)
	wharf = []string{bin, "serve", dir, "--listen", addr, "--data-dir", data}
	if testutil.Engine != "" {
		wharf = append(wharf, "--engine", testutil.Engine)
	}
	return wharf, []string{plainBin, "-listen", addr}, addr
}

// load sends GET url from conns keep-alive connections for d; every
// answer must be a 200.
func load(b *testing.B, url string, conns int, d time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				resp, err := client.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("GET %s under load: %v", url, err)
	}
}

// firstAnswer starts argv, waits for a 200 to GET / on addr, runs whileUp
// (if not nil) with its process id, and stops it: the milliseconds from
// exec to the answer.
func firstAnswer(b *testing.B, addr string, argv []string, whileUp func(pid int)) float64 {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}
	url := "http://" + addr + "/"
	start := time.Now()
	require.NoError(b, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				took := float64(time.Since(start).Microseconds()) / 1000
				if whileUp != nil {
					whileUp(cmd.Process.Pid)
				}
				return took
			}
		}
		select {
		case err := <-exited:
			exited <- err
			b.Fatalf("%s exited before answering: %v\n%s", argv[0], err, logs.String())
		case <-time.After(time.Millisecond):
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%s did not answer within 5 minutes:\n%s", argv[0], logs.String())
		}
	}
}

// TestServeStoppedWhileStartingSaysSo: SIGTERM (or Ctrl-C) while wharf
// serve builds the plugin ends it with that reason, not with the error of
// the step it cut short ("go build of D failed: signal: killed", as if the
// compiler had crashed; "context canceled" from containerd's steps).
func TestServeStoppedWhileStartingSaysSo(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(testutil.BuildWharf(t), "init", "--name", "hello", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	srv := testutil.LaunchServe(t, dir, "--listen", freeAddr(t), "--data-dir", t.TempDir())
	require.True(t, srv.WaitLog("msg=building", time.Minute), srv.Logs())
	err = srv.Stop(time.Minute)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, srv.Logs())
	assert.Equal(t, 1, exit.ExitCode())
	logs := srv.Logs()
	assert.Contains(t, logs, "\nwharf: stopped while starting: terminated signal received\n")
	assert.NotContains(t, logs, "signal: killed")
	assert.NotContains(t, logs, "msg=serving")
}

// TestServeStopsAtOnceWhileCompiling: a module's first compile runs in a
// process of its own, which SIGTERM (or Ctrl-C) ends at once: wharf serve
// says it heard the signal and stops without waiting seconds for the
// compile, leaving no compiler behind. That process is in a process group
// of its own, out of reach of a terminal's Ctrl-C: killed by it, it used
// to look like a failed compile apart if wharf saw it die before its own
// context ended, and wharf then compiled in-process (3 of 12 Ctrl-Cs).
func TestServeStopsAtOnceWhileCompiling(t *testing.T) {
	dir, addr, data := helloPlugin(t), freeAddr(t), t.TempDir()
	srv := testutil.LaunchServe(t, dir, "--listen", addr, "--data-dir", data)
	var compiler int
	require.Eventually(t, func() bool {
		pids := testutil.ProcessIDs(compileCommand, data)
		if len(pids) == 1 {
			compiler = pids[0]
		}
		return len(pids) == 1
	}, 2*time.Minute, time.Millisecond, "no compile apart began:\n%s", srv.Logs())
	require.NotContains(t, srv.Logs(), "compiled hello.wasm", "the compile ended before the signal")
	group, err := syscall.Getpgid(compiler)
	require.NoError(t, err)
	servesGroup, err := syscall.Getpgid(srv.Pid())
	require.NoError(t, err)
	assert.Equal(t, compiler, group, "the compile is not in a process group of its own")
	assert.NotEqual(t, servesGroup, group, "a Ctrl-C at the terminal reaches the compile")
	require.NoError(t, syscall.Kill(srv.Pid(), syscall.SIGTERM))
	err = srv.Stop(2 * time.Minute)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, srv.Logs())
	logs := srv.Logs()
	assert.Contains(t, logs, "\nwharf: stopped while starting: terminated signal received\n")
	assert.NotContains(t, logs, "compiled hello.wasm", "it waited for the compile")
	assert.NotContains(t, logs, "stopping: wharf ends once the step under way does", "it did not wait")
	assert.NotContains(t, logs, "msg=serving", "it served once the compile ended")
	assert.Empty(t, testutil.Processes(compileCommand, data), "the compile outlived wharf serve")
}

// TestServeSaysAtOnceThatItStopsWhileCompiling: SIGTERM (or Ctrl-C) while
// a module compiles in wharf's own process (here, as its compile cache
// cannot be written), which cannot be cut short and takes seconds, is
// acknowledged before the compile ends, and so is a second one. A stop
// that ends at once (TestServeStopsAtOnceWhileCompiling) says nothing.
func TestServeSaysAtOnceThatItStopsWhileCompiling(t *testing.T) {
	dir, addr, data := helloPlugin(t), freeAddr(t), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(data, "cache"), nil, 0o644)) // where the cache's directory would be
	srv := testutil.LaunchServe(t, dir, "--listen", addr, "--data-dir", data)
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 2*time.Minute, time.Millisecond, "wharf serve never listened:\n%s", srv.Logs())
	time.Sleep(200 * time.Millisecond) // the compile is under way (it takes seconds)
	require.NotContains(t, srv.Logs(), "compiled hello.wasm", "the compile ended before the signal")
	const said = `level=WARN msg="stopping: wharf ends once the step under way does" plugin=hello`
	for i := 1; i <= 2; i++ { // a second Ctrl-C is heard too
		require.NoError(t, syscall.Kill(srv.Pid(), syscall.SIGTERM))
		require.Eventually(t, func() bool { return strings.Count(srv.Logs(), said) == i }, 10*time.Second, 10*time.Millisecond, srv.Logs())
	}
	assert.NotContains(t, srv.Logs(), "compiled hello.wasm", "acknowledged only once the compile ended")
	assert.Empty(t, testutil.Processes(compileCommand, data), "it compiled apart, which a signal cuts short")
	err := srv.Stop(2 * time.Minute)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, srv.Logs())
	assert.Contains(t, srv.Logs(), "\nwharf: stopped while starting: terminated signal received\n")
	assert.NotContains(t, srv.Logs(), "msg=serving", "it served once the compile ended")
}

// TestServeAddsAPPerInstance: wharf serve runs with one P per core plus
// one per plugin instance (here 3), unless GOMAXPROCS says otherwise.
func TestServeAddsAPPerInstance(t *testing.T) {
	dir := helloPlugin(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte("name = \"hello\"\nmain = \"hello.wasm\"\n[limits]\ninstances = 3\n"), 0o644))
	data := testutil.CompiledDataDir(t)
	gomaxprocs := func() string {
		srv := testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data)
		defer srv.Stop(30 * time.Second)
		metrics, err := admin.NewClient(data).Metrics(context.Background())
		require.NoError(t, err)
		for _, line := range strings.Split(metrics, "\n") {
			if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
				return v
			}
		}
		t.Fatalf("no go_sched_gomaxprocs_threads in /metrics:\n%s", metrics)
		return ""
	}
	t.Setenv("GOMAXPROCS", "") // unset for Go and for wharf
	assert.Equal(t, strconv.Itoa(defaultGOMAXPROCS+3), gomaxprocs())
	t.Setenv("GOMAXPROCS", "1")
	assert.Equal(t, "1", gomaxprocs(), "the environment's GOMAXPROCS wins")
}
