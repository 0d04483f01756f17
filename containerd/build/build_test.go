package build_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testregistry"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestMain removes what the tests built (testutil.Run).
func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// multiStage uses every instruction the issue lists, FROM a base image on
// a loopback registry named by a build argument.
const multiStage = `ARG BASE
FROM ${BASE} AS builder
ARG GREETING=hello
RUN echo "$GREETING from the builder" > /greeting
FROM ${BASE}
ENV APP_MODE=test
WORKDIR /srv
COPY --from=builder /greeting ./greeting
COPY app/ ./app/
RUN test ! -e ./app/secret.txt && test -e ./app/main.sh && mkdir /data && chown app /data
USER app
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/greeting"]
`

type fixture struct {
	backend *containerd.Backend
	engine  *build.Engine
	base    string
	dataDir string
}

// leftovers is what containerd.Leftovers lists for the fixture's data
// directory.
func (f *fixture) leftovers(t *testing.T) []string {
	left, err := containerd.Leftovers(context.Background(), f.backend.Client, f.backend.Address, f.dataDir)
	require.NoError(t, err)
	return left
}

// start runs wharf's containerd and buildkitd in a temp data dir, with the
// busybox test image on a loopback registry as the base.
func start(t *testing.T) *fixture { return startIn(t, t.TempDir()) }

// startIn is start with the data directory dataDir.
func startIn(t *testing.T, dataDir string) *fixture {
	return startWith(t, dataDir, build.EngineOptions{})
}

// startWith is startIn with the engine's options opts.
func startWith(t *testing.T, dataDir string, opts build.EngineOptions) *fixture {
	testutil.BuildBuildkitd(t)
	ctx := context.Background()
	base := testimages.BusyboxBase(t)
	b := openBackend(t, dataDir)
	e, err := build.Start(ctx, b, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		assert.Empty(t, containerd.MountsUnder(dataDir), "mounts left after buildkitd stopped")
		assert.Empty(t, testutil.Processes("buildkitd", build.Dir(dataDir)), "buildkitd still running")
	})
	return &fixture{backend: b, engine: e, base: base, dataDir: dataDir}
}

// openBackend runs wharf's containerd in dataDir, and checks when the
// test ends that nothing of its containers is left there.
func openBackend(t *testing.T, dataDir string) *containerd.Backend {
	ctx := context.Background()
	b, err := containerd.OpenBackend(ctx, dataDir, "", slog.Default())
	require.NoError(t, err)
	t.Cleanup(func() {
		leftovers, err := containerd.Leftovers(ctx, b.Client, b.Address, dataDir)
		assert.NoError(t, err)
		assert.Empty(t, leftovers)
		b.Close()
	})
	return b
}

func writeContext(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

func TestBuildMultiStageThenCached(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	dir := writeContext(t, map[string]string{
		"Dockerfile":     multiStage,
		".dockerignore":  "app/secret.txt\n",
		"app/main.sh":    "echo main\n",
		"app/secret.txt": "not for the image\n",
	})
	opts := build.Options{Context: dir, Tag: "wharf.test/built:1",
		BuildArgs: map[string]string{"BASE": f.base, "GREETING": "hi"}}
	var progress bytes.Buffer
	opts.Progress = &progress
	began := time.Now()
	img, err := f.engine.Build(ctx, opts)
	require.NoError(t, err, progress.String())
	t.Logf("first build: %v", time.Since(began).Round(time.Millisecond))
	assert.Equal(t, "wharf.test/built:1", img.Name)
	assert.Contains(t, progress.String(), "[stage-1 5/5] RUN test ! -e ./app/secret.txt")
	assert.Contains(t, progress.String(), "DONE")

	spec, greeting := inspect(t, f.backend, img.Name, "srv/greeting")
	assert.Equal(t, "hi from the builder\n", greeting)
	cfg := spec.Config
	assert.Contains(t, cfg.Env, "APP_MODE=test")
	assert.Equal(t, "/srv", cfg.WorkingDir)
	assert.Equal(t, "app", cfg.User)
	assert.Contains(t, cfg.ExposedPorts, "8080/tcp")
	assert.Equal(t, []string{"/bin/sh", "-c"}, cfg.Entrypoint)
	assert.Equal(t, []string{"cat /srv/greeting"}, cfg.Cmd)
	assert.Equal(t, "amd64", spec.Architecture)

	progress.Reset()
	began = time.Now()
	again, err := f.engine.Build(ctx, opts)
	require.NoError(t, err, progress.String())
	t.Logf("second build (cache): %v", time.Since(began).Round(time.Millisecond))
	assert.Equal(t, img.Name, again.Name)
	assert.Equal(t, img.Digest, again.Digest, "a build that changed nothing is the same image")
	assert.Equal(t, 5, strings.Count(progress.String(), "CACHED"), "every RUN, COPY and WORKDIR step comes from the cache")
}

func TestBuildErrorNamesTheLine(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	for _, tc := range []struct{ name, dockerfile, want string }{
		{"failing RUN", "ARG BASE\nFROM ${BASE}\nRUN echo ok\nRUN exit 3\n", ":4: process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"},
		{"unknown instruction", "ARG BASE\nFROM ${BASE}\nFROBNICATE now\n", ":3: dockerfile parse error on line 3: unknown instruction: FROBNICATE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			var progress bytes.Buffer
			_, err := f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/broken:1",
				BuildArgs: map[string]string{"BASE": f.base}, Progress: &progress})
			require.Error(t, err)
			assert.Contains(t, err.Error(), filepath.Join(dir, "Dockerfile")+tc.want)
			assert.Contains(t, progress.String(), ">>>", "the failing line is shown")
		})
	}
	// The engine still builds after the failures.
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo fine\n"})
	_, err := f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/fine:1", BuildArgs: map[string]string{"BASE": f.base}})
	require.NoError(t, err)
}

// TestBuildStepsRunInTheBackendsCgroup: a RUN step's container runs in a
// cgroup below the backend's BuildCgroupParent, not in BuildKit's default
// /buildkit shared by every BuildKit on the host; closing the engine
// removes them all (start's cleanup checks that no cgroup is left: runc
// removes a step's own as it ends, but not always, nor its parents).
func TestBuildStepsRunInTheBackendsCgroup(t *testing.T) {
	f := start(t)
	pattern := filepath.Join(f.backend.BuildCgroupParent(), "buildkit", "*")
	stepCgroups := func() []string {
		v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", pattern))
		v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", pattern))
		var dirs []string
		for _, p := range append(v1, v2...) {
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				dirs = append(dirs, p)
			}
		}
		return dirs
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG RUN\nRUN echo $RUN && sleep 1\n"})
	built := make(chan error, 1)
	go func() {
		_, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/cgroup:1",
			BuildArgs: map[string]string{"BASE": f.base, "RUN": t.Name()}})
		built <- err
	}()
	var seen []string
	for seen == nil {
		select {
		case err := <-built:
			require.NoError(t, err)
			require.Fail(t, "the build ended before its step was seen in "+pattern)
		case <-time.After(20 * time.Millisecond):
			seen = stepCgroups()
		}
	}
	require.NoError(t, <-built)
	t.Logf("step cgroups: %v", seen)
}

// TestBuildThroughAnotherContainerdLeavesNoCgroup: a wharf building on a
// containerd it did not start (--containerd-address) puts its steps in the
// build cgroup of its own data directory too, and closing the engine
// removes it: runc removes only each step's cgroup, which left the
// parents (<hash>-build/buildkit) in every hierarchy after every build.
func TestBuildThroughAnotherContainerdLeavesNoCgroup(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	b, err := containerd.OpenBackend(ctx, dataDir, f.backend.Address, slog.Default())
	require.NoError(t, err)
	t.Cleanup(func() {
		b.Close()
		assert.Empty(t, containerd.HostLeftovers(dataDir))
	})
	e, err := build.Start(ctx, b, build.EngineOptions{})
	require.NoError(t, err)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG RUN\nRUN echo $RUN\n"})
	_, err = e.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/shared-cgroup:1",
		BuildArgs: map[string]string{"BASE": f.base, "RUN": t.Name()}})
	require.NoError(t, errors.Join(err, e.Close()))
}

func TestHashFollowsTheContext(t *testing.T) {
	dir := writeContext(t, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY . /\n",
		".dockerignore": "ignored/\n",
		"a.txt":         "a",
		"ignored/x":     "x",
	})
	opts := build.Options{Context: dir}
	h3 := assertHashCounts(t, opts, filepath.Join(dir, "ignored", "x"), filepath.Join(dir, "a.txt"))
	opts.BuildArgs = map[string]string{"K": "V"}
	h4, err := opts.Hash(context.Background())
	require.NoError(t, err)
	assert.NotEqual(t, h3, h4, "build arguments count")
}

// assertHashCounts asserts that a change to the file ignored leaves the
// hash of opts's context as it was, and that one to the file counted
// changes it; it returns the hash after both.
func assertHashCounts(t *testing.T, opts build.Options, ignored, counted string) string {
	t.Helper()
	ctx := context.Background()
	h1, err := opts.Hash(ctx)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ignored, []byte("changed"), 0o600))
	h2, err := opts.Hash(ctx)
	require.NoError(t, err)
	assert.Equal(t, h1, h2, "%s does not count", ignored)
	require.NoError(t, os.WriteFile(counted, []byte("changed"), 0o644))
	h3, err := opts.Hash(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, h1, h3, "%s counts", counted)
	return h3
}

// TestHashCountsASymlinksTarget: the image holds a symlink of the
// context as a link, so pointing it elsewhere changes the image, and the
// hash: it counted the link's size only, and a link pointed at another
// name of the same length left a plugin's image "up to date".
func TestHashCountsASymlinksTarget(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", "a.txt": "a", "b.txt": "b"})
	link := filepath.Join(dir, "current")
	require.NoError(t, os.Symlink("a.txt", link))
	opts := build.Options{Context: dir}
	ctx := context.Background()
	h1, err := opts.Hash(ctx)
	require.NoError(t, err)
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink("b.txt", link))
	h2, err := opts.Hash(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, h1, h2, "the link points elsewhere")
	require.NoError(t, os.Remove(link))
	require.NoError(t, os.Symlink("a.txt", link))
	h3, err := opts.Hash(ctx)
	require.NoError(t, err)
	assert.Equal(t, h1, h3, "the same link again")
}

// inspect returns an image's config and the content of one file of its
// root filesystem, read through a snapshot view.
func inspect(t *testing.T, b *containerd.Backend, name, file string) (spec ocispec.Image, content string) {
	ctx := containerd.WithNamespace(context.Background())
	img, err := b.Client.GetImage(ctx, name)
	require.NoError(t, err)
	spec, err = img.Spec(ctx)
	require.NoError(t, err)
	diffIDs, err := img.RootFS(ctx)
	require.NoError(t, err)
	sn := b.Client.SnapshotService(containerd.Snapshotter)
	key := "inspect-" + t.Name()
	mounts, err := sn.View(ctx, key, identity.ChainID(diffIDs).String())
	require.NoError(t, err)
	defer sn.Remove(ctx, key)
	require.NoError(t, mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
		f, err := os.Open(filepath.Join(root, file))
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		content = string(b)
		return err
	}))
	return spec, content
}

// TestBuildFromPrivateRegistry builds FROM a base on a loopback registry
// that requires a password: with docker's config.json the build pulls it;
// with a wrong password it fails saying the registry refused.
func TestBuildFromPrivateRegistry(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	reg := testregistry.Start(t, "builder", "s3cret")
	base := reg.PushArchive(t, archive, "private/busybox:1")
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN echo private > /from.txt\n"})
	auth := func(password string) *configfile.ConfigFile {
		cfg := configfile.New("test-auth.json")
		cfg.AuthConfigs = map[string]types.AuthConfig{reg.Host: {Username: "builder", Password: password}}
		return cfg
	}

	var progress bytes.Buffer
	_, err = f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/private:1", Auth: auth("wrong"), Progress: &progress})
	require.Error(t, err)
	assert.ErrorIs(t, err, containerd.ErrRegistryAuth, "explained as wharf images pull explains it")
	assert.Contains(t, err.Error(), filepath.Join(dir, "Dockerfile")+":1: registry refused the credentials for an image the Dockerfile pulls "+
		"(credentials from test-auth.json; log in with docker login or pass --registry-auth FILE): ")
	assert.Contains(t, err.Error(), "401 Unauthorized")

	img, err := f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/private:1", Auth: auth("s3cret")})
	require.NoError(t, err)
	_, content := inspect(t, f.backend, img.Name, "from.txt")
	assert.Equal(t, "private\n", content)
}

// TestStartRecoversFromAnAbandonedBuild plays wharf killed while building:
// the fixture's buildkitd is left running a build container (as one
// outliving a killed wharf would, holding its lock on its state) and a new
// engine is started on the same data directory. The start kills the old
// buildkitd and removes the build container, its task and shim; the new
// engine builds, and nothing is left after (the fixture checks).
func TestStartRecoversFromAnAbandonedBuild(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	slow := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 600\n"})
	abandoned := make(chan error, 1)
	go func() {
		_, err := f.engine.Build(ctx, build.Options{Context: slow, Tag: "wharf.test/slow:1", BuildArgs: map[string]string{"BASE": f.base}})
		abandoned <- err
	}()
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(f.leftovers(t), func(l string) bool { return strings.HasPrefix(l, "build task ") })
	}, 2*time.Minute, 100*time.Millisecond, "the slow build's container never ran")

	e, err := build.Start(ctx, f.backend, build.EngineOptions{})
	require.NoError(t, err, "a buildkitd left running on the data directory does not stop a new one")
	defer func() { require.NoError(t, e.Close()) }()
	select {
	case err := <-abandoned:
		require.Error(t, err, "the old buildkitd is gone")
	case <-time.After(time.Minute):
		t.Fatal("the abandoned build still runs")
	}
	assert.Empty(t, slices.DeleteFunc(f.leftovers(t), func(l string) bool { return !strings.HasPrefix(l, "build ") }),
		"the build container, its task and its temporary leases are removed")
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo fine\n"})
	_, err = e.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/fine:1", BuildArgs: map[string]string{"BASE": f.base}})
	require.NoError(t, err)
}

// unreachableRegistry is a loopback host:port nothing listens on: a
// registry no pull can reach.
func unreachableRegistry(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	host := l.Addr().String()
	require.NoError(t, l.Close())
	return host
}

// importAs imports the busybox test image into wharf's store under name,
// as `wharf images import` of an archive naming it would, and returns the
// image.
func importAs(t *testing.T, b *containerd.Backend, name string) images.Image {
	ctx := containerd.WithNamespace(context.Background())
	archive, err := testimages.Busybox(t.TempDir())
	require.NoError(t, err)
	_, err = containerd.ImportArchive(ctx, b.Client, archive, "")
	require.NoError(t, err)
	img, err := b.Client.ImageService().Get(ctx, testimages.BusyboxRef)
	require.NoError(t, err)
	img.Name = name
	img, err = b.Client.ImageService().Create(ctx, img)
	require.NoError(t, err)
	return img
}

// TestBuildFromAnImportedImage: a FROM naming an image in wharf's store,
// by tag or by digest, builds on it with no registry reachable, and the
// result holds the base's layer and the new one. A stored image whose
// name is a stage's ("stage" is docker.io/library/stage:latest) does not
// replace that stage.
func TestBuildFromAnImportedImage(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	repo := unreachableRegistry(t) + "/imported/busybox"
	base := importAs(t, f.backend, repo+":1")
	importAs(t, f.backend, "docker.io/library/stage:latest")
	stored, err := f.backend.Client.GetImage(containerd.WithNamespace(ctx), base.Name)
	require.NoError(t, err)
	baseLayers, err := stored.RootFS(containerd.WithNamespace(ctx))
	require.NoError(t, err)

	for _, from := range []string{repo + ":1", repo + "@" + base.Target.Digest.String()} {
		t.Run(from, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + from + " AS stage\n" +
				"RUN echo built on the imported image > /new.txt\nFROM stage\n"})
			var progress bytes.Buffer
			img, err := f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/on-imported:1", Progress: &progress})
			require.NoError(t, err, progress.String())
			spec, added := inspect(t, f.backend, img.Name, "new.txt")
			assert.Equal(t, "built on the imported image\n", added)
			_, passwd := inspect(t, f.backend, img.Name, "etc/passwd")
			assert.Contains(t, passwd, "app:x:1000:1000:", "the base's files are there")
			require.Len(t, spec.RootFS.DiffIDs, 2, "the base's layer and the RUN's")
			assert.Equal(t, baseLayers[0], spec.RootFS.DiffIDs[0])
		})
	}
}

// TestBuildFromAMissingImageSaysSo: a FROM naming an image that is not in
// wharf's store (the stored one has another tag) and that no registry
// serves fails naming the image and the line.
func TestBuildFromAMissingImageSaysSo(t *testing.T) {
	f := start(t)
	repo := unreachableRegistry(t) + "/imported/busybox"
	importAs(t, f.backend, repo+":1")
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + repo + ":2\nRUN true\n"})
	_, err := f.engine.Build(context.Background(), build.Options{Context: dir, Tag: "wharf.test/on-missing:1"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "Dockerfile")+":1: image "+repo+":2 is not in wharf's image store and could not be pulled: ")
	assert.Contains(t, err.Error(), "connection refused")
}

// TestBuildTakesTheDockerfilesOwnIgnoreFile: with app.Dockerfile.dockerignore
// next to the Dockerfile, that file decides what the context holds, and
// the context's .dockerignore does not count, as docker build and
// BuildKit's frontend have it. wharf applied .dockerignore always, on top
// of the frontend's choice: a file only .dockerignore excluded was missing
// from the image, and the hash of a plugin's image counted what only the
// Dockerfile's ignore file excluded.
func TestBuildTakesTheDockerfilesOwnIgnoreFile(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	dir := writeContext(t, map[string]string{
		"app.Dockerfile":              "ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\nRUN ls -A /ctx > /listing\n",
		"app.Dockerfile.dockerignore": "secret.txt\n",
		".dockerignore":               "kept.txt\n",
		"kept.txt":                    "kept",
		"secret.txt":                  "secret",
	})
	opts := build.Options{Context: dir, Dockerfile: filepath.Join(dir, "app.Dockerfile"), Tag: "wharf.test/own-ignore:1",
		BuildArgs: map[string]string{"BASE": f.base}}
	var progress bytes.Buffer
	opts.Progress = &progress
	img, err := f.engine.Build(ctx, opts)
	require.NoError(t, err, progress.String())
	_, listing := inspect(t, f.backend, img.Name, "listing")
	assert.Equal(t, []string{".dockerignore", "app.Dockerfile", "app.Dockerfile.dockerignore", "kept.txt"}, strings.Fields(listing))

	assertHashCounts(t, opts, filepath.Join(dir, "secret.txt"), filepath.Join(dir, "kept.txt"))
}

// TestBuildFromASymlinkedDockerfile: a Dockerfile that is a link to one
// elsewhere (app/Dockerfile -> ../shared/Dockerfile) builds; BuildKit got
// the link alone and the build failed with "failed to read dockerfile:
// open Dockerfile: no such file or directory", while wharf serve's hash
// had read the file through the link.
func TestBuildFromASymlinkedDockerfile(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	root := writeContext(t, map[string]string{
		"shared/web.Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY hello.txt /hello.txt\n",
		"app/hello.txt":         "hello",
	})
	require.NoError(t, os.Symlink("../shared/web.Dockerfile", filepath.Join(root, "app", "Dockerfile")))
	contextDir, df, err := build.Source(filepath.Join(root, "app"), "")
	require.NoError(t, err)
	var progress bytes.Buffer
	img, err := f.engine.Build(ctx, build.Options{Context: contextDir, Dockerfile: df, Tag: "wharf.test/linked:1",
		BuildArgs: map[string]string{"BASE": f.base}, Progress: &progress})
	require.NoError(t, err, progress.String())
	_, hello := inspect(t, f.backend, img.Name, "hello.txt")
	assert.Equal(t, "hello", hello)
}

// TestHashLeavesOutADataDirReachedThroughALink: a plugin directory
// reached through a symlink (wharf serve ~/app, ~/app a link) holds its
// data directory, which wharf resolves, under a name that does not begin
// with the context's; ExcludeInside missed it and the whole data
// directory (containerd's store, buildkitd's state, the egress CA, object
// storage) was hashed, sent and copied into the image: `wharf images
// build ~/app --data-dir ~/app/.wharf` built a 33 MB image of a
// Dockerfile that copies one file. A data directory whose name holds
// .dockerignore's special characters is left out too.
func TestHashLeavesOutADataDirReachedThroughALink(t *testing.T) {
	for _, tc := range []struct {
		name        string
		throughLink bool
	}{{".wharf", true}, {"state[1]", false}, {"!data", false}, {"a*b", false}, {"state[1]", true}} {
		t.Run(fmt.Sprintf("%s/link=%v", tc.name, tc.throughLink), func(t *testing.T) {
			real := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", "a.txt": "a"})
			link := real
			if tc.throughLink {
				link = filepath.Join(t.TempDir(), "app")
				require.NoError(t, os.Symlink(real, link))
			}
			dataDir := filepath.Join(link, tc.name)
			require.NoError(t, os.MkdirAll(dataDir, 0o700))
			resolved, err := filepath.EvalSymlinks(dataDir) // as host.LockDataDir and wharf's commands have it
			require.NoError(t, err)
			opts := build.Options{Context: link, Exclude: build.ExcludeInside(link, resolved)}
			assertHashCounts(t, opts, filepath.Join(resolved, "objects.db"), filepath.Join(real, "a.txt"))
		})
	}
}

// TestBadIgnorePatternIsNamed: a pattern of .dockerignore that does not
// parse is named with its file, for wharf serve's hash and for a build;
// the error said "invalid excludepatterns: [[]: syntax error in pattern",
// naming neither.
func TestBadIgnorePatternIsNamed(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", ".dockerignore": "# comment\nok.txt\n[\n"})
	_, err := (&build.Options{Context: dir}).Hash(context.Background())
	assert.EqualError(t, err, filepath.Join(dir, ".dockerignore")+`: pattern "[": syntax error in pattern`)
}

// TestBuildThatExceedsALimitIsStopped: the RUN steps of a data
// directory's builds share a limit of processes and threads (4096 by
// default, 64 here) and one of memory (half of the host's by default, 64
// MiB here), so a step that forks without bound, or allocates more, fails
// in its cgroup, saying which limit it reached, instead of taking every
// pid or the memory of the host; the engine builds on after it. Without
// the limits the step started its 200 processes, or its 256 MiB buffer
// fit, and the build succeeded.
func TestBuildThatExceedsALimitIsStopped(t *testing.T) {
	for _, c := range []struct {
		name, run string
		opts      build.EngineOptions
		says      string
	}{
		{"pids", "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; wait", build.EngineOptions{Pids: 64},
			"(the build's steps reached wharf's limit of 64 processes and threads, all RUN steps together: a step forked without bound)"},
		{"memory", "dd if=/dev/zero of=/dev/null bs=256M count=1", build.EngineOptions{Memory: 64 << 20},
			"(the build's steps reached wharf's limit of 64 MiB of memory, all RUN steps together, and the kernel killed a process of the step)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := startWith(t, t.TempDir(), c.opts)
			ctx := context.Background()
			dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN " + c.run + "\n"})
			var progress bytes.Buffer
			_, err := f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/" + c.name + ":1",
				BuildArgs: map[string]string{"BASE": f.base}, Progress: &progress})
			require.Error(t, err, progress.String())
			assert.Contains(t, err.Error(), filepath.Join(dir, "Dockerfile")+":3: ")
			assert.Contains(t, err.Error(), c.says)
			dir = writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo fine\n"})
			_, err = f.engine.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/fine:1", BuildArgs: map[string]string{"BASE": f.base}})
			require.NoError(t, err)
		})
	}
}

// TestBuildThatFillsTheDiskSaysToPrune: a RUN step that fills the disk
// of the data directory (a 128 MiB tmpfs here) fails, and the error says
// the disk is full, that the step's writes go as the engine stops and that
// the build cache stays until `wharf images prune`: it said only that the
// step did not complete. So it is: the disk is free again once the engine
// stopped, and the prune frees the cache.
func TestBuildThatFillsTheDiskSaysToPrune(t *testing.T) {
	testutil.BuildBuildkitd(t)
	ctx := context.Background()
	base := testimages.BusyboxBase(t)
	disk := t.TempDir()
	require.NoError(t, syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=128m"))
	t.Cleanup(func() { assert.NoError(t, syscall.Unmount(disk, syscall.MNT_DETACH)) })
	dataDir := filepath.Join(disk, "data")
	b := openBackend(t, dataDir)
	e, err := build.Start(ctx, b, build.EngineOptions{})
	require.NoError(t, err)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" +
		"RUN dd if=/dev/zero of=/filler bs=1M count=512\n"})
	var progress bytes.Buffer
	_, err = e.Build(ctx, build.Options{Context: dir, Tag: "wharf.test/disk:1",
		BuildArgs: map[string]string{"BASE": base}, Progress: &progress})
	require.NoError(t, e.Close())
	require.Error(t, err, progress.String())
	assert.Contains(t, err.Error(), filepath.Join(dir, "Dockerfile")+":3: ")
	assert.Contains(t, err.Error(), "(the disk of "+build.Dir(dataDir)+" is full: the failed step's writes go as the build engine stops, and the build cache stays until `wharf images prune` removes it)")
	_, full := b.BuildDiskFull()
	assert.False(t, full, "the failed step's writes went with the engine")
	freed, err := build.PruneCache(ctx, b)
	require.NoError(t, err)
	assert.Positive(t, freed)
}

// TestHashTakesSocketsAndFIFOs: a Unix socket or a FIFO in the context
// (a dev server's, left in the plugin's directory) is hashed as what the
// build sends, not opened: a socket, which fsutil sends as an empty file,
// stopped wharf serve with "hashing the build context D: open D/app.sock:
// no such device or address".
func TestHashTakesSocketsAndFIFOs(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", "a.txt": "a"})
	l, err := net.Listen("unix", filepath.Join(dir, "app.sock"))
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "app.fifo"), 0o644))
	hashed := make(chan error, 1)
	go func() {
		_, err := (&build.Options{Context: dir}).Hash(context.Background())
		hashed <- err
	}()
	select {
	case err := <-hashed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("hashing a context with a FIFO hung")
	}
}

// TestContextLeavesOutEveryDataDir: a wharf data directory in the context
// that is not the running wharf's (one from an earlier run with another
// --data-dir) is left out of the hash, and so of the build, which reads
// the same filtered context: it was sent whole, with its object storage
// and its egress CA's key, and any change in it rebuilt the image.
func TestContextLeavesOutEveryDataDir(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", "a.txt": "a"})
	old := filepath.Join(dir, "old-data")
	lock, err := host.LockDataDir(old)
	require.NoError(t, err)
	require.NoError(t, lock.Unlock())
	require.NoError(t, os.WriteFile(filepath.Join(old, "objects.db"), []byte("v1"), 0o600))
	assertHashCounts(t, build.Options{Context: dir}, filepath.Join(old, "objects.db"), filepath.Join(dir, "a.txt"))
}

// TestStartKillsAStepThatLostItsContainer: a RUN step's process that no
// container, shim or runc state names any more runs on in the build
// cgroups; the next start on the data directory kills it and removes the
// cgroup. That is what a wharf killed while building leaves once its data
// directory was partly removed (`rm -rf` stops at the step's mounts): the
// next wharf serve there killed the shim, and `sleep 300` of the step ran
// on in /wharf/<hash>-build/buildkit/<id>, its cgroup kept.
func TestStartKillsAStepThatLostItsContainer(t *testing.T) {
	f := start(t)
	step := exec.Command("sleep", "600")
	require.NoError(t, step.Start())
	ended := make(chan error, 1)
	go func() { ended <- step.Wait() }()
	t.Cleanup(func() { step.Process.Kill() })
	cgroup := filepath.Join("/sys/fs/cgroup", f.backend.BuildCgroupParent(), "buildkit", "lost")
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil { // cgroup v1
		cgroup = filepath.Join("/sys/fs/cgroup/pids", f.backend.BuildCgroupParent(), "buildkit", "lost")
	}
	require.NoError(t, os.MkdirAll(cgroup, 0o755))
	t.Cleanup(func() { os.Remove(cgroup) })
	require.NoError(t, os.WriteFile(filepath.Join(cgroup, "cgroup.procs"), []byte(strconv.Itoa(step.Process.Pid)), 0o644))

	e, err := build.Start(context.Background(), f.backend, build.EngineOptions{})
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	select {
	case err := <-ended:
		assert.ErrorContains(t, err, "signal: killed", "the step's process was killed")
	case <-time.After(30 * time.Second):
		t.Fatal("the step's process runs on in " + cgroup)
	}
	assert.NoDirExists(t, cgroup, "its cgroup is removed")
}
