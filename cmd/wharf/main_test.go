package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testutil"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	out, err := run(t, "version")
	require.NoError(t, err)
	assert.Regexp(t, `^wharf dev \(ABI wharf_v2 v2, go1\.\d+`, out, "a test binary records no commit")

	// make build stamps the version at link time.
	bin := stampedWharf(t)
	stamped, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Regexp(t, `^wharf 1a2b3c4-dirty \(ABI wharf_v2 v2, go1\.\d+`, string(stamped))
}

var stamped struct {
	sync.Mutex
	bin string
}

// stampedWharf builds wharf as make build does, with the version
// 1a2b3c4-dirty stamped at link time, once per test process (the link
// takes 15-40 s; TestVersion runs once per engine), and returns its path.
func stampedWharf(t *testing.T) string {
	t.Helper()
	stamped.Lock()
	defer stamped.Unlock()
	if stamped.bin != "" {
		return stamped.bin
	}
	dir, err := testutil.ScratchDir("stamped")
	require.NoError(t, err)
	bin := filepath.Join(dir, "wharf")
	out, err := exec.Command("go", "build", "-ldflags", "-X main.version=1a2b3c4-dirty", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	stamped.bin = bin
	return bin
}

func TestBuildWritesWasm(t *testing.T) {
	dir := filepath.Join(testutil.RepoRoot(), "examples", "hello")
	out := filepath.Join(t.TempDir(), "hello.wasm")
	stdout, err := run(t, "build", dir, "-o", out)
	require.NoError(t, err)
	assert.Equal(t, out+"\n", stdout)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, []byte("\x00asm"), data[:4])
}

// TestBuildInterruptedLeavesNothing: Ctrl-C during wharf build stops go
// build and the compiles it started, says so, and removes the build's
// directory (go build's work directory in it) beside the module, which it
// left until the next build. A cold Go cache keeps the build going.
func TestBuildInterruptedLeavesNothing(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(testutil.BuildWharf(t), "build", filepath.Join(testutil.RepoRoot(), "examples", "hello"), "-o", filepath.Join(out, "hello.wasm"))
	cmd.Env = append(os.Environ(), "GOCACHE="+t.TempDir())
	var log testutil.LogBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	require.Eventually(t, func() bool {
		entries, _ := os.ReadDir(out)
		return len(entries) > 0 && len(testutil.Processes("/compile", out)) > 0
	}, time.Minute, 10*time.Millisecond, "the build's directory, and compiles working in it")
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	require.Error(t, cmd.Wait())
	assert.Contains(t, log.String(), "wharf: stopped: interrupt signal received\n")
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	assert.Empty(t, entries, "what the build wrote")
	assert.Empty(t, testutil.Processes("/compile", out), "compiles of the build")
}

func TestServeRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	notWasm := write("plugin.wasm", "hello, not wasm")
	truncated := write("truncated.wasm", "\x00asm\x01\x00\x00\x00\x01") // the engine refuses it, compiling apart
	cases := map[string]string{
		write("unknown.toml", "name = \"x\"\nmain = \"plugin.wasm\"\nport = 80\n"):                      `unknown.toml:3:1: unknown key "port"`,
		write("notwasm.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n"):                                 "plugin " + notWasm + ": invalid plugin module: not a WebAssembly module",
		write("truncated.toml", "name = \"x\"\nmain = \"truncated.wasm\"\n"):                            "plugin " + truncated + ": invalid plugin module: ",
		write("nomain.toml", "name = \"x\"\nmain = \"missing\"\n"):                                      `nomain.toml:2:8: main: "missing" is neither a Go package directory nor a .wasm file`,
		write("nowasm.toml", "name = \"x\"\nmain = \"absent.wasm\"\n"):                                  `nowasm.toml:2:8: main: "absent.wasm": no such file or directory`,
		filepath.Join(dir, "absent.toml"):                                                               "no plugin at " + filepath.Join(dir, "absent.toml") + ": give a plugin's directory or its wharf.toml (wharf init makes one)",
		filepath.Join(dir, "nosuchdir"):                                                                 "no plugin at " + filepath.Join(dir, "nosuchdir") + ": give",
		dir:                                                                                             "no plugin at " + filepath.Join(dir, "wharf.toml") + ": give",
		write("engine.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\nengine = \"v8\"\n"):       `engine.toml:4:10: limits.engine: unknown engine "v8" (want wazero or wasmtime)`,
		write("head.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\nheader_timeout = \"5m\"\n"): `head.toml:4:18: limits.header_timeout: must be at most 1m0s (a slow client holds a connection that long), got 5m0s`,
		write("long.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\ntimeout = \"10000000h\"\n"): `long.toml:4:11: limits.timeout: duration "10000000h" is too long: at most 4294967295 seconds`,
		// Each was accepted: a server that closed every connection at once,
		// an unbounded connection cap, a watchdog whose ticker panicked,
		// strconv's "value out of range".
		write("fast.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\nheader_timeout = \"1ns\"\n"):               `fast.toml:4:18: limits.header_timeout: must be at least 1s (a client on a slow network takes that long to send a request's head), got 1ns`,
		write("conns.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\nmax_connections = 9223372036854775807\n"): `conns.toml:4:19: limits.max_connections: must be at most 65536 (each connection holds a file descriptor and up to max_header_bytes of memory), got 9223372036854775807`,
		write("slice.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\ncpu_slice = \"1ns\"\n"):                   `slice.toml:4:13: limits.cpu_slice: must be at least 10ms (the watchdog that enforces it wakes four times a slice), got 1ns`,
		write("huge.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n[limits]\ntimeout = 1e400\n"):                        `huge.toml:4:11: limits.timeout: want a duration such as "30s" or a whole number of seconds, got 1e400`,
	}
	for manifest, want := range cases {
		_, err := run(t, "serve", manifest, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
		if assert.Error(t, err, manifest) {
			assert.Contains(t, err.Error(), want)
		}
	}
	_, err := run(t, "serve", write("ok.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n"), "--log-level", "loud")
	assert.EqualError(t, err, `--log-level must be debug, info, warn or error, got "loud"`)
	_, err = run(t, "serve", write("ok.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n"), "--engine", "v8")
	assert.ErrorContains(t, err, `--engine: unknown engine "v8" (want wazero or wasmtime)`)
	for _, mb := range []string{"-1", "8796093022208"} { // 2^43 MiB is 2^63 bytes
		_, err = run(t, "serve", write("ok.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n"), "--storage-memory-mb", mb)
		assert.ErrorContains(t, err, "--storage-memory-mb must be 0 (no limit) or more, and fit in 64 bits as bytes, got "+mb)
	}
	// A DNS server without a port (or not an IP) was taken as it was, and
	// every name containers may reach then failed to resolve, unsaid.
	_, err = run(t, "serve", write("ok.toml", "name = \"x\"\nmain = \"plugin.wasm\"\n"), "--dns-upstream", "127.0.0.53,resolver.lan")
	assert.EqualError(t, err, `--dns-upstream: DNS server "resolver.lan" is not an IP address with an optional port (192.0.2.53, 192.0.2.53:53 or [2001:db8::53]:53)`)
}

// TestImagesImportRefusesANameWithWhitespace: wharf images import --name
// with whitespace or a control character in it is refused before anything
// starts: "--name 'a<tab>b'" imported an image of that name, which broke
// the columns of wharf images ls.
func TestImagesImportRefusesANameWithWhitespace(t *testing.T) {
	data := t.TempDir()
	for _, n := range []string{"a\tb", "my app:1", " x:1", "x:1\n"} {
		_, err := run(t, "images", "import", "busybox.tar", "--name", n, "--data-dir", data)
		assert.EqualError(t, err, "--name "+strconv.Quote(n)+" has whitespace or a control character, which no image name does")
	}
	// An invisible format character (Unicode Cf) made a name that ls
	// showed as another one ("my\u200bapp:1" as "my​app:1").
	// So did another character a terminal draws as nothing that is not
	// one (default-ignorable: a Hangul filler U+3164, a combining
	// grapheme joiner U+034F, a variation selector U+FE0F).
	for n, r := range map[string]string{"my\u200bapp:1": "U+200B", "\ufeffapp:1": "U+FEFF",
		"my\u3164app:1": "U+3164", "myapp:1\u034f": "U+034F", "my\ufe0fapp:1": "U+FE0F"} {
		_, err := run(t, "images", "import", "busybox.tar", "--name", n, "--data-dir", data)
		assert.EqualError(t, err, "--name "+strconv.QuoteToASCII(n)+" has an invisible character ("+r+"), which no image name does")
	}
	entries, err := os.ReadDir(data)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing started in the data directory")
}

// TestImagesPullRefusesAControlCharacter: wharf images pull given a
// reference with a tab or a newline in it is refused before anything
// starts, the reference quoted: it started containerd in the data
// directory, then said "pulling a", and on the next line "b: failed to
// resolve reference".
func TestImagesPullRefusesAControlCharacter(t *testing.T) {
	data := t.TempDir()
	const like = " (like docker.io/library/busybox:1.36)"
	for _, ref := range []string{"a\nb", "docker.io/library/busy\tbox:1.36", "busybox:1\x7f"} {
		_, err := run(t, "images", "pull", ref, "--data-dir", data)
		assert.EqualError(t, err, "image reference "+strconv.Quote(ref)+" has a control character (a tab, a newline), which no image reference does"+like)
	}
	entries, err := os.ReadDir(data)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing started in the data directory")
}

// TestImagesBuildRefusesTagsDockerCannotName: images build --tag refuses,
// before it starts anything, a name docker's reference grammar refuses
// (an empty path component, a component starting with "." or "-"); the
// lax parser it used took "a//b", "../x" and "-t", built the image and
// stored it under that name, which no FROM can name.
func TestImagesBuildRefusesTagsDockerCannotName(t *testing.T) {
	data := t.TempDir()
	for _, tag := range []string{"a//b", "../x", "-t", "app/-x:1", "a/./b:1", "app_:1", "registry.example/team//app:v2"} {
		_, err := run(t, "images", "build", "--tag", tag, "--data-dir", data)
		require.Error(t, err, tag)
		assert.EqualError(t, err, "--tag "+strconv.Quote(tag)+
			" is not an image name (like myapp:1 or registry.example/team/app:v2): invalid reference format", tag)
	}
	entries, err := os.ReadDir(data)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing started in the data directory")
	for _, tag := range []string{"myapp", "myapp:1", "registry.example/team/app:v2", "localhost:5000/a/b:c", "a__b/c-d.e:v1.2_3"} {
		assert.NoError(t, checkTag(tag), tag)
	}
}

// TestImagesRefuseEmptyOrBlankArguments: images rm, pull, import and
// build refuse an empty or blank (whitespace only) name, reference or
// path, and a name or reference with whitespace around it, before they
// start anything, saying which; rm said "removing image : not found" (and
// "removing image  : not found" for " "), pull " " a parse error about
// "dummy:// ", build "" or " " "stat : no such file or directory".
func TestImagesRefuseEmptyOrBlankArguments(t *testing.T) {
	data := t.TempDir()
	const ls = " (`wharf images ls` lists the images)"
	const like = " (like docker.io/library/busybox:1.36)"
	const dot = " (leave it out for the current directory)"
	const tag = " (like myapp:1 or registry.example/team/app:v2)"
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"rm", ""}, "an image name is required, not an empty one" + ls},
		{[]string{"rm", "wharf.test/busybox:latest", ""}, "an image name is required, not an empty one" + ls},
		{[]string{"rm", " "}, `an image name is required, not " "` + ls},
		{[]string{"rm", "wharf.test/busybox:latest", "\t \n"}, `an image name is required, not "\t \n"` + ls},
		{[]string{"rm", " wharf.test/busybox:latest"}, `image name " wharf.test/busybox:latest" begins or ends with whitespace, which no image name does` + ls},
		{[]string{"rm", "wharf.test/busybox:latest", "busybox\n"}, `image name "busybox\n" begins or ends with whitespace, which no image name does` + ls},
		{[]string{"pull", ""}, "an image reference is required, not an empty one" + like},
		{[]string{"pull", " "}, `an image reference is required, not " "` + like},
		{[]string{"pull", "busybox "}, `image reference "busybox " begins or ends with whitespace, which no image reference does` + like},
		{[]string{"import", ""}, "an archive path is required, not an empty one"},
		{[]string{"import", "  "}, `an archive path is required, not "  "`},
		{[]string{"build", ""}, "a build context or Dockerfile, if given, cannot be an empty one" + dot},
		{[]string{"build", " ", "--tag", "wharf.test/x:1"}, `a build context or Dockerfile, if given, cannot be " "` + dot},
		// images build --tag, blank or with whitespace around it, is
		// refused so too: " " got the image name parser's "repository can
		// only contain the characters ...", after containerd had started.
		{[]string{"build", "--tag", " "}, `--tag: an image name is required, not " "` + tag},
		{[]string{"build", "--tag", "\t\n"}, `--tag: an image name is required, not "\t\n"` + tag},
		{[]string{"build", "--tag", " myapp:1"}, `--tag: image name " myapp:1" begins or ends with whitespace, which no image name does` + tag},
		{[]string{"build", "--tag", "my\tapp:1"}, `--tag: image name "my\tapp:1" has a control character (a tab, a newline), which no image name does` + tag},
		{[]string{"build"}, "--tag is required"},
		// A zero-width space or another invisible format character
		// (Unicode Cf) counts as whitespace: rm "\u200b" said "removing
		// image ​: not found", which shows no name.
		{[]string{"rm", "\u200b"}, `an image name is required, not "\u200b"` + ls},
		{[]string{"rm", " \ufeff"}, `an image name is required, not " \ufeff"` + ls},
		{[]string{"rm", "\u200bwharf.test/busybox:latest"}, `image name "\u200bwharf.test/busybox:latest" begins or ends with an invisible character (U+200B), which no image name does` + ls},
		{[]string{"pull", "\u200e"}, `an image reference is required, not "\u200e"` + like},
		{[]string{"pull", "busy\u200bbox:1.36"}, `image reference "busy\u200bbox:1.36" has an invisible character (U+200B), which no image reference does` + like},
		{[]string{"import", "\u200b"}, `an archive path is required, not "\u200b"`},
		{[]string{"build", "--tag", "\u200b"}, `--tag: an image name is required, not "\u200b"` + tag},
		{[]string{"build", "--tag", "myapp\u2060:1"}, `--tag: image name "myapp\u2060:1" has an invisible character (U+2060), which no image name does` + tag},
		// So do the default-ignorable characters that are not format
		// characters: rm "\u3164" (a Hangul filler) said "removing image
		// ㅤ: not found", which shows no name either.
		{[]string{"rm", "\u3164"}, `an image name is required, not "\u3164"` + ls},
		{[]string{"rm", "\u115f\u034f"}, `an image name is required, not "\u115f\u034f"` + ls},
		{[]string{"rm", "wharf.test/busybox:latest\ufe0f"}, `image name "wharf.test/busybox:latest\ufe0f" begins or ends with an invisible character (U+FE0F), which no image name does` + ls},
		{[]string{"pull", "busy\uffa0box:1.36"}, `image reference "busy\uffa0box:1.36" has an invisible character (U+FFA0), which no image reference does` + like},
		{[]string{"build", "--tag", "\u3164"}, `--tag: an image name is required, not "\u3164"` + tag},
		// The blank braille pattern is a symbol, but drawn as a blank.
		{[]string{"rm", "\u2800"}, `an image name is required, not "\u2800"` + ls},
		{[]string{"pull", "busy\u2800box:1.36"}, `image reference "busy\u2800box:1.36" has an invisible character (U+2800), which no image reference does` + like},
		// A missing or extra argument says which (cobra said "accepts 1 arg(s), received 0").
		{[]string{"rm"}, "an image name is required" + ls},
		{[]string{"pull"}, "an image reference is required" + like},
		{[]string{"import"}, "an archive path is required"},
		{[]string{"pull", "a:1", "b:1"}, `wharf images pull takes one image reference, got 2: "a:1" "b:1"`},
		{[]string{"import", "a.tar", "b.tar"}, `wharf images import takes one archive path, got 2: "a.tar" "b.tar"`},
		{[]string{"build", "a", "b", "--tag", "wharf.test/x:1"}, `wharf images build takes at most one build context or Dockerfile, got 2: "a" "b"`},
	} {
		_, err := run(t, append(append([]string{"images"}, c.args...), "--data-dir", data)...)
		assert.EqualError(t, err, c.says, "images %q", c.args)
	}
	entries, err := os.ReadDir(data)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing started in the data directory")

	// A path may have whitespace around it: a file can be named so.
	archivePath, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	spaced := archivePath + " "
	require.NoError(t, os.Rename(archivePath, spaced))
	out, err := run(t, "images", "import", spaced, "--data-dir", data)
	require.NoError(t, err)
	assert.Contains(t, out, "imported wharf.test/busybox:latest (sha256:")
	// rm refuses a blank name before it removes the names before it.
	_, err = run(t, "images", "rm", "wharf.test/busybox:latest", " ", "--data-dir", data)
	assert.EqualError(t, err, `an image name is required, not " "`+ls)
	out, err = run(t, "images", "ls", "--data-dir", data)
	require.NoError(t, err)
	assert.Contains(t, out, "\nwharf.test/busybox:latest ", "still there")
}

// TestClusterCertSaysWhatToRun: wharf cluster cert without a host name
// said "accepts 1 arg(s), received 0", and without a CA "make it with
// wharf cluster init", a command that made it elsewhere than --certs.
func TestClusterCertSaysWhatToRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	_, err := run(t, "cluster", "cert", "--certs", dir)
	assert.EqualError(t, err, "a host name is required (the --cluster-name that host serves with)")
	_, err = run(t, "cluster", "cert", "host-a", "--certs", dir)
	assert.ErrorContains(t, err, "(make it with wharf cluster init --certs "+dir+", once per cluster)")
	_, err = run(t, "cluster", "init", "--certs", dir)
	require.NoError(t, err)
	out, err := run(t, "cluster", "cert", "host-a", "--certs", dir)
	require.NoError(t, err)
	assert.Equal(t, "certificate of host-a written to "+dir+"\n", out)
}

// TestImagesPruneSaysWhenNothingIsRemoved: wharf images prune that
// removes no image says so; it said only "build cache: freed 0.0 MB", as
// if images had not been looked at.
func TestImagesPruneSaysWhenNothingIsRemoved(t *testing.T) {
	const none = "images: nothing to prune (a loaded plugin uses every image, or there is none)\n"
	data := t.TempDir()
	out, err := run(t, "images", "prune", "--data-dir", data)
	require.NoError(t, err)
	assert.Equal(t, none+"build cache: freed 0.0 MB\n", out)

	archivePath, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	_, err = run(t, "images", "import", archivePath, "--data-dir", data)
	require.NoError(t, err)
	out, err = run(t, "images", "prune", "--data-dir", data)
	require.NoError(t, err)
	assert.Equal(t, "removed wharf.test/busybox:latest\nbuild cache: freed 0.0 MB\n", out, "only what it removed")
	out, err = run(t, "images", "prune", "--data-dir", data)
	require.NoError(t, err)
	assert.Equal(t, none+"build cache: freed 0.0 MB\n", out)
}

func TestImagesImportListRemove(t *testing.T) {
	archivePath, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	data := t.TempDir()
	out, err := run(t, "images", "import", archivePath, "--data-dir", data)
	require.NoError(t, err)
	assert.Contains(t, out, "imported wharf.test/busybox:latest (sha256:")
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	img, err := tarball.ImageFromPath(archivePath, nil)
	require.NoError(t, err)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/x/busybox:v1"
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	require.NoError(t, remote.Write(tag, img))
	out, err = run(t, "images", "pull", ref, "--data-dir", data)
	require.NoError(t, err)
	assert.Contains(t, out, "pulled "+ref+" (sha256:")
	assert.Contains(t, out, ": 1 blobs", "progress lines (stderr shares the buffer here)")
	_, err = run(t, "images", "rm", ref, "--data-dir", data)
	require.NoError(t, err)
	// A missing tag is said once, by the error: containerd's resolver also
	// logged "fetch failed after status: 404 Not Found" at info, through
	// logrus's standard logger (wharf's stderr), before it.
	var logged bytes.Buffer
	std := logrus.StandardLogger()
	defer std.SetOutput(std.Out)
	std.SetOutput(&logged)
	missing := strings.TrimPrefix(reg.URL, "http://") + "/x/busybox:nope"
	out, err = run(t, "images", "pull", missing, "--data-dir", data)
	assert.ErrorContains(t, err, "pulling "+missing+": ")
	assert.ErrorContains(t, err, "not found")
	assert.NotContains(t, out, "fetch failed")
	assert.NotContains(t, logged.String(), "fetch failed")

	out, err = run(t, "images", "ls", "--data-dir", data)
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^NAME\s+DIGEST\s+SIZE\s+USED BY\nwharf.test/busybox:latest\s+sha256:[0-9a-f]{64}\s+[0-9.]+ MB\s+-$`, out)
	out, err = run(t, "images", "rm", "wharf.test/busybox:latest", "--data-dir", data)
	require.NoError(t, err)
	assert.Equal(t, "removed wharf.test/busybox:latest\n", out)
	// A missing image points at the list of those there are.
	_, err = run(t, "images", "rm", "wharf.test/busybox:latest", "--data-dir", data)
	assert.EqualError(t, err, "removing image wharf.test/busybox:latest: not found (`wharf images ls` lists the images)")
	_, err = run(t, "images", "rm", "nosuch:1", "--data-dir", data)
	assert.EqualError(t, err, "removing image nosuch:1: not found (`wharf images ls` lists the images)")
	_, err = run(t, "images", "import", "/nonexistent.tar", "--data-dir", data)
	assert.ErrorContains(t, err, "/nonexistent.tar")
	_, err = run(t, "images", "ls", "--containerd-address", filepath.Join(t.TempDir(), "none.sock"))
	assert.ErrorContains(t, err, "none.sock")
}

// TestDurationFlags: duration flags read durations as wharf.toml does (a
// whole number is seconds) and refuse what would make no sense, such as a
// stats interval of 0, which would poll the server in a loop.
func TestDurationFlags(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"stats", "--interval", "0"}, `invalid argument "0" for "--interval" flag: duration "0" must be positive`},
		{[]string{"stats", "--interval", "-1s"}, `invalid argument "-1s" for "--interval" flag: duration "-1s" must be positive`},
		{[]string{"stats", "--interval", "soon"}, `invalid argument "soon" for "--interval" flag: invalid duration "soon": use e.g. "30s", "5m", "1h" or a number of seconds`},
		{[]string{"stats", "--interval", "10000000h"}, `invalid argument "10000000h" for "--interval" flag: duration "10000000h" is too long: at most 4294967295 seconds`},
		{[]string{"stats", "--interval", "2", "--data-dir", empty}, "no wharf serve is running with this data directory"},
		{[]string{"serve", "--stop-grace", "-1s", empty}, `invalid argument "-1s" for "--stop-grace" flag: duration "-1s" must not be negative`},
		{[]string{"serve", "--stop-grace", "-1", empty}, `invalid argument "-1" for "--stop-grace" flag: duration "-1" must not be negative`},
		{[]string{"serve", "--stop-grace", "0", empty}, "no plugin at " + empty},
		{[]string{"serve", "--stop-grace", "10", empty}, "no plugin at " + empty},
	} {
		_, err := run(t, c.args...)
		require.Error(t, err, c.args)
		assert.Contains(t, err.Error(), c.want, c.args)
	}
	var d time.Duration
	v := &durationValue{d: &d, zeroOK: true}
	require.NoError(t, v.Set("10"))
	assert.Equal(t, 10*time.Second, d)
	require.NoError(t, v.Set("0s"))
	assert.Equal(t, time.Duration(0), d)
}

// TestBuildPrintsManifestWarnings: what wharf serve would log as a warning
// about the manifest, wharf build prints before it builds.
func TestBuildPrintsManifestWarnings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wharf.toml")
	hello := filepath.Join(testutil.RepoRoot(), "examples", "hello")
	require.NoError(t, os.WriteFile(path, []byte("name = \"w\"\nmain = \""+hello+"\"\n[limits]\ntimeout = \"1s\"\ncpu_slice = \"2s\"\n"), 0o644))
	out, err := run(t, "build", path, "-o", filepath.Join(dir, "w.wasm"))
	require.NoError(t, err)
	assert.Contains(t, out, "warning: "+path+":5:13: limits.cpu_slice: 2s is longer than limits.timeout, which caps it")
	assert.FileExists(t, filepath.Join(dir, "w.wasm"))
}
