// Package wharf_test runs the commands README.md tells a user to run, so a
// README line that stops working fails the tests.
package wharf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testnet"
	"github.com/wharfhq/wharf/internal/testutil"
)

// readmeCovered are the README commands this test does not run, each with
// the test that runs it (or its equivalent) and why it is not run here.
var readmeCovered = map[string]struct{ test, why string }{
	"make test": {"", "CI itself: .ci/run runs make test, which runs this test"},
	"go test ./...": {"TestInitWritesAWorkingPlugin",
		"runs go test ./... offline in a new wharf init directory (its test builds the plugin and serves it in wharftest)"},
	"wharf images build ./container --tag myapp:1 --build-arg VERSION=2 --data-dir .wharf": {"TestServeBuildsDockerfileImages",
		"runs wharf images build --tag --build-arg (and -f) on a context whose FROM only a loopback registry can serve here"},
	`go run ./internal/testimages/mkimage -debian-registry 127.0.0.1:5000 "${TMPDIR:-/tmp}/wharf-debian-base" &`: {"TestPyapp",
		"the Debian base takes mmdebstrap minutes; TestPyapp builds it once per machine and serves it from a loopback registry"},
	"make build && bin/wharf serve examples/pyapp":            {"TestPyapp", "builds examples/pyapp's image from its Dockerfile at load and serves it"},
	"curl -d 'first note' http://127.0.0.1:8787/t/acme/notes": {"TestPyapp", "posts and reads a tenant's notes"},
	"wharf serve myplugin --cluster etcd=http://10.0.0.5:2379 --cluster-name host-a --cluster-listen 10.0.0.11:7947 --cluster-certs certs": {
		"TestClusterServesEachObjectOnOneHost", "needs etcd and other machines: the cluster tests run wharf serve --cluster on loopback against a test etcd"},
	"wharf cluster status --cluster etcd=http://10.0.0.5:2379": {"TestClusterServesEachObjectOnOneHost", "needs etcd: runs wharf cluster status"},
	"wharf cluster drain --data-dir myplugin/.wharf":           {"TestClusterDrainMovesObjectsWithoutFailedRequests", "needs a cluster: runs wharf cluster drain"},
}

// readmeOutputs is what a command's output contains, keyed by the command
// (by "example: command" for the examples table), where README.md says
// what it gives. Every curl needs an entry.
var readmeOutputs = map[string]string{
	`go run ./internal/testimages/mkimage "$img"`:                                                     "/busybox.tar",
	`bin/wharf images import "$img/busybox.tar" --data-dir examples/webapp/.wharf`:                    "imported wharf.test/busybox:latest",
	"curl --retry-connrefused --retry 5 --retry-max-time 60 http://127.0.0.1:8788/s/alice/index.html": "session container",
	"wharf init myplugin":                     "wrote a plugin in",
	"curl http://127.0.0.1:8787/":             "Hello from myplugin!\n",
	"wharf cluster init --certs certs":        "cluster CA created in certs",
	"wharf cluster cert host-a --certs certs": "certificate of host-a written to certs",
	"curl --retry-connrefused --retry 5 --retry-max-time 60 http://127.0.0.1:8787/s/alice/index.html": "session container",
	"wharf ps":                                    "\nAPP ",
	"wharf ps -a --format json":                   `"name": "alice"`,
	"wharf inspect APP alice":                     `"state": "running"`,
	"wharf stats --no-stream":                     "\nAPP ",
	"wharf logs APP alice":                        "serving session container",
	"wharf exec APP alice -- cat /www/index.html": "session container",
	"wharf exec -u app APP alice -- id":           "uid=1000(app)",

	"examples/hello: curl http://127.0.0.1:8787/":                                             "Hello from wharf!\n",
	"examples/hello: curl --data-binary @README.md http://127.0.0.1:8787/echo":                "\n## A minimal Worker\n",
	"examples/counter: curl -X POST http://127.0.0.1:8787/counter/a":                          "1\n",
	"examples/counter: curl http://127.0.0.1:8787/counter/a":                                  "1\n",
	"examples/sandbox: curl --data-binary 'echo hi; uname -a' http://127.0.0.1:8787/run/demo": "hi\nLinux ",
	"examples/sandbox: curl --data-binary 'exit 3' http://127.0.0.1:8787/run/demo":            "[exit status 3]\n",
	"examples/sandbox: curl -T README.md http://127.0.0.1:8787/files/demo/work/README.md":     `"size":`,
	"examples/webapp: curl http://127.0.0.1:8787/s/alice/index.html":                          "session container",
	"examples/webapp: curl http://127.0.0.1:8787/s/alice/_state":                              `"Status":"healthy"`,
	"examples/egress: curl http://127.0.0.1:8787/call/a1":                                     "minted-by-the-worker",
}

// TestReadmeCommands runs README.md's commands in order, as a user would:
// every line of its ```sh blocks, and for each row of its examples table
// the example served (after importing the test image when the example has
// containers, as the README says) and the row's curl commands. It works in
// a copy of the repository (make build writes bin/, examples write their
// .wharf) inside a network namespace of its own, so the README's fixed
// loopback ports are its own and its traffic stays there. `wharf` is the
// copy's bin/wharf, /tmp/ and TMPDIR a temporary directory, a shell
// variable a line sets (img=$(mktemp -d)) is set for the lines after it,
// as in the user's shell, and curl fails on an HTTP error. Servers (make demo, wharf serve) run in the background
// until the next one starts; the commands that cannot run here are named
// in readmeCovered with the test that covers them.
func TestReadmeCommands(t *testing.T) {
	root := testutil.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	commands := readmeCommands(string(readme))
	checkReadmeTables(t, root, commands)

	s := newReadmeSession(t, root)
	block := -1
	for _, c := range commands {
		if c.block != block { // each block starts where the README starts: the checkout
			block, s.cwd = c.block, s.root
		}
		if _, ok := readmeCovered[c.text]; ok {
			continue
		}
		if c.example != "" && c.first {
			s.serveExample(c)
		}
		s.do(c)
	}
	s.stopServers()
	s.checkNothingLeft()
}

// readmeCommand is a command of README.md.
type readmeCommand struct {
	line    int    // its line in README.md
	block   int    // which ```sh block or table row it belongs to
	text    string // the command, continuation lines joined, comment removed
	example string // for a table row: the example directory it is tried on
	server  string // for a table row: how the example is served
	first   bool   // for a table row: its first command
}

// key names c in readmeOutputs.
func (c readmeCommand) key() string {
	if c.example != "" {
		return c.example + ": " + c.text
	}
	return c.text
}

var (
	shellComment = regexp.MustCompile(`(^|\s)#.*$`)
	codeSpan     = regexp.MustCompile("`([^`]+)`")
)

// readmeCommands extracts the commands of README.md: each line of a
// ```sh block (a trailing \ joins the next), and the curl commands of the
// examples table, whose rows start with | `examples/.
func readmeCommands(text string) []readmeCommand {
	var out []readmeCommand
	lines := strings.Split(text, "\n")
	block, fence := 0, ""
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "```"):
			if fence == "" {
				block++
				fence = strings.TrimSpace(strings.TrimPrefix(line, "```")) + " "
			} else {
				fence = ""
			}
		case fence == "sh ":
			start := i
			cmd := strings.TrimSpace(shellComment.ReplaceAllString(line, ""))
			for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
				i++
				cmd = strings.TrimSuffix(cmd, `\`) + strings.TrimSpace(shellComment.ReplaceAllString(lines[i], ""))
			}
			if cmd != "" {
				out = append(out, readmeCommand{line: start + 1, block: block, text: cmd})
			}
		case fence == "" && strings.HasPrefix(line, "| `examples/"):
			block++
			cells := strings.Split(line, "|")
			example := codeSpan.FindStringSubmatch(cells[1])[1]
			server := "wharf serve " + example
			if spans := codeSpan.FindAllStringSubmatch(cells[1], -1); len(spans) > 1 {
				server = spans[1][1] // e.g. (`make demo`)
			}
			first := true
			for _, span := range codeSpan.FindAllStringSubmatch(cells[2], -1) {
				if strings.HasPrefix(span[1], "curl ") {
					out = append(out, readmeCommand{line: i + 1, block: block, text: span[1], example: example, server: server, first: first})
					first = false
				}
			}
		}
	}
	return out
}

// checkReadmeTables checks that readmeCovered and readmeOutputs name only
// commands README.md has, that every covering test exists, and that every
// curl has an expected output.
func checkReadmeTables(t *testing.T, root string, commands []readmeCommand) {
	t.Helper()
	have := map[string]bool{}
	for _, c := range commands {
		have[c.text], have[c.key()] = true, true
		if _, covered := readmeCovered[c.text]; !covered && strings.HasPrefix(c.text, "curl ") {
			assert.Contains(t, readmeOutputs, c.key(), "README.md:%d: say in readmeOutputs what %q answers", c.line, c.text)
		}
	}
	var tests bytes.Buffer
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, "_test.go") {
			data, _ := os.ReadFile(path)
			tests.Write(data)
		}
		return nil
	})
	for cmd, c := range readmeCovered {
		assert.True(t, have[cmd], "readmeCovered names %q, which README.md no longer has", cmd)
		if c.test != "" {
			assert.Contains(t, tests.String(), "func "+c.test+"(t *testing.T)", "readmeCovered names test %s for %q", c.test, cmd)
		}
	}
	for cmd := range readmeOutputs {
		assert.True(t, have[cmd], "readmeOutputs names %q, which README.md no longer has", cmd)
	}
}

// readmeSession runs README commands in a copy of the repository, inside
// a network namespace of its own.
type readmeSession struct {
	t       *testing.T
	root    string // the copy
	cwd     string
	tmp     string // what /tmp/ in a command stands for
	netns   string // its path
	env     []string
	servers []*readmeServer
	stopped []*readmeServer // the servers stopped, in order
}

func newReadmeSession(t *testing.T, checkout string) *readmeSession {
	dir := t.TempDir()
	s := &readmeSession{t: t, root: filepath.Join(dir, "wharf"), tmp: filepath.Join(dir, "tmp")}
	s.cwd = s.root
	require.NoError(t, copyCheckout(checkout, s.root))
	require.NoError(t, os.Mkdir(s.tmp, 0o755))

	name := testnet.Name("readme-")
	var upErr error
	ns := testnet.InNamespace(t, name, func() {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		upErr = err
	})
	t.Cleanup(func() { // after the servers, whose cleanups come later
		ns.Close()
		netns.DeleteNamed(name)
	})
	require.NoError(t, upErr)
	s.netns = filepath.Join("/run/netns", name)

	curlHome := filepath.Join(dir, "curl")
	require.NoError(t, os.Mkdir(curlHome, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(curlHome, ".curlrc"), []byte("fail-with-body\nsilent\nshow-error\nmax-time = 120\n"), 0o644))
	s.env = append(os.Environ(), "PATH="+filepath.Join(s.root, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"), "CURL_HOME="+curlHome, "TMPDIR="+s.tmp)
	t.Cleanup(s.stopServers)
	return s
}

// copyCheckout copies the repository at from to to, without its git
// directory, build output and data directories.
func copyCheckout(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			if rel == ".git" || rel == "bin" || d.Name() == ".wharf" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.OpenFile(filepath.Join(to, rel), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		return errors.Join(err, dst.Close())
	})
}

// command is a shell running text in the session's namespace and
// directory, in a process group of its own (stopped as a group). If the
// test process dies (kill -9, a -timeout), the shell gets SIGTERM and
// passes it to the whole group, as stopServers would: a server the text
// started (make's child wharf too) stops and removes its containers
// instead of serving on for good.
func (s *readmeSession) command(ctx context.Context, text string) *exec.Cmd {
	script := "trap 'trap - TERM; kill -TERM 0' TERM\n{ " + strings.ReplaceAll(text, "/tmp/", s.tmp+"/") + "\n} & wait $!"
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+s.netns, "bash", "-c", script)
	cmd.Dir, cmd.Env = s.cwd, s.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd
}

// do runs c: cd changes the directory, a server starts in the background,
// kill %1 stops it, anything else runs to completion and must succeed with the output
// readmeOutputs gives.
func (s *readmeSession) do(c readmeCommand) {
	t := s.t
	if dir, ok := strings.CutPrefix(c.text, "cd "); ok {
		s.cwd = filepath.Join(s.cwd, dir)
		return
	}
	if isServer(c.text) {
		s.serve(c.text, fmt.Sprintf("README.md:%d", c.line))
		return
	}
	if c.text == "kill %1" { // the server started with & in the user's shell
		s.stopServers()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if m := shellAssignment.FindStringSubmatch(c.text); m != nil { // kept for the lines after it
		out, err := s.command(ctx, c.text+"\nprintf %s \"$"+m[1]+"\"").Output()
		require.NoError(t, err, "README.md:%d: %s (in %s)", c.line, c.text, s.cwd)
		s.env = append(s.env, m[1]+"="+string(out))
		t.Logf("README.md:%d: %s: %s=%s", c.line, c.text, m[1], out)
		return
	}
	out, err := s.command(ctx, c.text).CombinedOutput()
	require.NoError(t, err, "README.md:%d: %s (in %s)\n%s%s", c.line, c.text, s.cwd, out, s.serverLogs())
	t.Logf("README.md:%d: %s (%s)", c.line, c.text, time.Since(start).Round(time.Millisecond))
	if want, ok := readmeOutputs[c.key()]; ok {
		want = strings.ReplaceAll(want, "/tmp/", s.tmp+"/")
		assert.Contains(t, string(out), want, "README.md:%d: %s", c.line, c.text)
	}
}

// shellAssignment is a line that sets a shell variable (its name) to a
// command's output.
var shellAssignment = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=\$\(.*\)$`)

// isServer reports whether a command serves until stopped.
func isServer(text string) bool {
	return text == "make demo" || strings.Contains(text, "wharf serve") || strings.Contains(text, "wharf dev")
}

// serveExample serves an example of the table as the README says: its
// containers' image imported first (the README's $img from mkimage).
func (s *readmeSession) serveExample(c readmeCommand) {
	example, server := c.example, c.server
	manifest, err := os.ReadFile(filepath.Join(s.root, example, "wharf.toml"))
	require.NoError(s.t, err)
	if bytes.Contains(manifest, []byte("[[containers]]")) && server != "make demo" {
		s.do(readmeCommand{line: c.line, text: `wharf images import "$img/busybox.tar" --data-dir ` + example + "/.wharf"})
	}
	s.serve(server, example)
}

// readmeServer is a server command running in the background.
type readmeServer struct {
	what string
	cmd  *exec.Cmd
	out  testutil.LogBuffer
	done chan struct{}
}

// serve stops the servers running and starts text (without a trailing &:
// it runs in the background anyway), waiting until it serves.
func (s *readmeSession) serve(text, what string) {
	t := s.t
	text = strings.TrimSpace(strings.TrimSuffix(text, "&"))
	s.stopServers()
	sv := &readmeServer{what: what + ": " + text, cmd: s.command(context.Background(), text), done: make(chan struct{})}
	sv.cmd.Stdout, sv.cmd.Stderr = &sv.out, &sv.out
	start := time.Now()
	require.NoError(t, sv.cmd.Start())
	s.servers = append(s.servers, sv)
	go func() {
		sv.cmd.Wait()
		close(sv.done)
	}()
	// make demo builds wharf and buildkitd first: with a cold build cache,
	// on 2 cores shared with the other packages' tests, that alone took
	// over 5 minutes.
	const within = 15 * time.Minute
	deadline := time.After(within)
	for !strings.Contains(sv.out.String(), "msg=serving") {
		select {
		case <-sv.done:
			t.Fatalf("%s exited before serving:\n%s", sv.what, sv.out.String())
		case <-deadline:
			t.Fatalf("%s did not serve within %s:\n%s", sv.what, within, sv.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("%s: serving (%s)", sv.what, time.Since(start).Round(time.Millisecond))
}

// stopServers stops the running servers as Ctrl-C would (SIGTERM to the
// process group, so make's child wharf too) and waits until every process
// of each group has exited: wharf removes its containers on the way out.
func (s *readmeSession) stopServers() {
	for _, sv := range s.servers {
		pgid := sv.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(time.Minute)
		for syscall.Kill(-pgid, 0) == nil {
			if time.Now().After(deadline) {
				s.t.Errorf("%s did not stop within a minute of SIGTERM:\n%s", sv.what, sv.out.String())
				syscall.Kill(-pgid, syscall.SIGKILL)
				deadline = time.Now().Add(time.Minute)
			}
			time.Sleep(20 * time.Millisecond)
		}
		<-sv.done
		s.stopped = append(s.stopped, sv)
		if s.t.Failed() {
			s.t.Logf("%s output:\n%s", sv.what, sv.out.String())
		}
	}
	s.servers = nil
}

// serverLogs is the running servers' output, to explain a failed command.
func (s *readmeSession) serverLogs() string {
	var b strings.Builder
	for _, sv := range s.servers {
		fmt.Fprintf(&b, "\n%s output:\n%s", sv.what, sv.out.String())
	}
	return b.String()
}

// checkNothingLeft checks that the stopped servers left nothing of their
// containers behind in any data directory the commands used. It looks
// from the session's network namespace, where the servers made their
// links and firewall (a look from the test's own would find another test
// process's wharf whose scope tag is the same, and miss theirs). What a
// server left is explained by the output of every server stopped.
func (s *readmeSession) checkNothingLeft() {
	dirs, _ := filepath.Glob(filepath.Join(s.root, "*", ".wharf"))
	examples, _ := filepath.Glob(filepath.Join(s.root, "examples", "*", ".wharf"))
	left := map[string][]string{}
	ns, err := testnet.Do(filepath.Base(s.netns), func() {
		for _, dir := range append(dirs, examples...) {
			left[dir] = containerd.HostLeftovers(dir)
		}
	})
	require.NoError(s.t, err)
	ns.Close()
	clean := true
	for _, dir := range append(dirs, examples...) {
		clean = assert.Empty(s.t, left[dir], "left behind under %s", dir) && clean
	}
	if !clean {
		for _, sv := range s.stopped {
			s.t.Logf("%s output:\n%s", sv.what, sv.out.String())
		}
	}
}
