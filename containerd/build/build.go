package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/docker/cli/cli/config/configfile"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"
	fstypes "github.com/tonistiigi/fsutil/types"
	"golang.org/x/sync/errgroup"

	"github.com/wharfhq/wharf/containerd"
)

// Options describe one build, with docker build's meaning.
type Options struct {
	// Context is the build context directory.
	Context string
	// Dockerfile is the Dockerfile's path (default Context/Dockerfile).
	Dockerfile string
	// Tag names the image in wharf's containerd.
	Tag string
	// BuildArgs are the --build-arg values.
	BuildArgs map[string]string
	// Exclude are paths (relative to Context, .dockerignore syntax) never
	// sent, besides those .dockerignore excludes: wharf's data directory
	// when it lies in the context.
	Exclude []string
	// Auth holds registry credentials for FROM (nil: none).
	Auth *configfile.ConfigFile
	// Progress receives docker build's plain progress (nil: discarded).
	Progress io.Writer
}

// Source resolves a manifest's or the command line's build target, a
// Dockerfile or a directory holding one, into Context and Dockerfile. With
// dockerfile given (docker build's -f), target is the context directory
// and dockerfile the Dockerfile, wherever it is.
func Source(target, dockerfile string) (contextDir, df string, err error) {
	st, err := os.Stat(target)
	if err != nil {
		return "", "", fmt.Errorf("the build context or Dockerfile: %w", err)
	}
	switch {
	case dockerfile != "":
		if !st.IsDir() {
			return "", "", fmt.Errorf("%s is not a directory: with a Dockerfile given, name the build context", target)
		}
		if st, err := os.Stat(dockerfile); err != nil {
			return "", "", fmt.Errorf("the Dockerfile: %w", err)
		} else if st.IsDir() {
			return "", "", fmt.Errorf("%s is a directory, not a Dockerfile", dockerfile)
		}
		return target, dockerfile, nil
	case st.IsDir():
		// docker build takes a lowercase dockerfile when there is no
		// Dockerfile (BuildKit's frontend does too); wharf said the
		// directory had none.
		for _, name := range []string{"Dockerfile", "dockerfile"} {
			df = filepath.Join(target, name)
			if st, err := os.Stat(df); err == nil && !st.IsDir() {
				return target, df, nil
			}
		}
		return "", "", fmt.Errorf("%s has no Dockerfile", target)
	}
	return filepath.Dir(target), target, nil
}

func (o *Options) dockerfile() string {
	if o.Dockerfile != "" {
		return o.Dockerfile
	}
	return filepath.Join(o.Context, "Dockerfile")
}

// ExcludeInside is the exclusion (for Options.Exclude) of path from a
// build context at dir when it lies inside: a data directory must never be
// sent to a build (it holds object storage and the egress CA).
//
// The two are compared as written and with their symlinks resolved: wharf
// resolves its data directory's, so a context reached through a link
// (wharf serve ~/app, ~/app a link, data directory ~/app/.wharf) held
// the data directory under a name that did not begin with the context's,
// and the whole of it was sent, hashed and copied into the image.
func ExcludeInside(dir, path string) []string {
	var out []string
	inside := func(dir, path string) {
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || slices.Contains(out, rel) {
			return
		}
		out = append(out, literalPattern(rel))
	}
	dir, err1 := filepath.Abs(dir)
	path, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return nil
	}
	inside(dir, path)
	realDir, err1 := filepath.EvalSymlinks(dir)
	realPath, err2 := filepath.EvalSymlinks(path)
	if err1 == nil && err2 == nil {
		inside(realDir, realPath)
	}
	return out
}

// resolvedDockerfile is the Dockerfile's path with its symlinks
// resolved: BuildKit receives the directory holding it and reads it by
// name there, and a Dockerfile that is a link (app/Dockerfile ->
// ../shared/Dockerfile) would reach it as the link alone ("failed to read
// dockerfile: open Dockerfile: no such file or directory").
func (o *Options) resolvedDockerfile() (string, error) {
	df, err := filepath.EvalSymlinks(o.dockerfile())
	if err != nil {
		return "", fmt.Errorf("the Dockerfile: %w", err)
	}
	return df, nil
}

// ignoreFile is the ignore file of the build, as BuildKit's Dockerfile
// frontend (and docker build) chooses it: <Dockerfile>.dockerignore next to
// the Dockerfile (app.Dockerfile.dockerignore) if there is one, which then
// replaces the context's .dockerignore, or else the context's
// .dockerignore. The frontend applies its choice on its side too, so the
// context must be filtered by the same file: with .dockerignore applied
// here always, a file only it excluded was missing from the image, and
// what only the Dockerfile's ignore file excluded still counted in Hash.
func (o *Options) ignoreFile() (string, error) {
	df, err := o.resolvedDockerfile()
	if err != nil {
		return "", err
	}
	own := df + ".dockerignore"
	if _, err := os.Stat(own); err == nil {
		return own, nil
	}
	return filepath.Join(o.Context, ".dockerignore"), nil
}

// literalPattern is the .dockerignore pattern that matches path alone: a
// data directory named "state[1]" or "!x" was a character class or an
// exception to the patterns, which left it in the context.
func literalPattern(path string) string {
	var b strings.Builder
	for i, r := range path {
		if strings.ContainsRune(`*?[]\`, r) || i == 0 && r == '!' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// excludes are the patterns of the build's ignore file (see ignoreFile)
// and o.Exclude.
func (o *Options) excludes() ([]string, error) {
	name, err := o.ignoreFile()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return o.Exclude, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	// A pattern that does not parse is named with its file here: the
	// filter named neither ("invalid excludepatterns: [[]: syntax error
	// in pattern").
	for _, p := range patterns {
		if _, err := patternmatcher.New([]string{p}); err != nil {
			return nil, fmt.Errorf("%s: pattern %q: %w", f.Name(), p, err)
		}
	}
	return append(patterns, o.Exclude...), nil
}

// contextFS is the build context as BuildKit receives it.
func (o *Options) contextFS() (fsutil.FS, error) {
	excludes, err := o.excludes()
	if err != nil {
		return nil, err
	}
	base, err := fsutil.NewFS(o.Context)
	if err != nil {
		return nil, err
	}
	return fsutil.NewFilterFS(base, &fsutil.FilterOpt{ExcludePatterns: excludes, Map: o.skipDataDirs})
}

// dataDirMarker is the file every wharf data directory holds (host's
// dataDirPidFile, written when a wharf takes the directory).
const dataDirMarker = "wharf.lock"

// skipDataDirs leaves out of the context every wharf data directory in it,
// not only the running wharf's (Exclude): one left from an earlier run
// with another --data-dir, or another wharf's, holds object storage and
// an egress CA's key too, and was hashed, sent and copied into the image.
func (o *Options) skipDataDirs(path string, st *fstypes.Stat) fsutil.MapResult {
	if st.IsDir() {
		if _, err := os.Lstat(filepath.Join(o.Context, filepath.FromSlash(path), dataDirMarker)); err == nil {
			return fsutil.MapResultSkipDir
		}
	}
	return fsutil.MapResultKeep
}

// Hash is a digest of everything a build depends on locally: the
// Dockerfile, the build arguments and every file of the context that
// the ignore file (see ignoreFile) lets through (path, mode and content). Images a Dockerfile
// pulls are not part of it.
func (o *Options) Hash(ctx context.Context) (string, error) {
	h := sha256.New()
	df, err := os.ReadFile(o.dockerfile())
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "dockerfile %d\n", len(df))
	h.Write(df)
	keys := make([]string, 0, len(o.BuildArgs))
	for k := range o.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "arg %q=%q\n", k, o.BuildArgs[k])
	}
	cfs, err := o.contextFS()
	if err != nil {
		return "", err
	}
	err = cfs.Walk(ctx, "", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "file %q %o %d\n", path, info.Mode(), info.Size())
		if info.Mode()&fs.ModeSymlink != 0 {
			// The image holds the link, not what it points at: its
			// target counts. Its size alone did not, so a link
			// pointed at another name of the same length was "up to
			// date" with the image of the old link.
			target, err := os.Readlink(filepath.Join(o.Context, filepath.FromSlash(path)))
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "link %q\n", target)
			return nil
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		// fsutil sends a Unix socket as an empty file (it clears
		// ModeSocket), and opening one fails (ENXIO): a socket left in
		// a plugin's context stopped wharf serve with "open
		// app.sock: no such device or address".
		if st, err := os.Lstat(filepath.Join(o.Context, filepath.FromSlash(path))); err == nil && st.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		f, err := cfs.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hashing the build context %s: %w", o.Context, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Build builds the image for Platform and imports it into wharf's
// containerd as o.Tag. A failed step's error names the Dockerfile and
// line, whose neighbourhood is printed to o.Progress.
func (e *Engine) Build(ctx context.Context, o Options) (containerd.Image, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	dockerfile := o.dockerfile()
	cfs, err := o.contextFS()
	if err != nil {
		return containerd.Image{}, err
	}
	resolved, err := o.resolvedDockerfile()
	if err != nil {
		return containerd.Image{}, err
	}
	dfs, err := fsutil.NewFS(filepath.Dir(resolved))
	if err != nil {
		return containerd.Image{}, err
	}
	df, err := os.ReadFile(resolved)
	if err != nil {
		return containerd.Image{}, err
	}
	local, err := findLocalImages(ctx, e.backend.Client, df)
	if err != nil {
		return containerd.Image{}, err
	}
	attrs := map[string]string{"filename": filepath.Base(resolved), "platform": Platform}
	maps.Copy(attrs, local.attrs)
	for k, v := range o.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	auth := o.Auth
	if auth == nil {
		auth = configfile.New("")
	}
	pr, pw := io.Pipe()
	solve := bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": cfs, "dockerfile": dfs},
		OCIStores:     map[string]content.Store{storeID: storeContent{e.backend.Client.ContentStore()}},
		Exports: []bkclient.ExportEntry{{
			Type:   bkclient.ExporterOCI,
			Output: func(map[string]string) (io.WriteCloser, error) { return pw, nil },
		}},
		Session: []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
			AuthConfigProvider: authprovider.LoadAuthConfig(auth),
		})},
	}
	display, err := progressui.NewDisplay(progress, progressui.PlainMode)
	if err != nil {
		return containerd.Image{}, err
	}
	// A lease keeps what this build imports from containerd's garbage
	// collector until it is named (containerd.NameTheManifest): a build of
	// the same tag at the same time may take the name first and leave it
	// unreferenced. It expires on its own after a kill. Only the import and
	// the naming carry it, not the solve: buildkitd would look for it in
	// its own namespace.
	leased, endLease, err := e.backend.Client.WithLease(containerd.WithNamespace(ctx), leases.WithExpiration(time.Hour))
	if err != nil {
		return containerd.Image{}, fmt.Errorf("building %s: %w", dockerfile, err)
	}
	defer endLease(context.WithoutCancel(leased))
	peak, refused := e.backend.BuildPids()
	kills, _ := e.backend.BuildMemory()
	var imgs []containerd.Image
	var solveErr error
	status := make(chan *bkclient.SolveStatus)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, solveErr = e.client.Solve(gctx, nil, solve, status)
		// Ends the import if the build stopped before the exporter
		// closed the pipe; a no-op after a complete export.
		pw.CloseWithError(errors.Join(solveErr, io.ErrUnexpectedEOF))
		return solveErr
	})
	g.Go(func() error {
		_, err := display.UpdateFrom(context.WithoutCancel(gctx), status)
		return err
	})
	g.Go(func() error {
		var err error
		lease, _ := leases.FromContext(leased)
		imgs, err = containerd.Import(leases.WithLease(gctx, lease), e.backend.Client, pr, o.Tag)
		pr.CloseWithError(err)
		return err
	})
	if err := g.Wait(); err != nil {
		if solveErr != nil {
			err = solveErr
		}
		err = buildError(progress, dockerfile, o.Auth, local, err)
		if nowPeak, nowRefused := e.backend.BuildPids(); nowRefused > refused || peak < int64(e.pids) && nowPeak >= int64(e.pids) {
			err = fmt.Errorf("%w (the build's steps reached wharf's limit of %d processes and threads, all RUN steps together: a step forked without bound)", err, e.pids)
		}
		// Where the kernel does not count the kills (cgroup v1), a step
		// killed (137: SIGKILL) once the steps had reached the limit.
		if nowKills, peak := e.backend.BuildMemory(); nowKills > kills || nowKills < 0 && peak >= e.memory && strings.Contains(err.Error(), "exit code: 137") {
			err = fmt.Errorf("%w (the build's steps reached wharf's limit of %d MiB of memory, all RUN steps together, and the kernel killed a process of the step)", err, e.memory>>20)
		}
		if dir, full := e.backend.BuildDiskFull(); full {
			err = fmt.Errorf("%w (the disk of %s is full: the failed step's writes go as the build engine stops, and the build cache stays until `wharf images prune` removes it)", err, dir)
		}
		return containerd.Image{}, err
	}
	i := slices.IndexFunc(imgs, func(img containerd.Image) bool { return img.Name == o.Tag })
	if i < 0 {
		return containerd.Image{}, fmt.Errorf("building %s: the build produced no image named %s", dockerfile, o.Tag)
	}
	return containerd.NameTheManifest(leased, e.backend.Client, imgs[i])
}

// buildError prints the Dockerfile lines an error points at and names the
// first of them in the error. An image the Dockerfile names that could
// not be pulled is said to be missing from wharf's store too (see
// localImages.notPulled), and a registry's refusal of the credentials for
// it is explained as `wharf images pull` explains it.
func buildError(progress io.Writer, dockerfile string, auth *configfile.ConfigFile, local localImages, err error) error {
	msg := strings.TrimPrefix(err.Error(), "failed to solve: ")
	if missing, ok := local.notPulled(msg); ok {
		msg = missing
	}
	cause := errors.New(msg)
	if strings.Contains(msg, ": 401 Unauthorized") || strings.Contains(msg, ": 403 Forbidden") {
		cause = containerd.RefusedCredentials(auth, "an image the Dockerfile pulls", cause)
	}
	for _, src := range errdefs.Sources(err) {
		src.Print(progress)
		if len(src.Ranges) > 0 && src.Info != nil {
			return fmt.Errorf("%s:%d: %w", dockerfile, src.Ranges[0].Start.Line, cause)
		}
	}
	return fmt.Errorf("building %s: %w", dockerfile, cause)
}

// Tag names the image built for a plugin's class from a context whose Hash
// is hash: <plugin>-<class>:<first 12 hex digits>, lowercased, with any
// character a reference may not hold replaced by '-', and each run of
// separators that docker's grammar refuses (".." or "-_", say, or one at
// either end: a class _Internal made "app-_internal", which no FROM could
// name) made one '-'. Two names that differ only there get one tag for
// one hash, which is the same build.
func Tag(plugin, class, hash string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, strings.ToLower(plugin+"-"+class))
	name = separators.ReplaceAllStringFunc(name, func(run string) string {
		if validSeparator.MatchString(run) {
			return run
		}
		return "-"
	})
	return strings.Trim(name, "._-") + ":" + hash[:12]
}

// separators are the runs of separators in a name; validSeparator those
// docker's reference grammar takes between two alphanumerics.
var (
	separators     = regexp.MustCompile(`[._-]+`)
	validSeparator = regexp.MustCompile(`^(?:[._]|__|-+)$`)
)

// EnsureBuilt builds every target whose Tag is not in wharf's containerd
// yet. buildkitd is started only if one is missing, and stopped after;
// what a killed build left is removed either way (see RecoverKilled).
func EnsureBuilt(ctx context.Context, b *containerd.Backend, targets []Options, opts EngineOptions) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var missing []Options
	for _, t := range targets {
		if _, err := b.Client.GetImage(containerd.WithNamespace(ctx), t.Tag); err == nil {
			logger.Info("image up to date", "image", t.Tag, "dockerfile", t.dockerfile())
			continue
		}
		missing = append(missing, t)
	}
	if len(missing) == 0 {
		return RecoverKilled(ctx, b)
	}
	e, err := Start(ctx, b, opts)
	if err != nil {
		return err
	}
	for _, t := range missing {
		logger.Info("building image", "image", t.Tag, "dockerfile", t.dockerfile())
		began := time.Now()
		if _, err := e.Build(ctx, t); err != nil {
			return errors.Join(err, e.Close())
		}
		logger.Info("image built", "image", t.Tag, "took", time.Since(began).Round(time.Millisecond))
	}
	return e.Close()
}
