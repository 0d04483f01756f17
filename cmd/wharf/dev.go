package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wharfhq/wharf/containerd/build"
	"github.com/wharfhq/wharf/containerd/hostbackend"
	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/internal/textlog"
	"github.com/wharfhq/wharf/manifest"
)

// settle is how long the sources must stay unchanged before a rebuild: an
// editor's save is often several writes and renames.
const settle = 100 * time.Millisecond

// sourceWatcher watches a plugin's directory tree, but not its data
// directory or hidden directories, for changes to its sources.
type sourceWatcher struct {
	*fsnotify.Watcher
	root   string // the plugin's directory
	skip   string // the data directory
	images []*builtImage
}

func newSourceWatcher(dir, dataDir string) (*sourceWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &sourceWatcher{Watcher: fw, root: filepath.Clean(dir), skip: dataDir}
	if err := w.Add(dir); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	w.addTree(dir)
	return w, nil
}

// addTree watches dir and the directories under it, and returns a source
// file found there, if any.
func (w *sourceWatcher) addTree(dir string) (source string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil // gone already, or unreadable: nothing to watch
		case !d.IsDir():
			if isSource(path) {
				source = path
			}
			return nil
		case path != dir && (strings.HasPrefix(d.Name(), ".") || path == w.skip):
			return filepath.SkipDir
		}
		return w.Add(path)
	})
	return source
}

// builtImage is the image of a container class built from a Dockerfile,
// and the hash of its context (build.Options.Hash) as it was last seen.
type builtImage struct {
	class string
	opts  build.Options
	hash  string
}

// watchImages notes the hash of every class image built from a
// Dockerfile before the first build, so that a change to its context
// under wharf dev is said to need a restart: the image is built at start
// only, and an edited Dockerfile went on serving the old image without a
// word. A class whose context cannot be hashed now is left to the build
// to report.
func (w *sourceWatcher) watchImages(ctx context.Context, m *manifest.Manifest) {
	for _, c := range m.Containers {
		o, ok, err := hostbackend.ImageBuild(m, c, w.skip)
		if err != nil || !ok {
			continue
		}
		hash, err := o.Hash(ctx)
		if err != nil {
			continue
		}
		w.images = append(w.images, &builtImage{class: c.ClassName, opts: o, hash: hash})
	}
}

// inImageContext reports whether path lies in the build context of a
// class image (see watchImages).
func (w *sourceWatcher) inImageContext(path string) bool {
	for _, img := range w.images {
		if rel, err := filepath.Rel(img.opts.Context, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// warnChangedImages logs, once per change, each class image whose context
// changed since wharf dev started.
func (w *sourceWatcher) warnChangedImages(ctx context.Context, m *manifest.Manifest, logger *slog.Logger) {
	for _, img := range w.images {
		hash, err := img.opts.Hash(ctx)
		if err != nil || hash == img.hash {
			continue
		}
		img.hash = hash
		logger.Warn("a container image's build context changed: restart wharf dev to rebuild it (its containers run the image built at start)",
			"plugin", m.Name, "class", img.class, "context", img.opts.Context)
	}
}

// isSource reports whether a change to path calls for a rebuild.
func isSource(path string) bool {
	name := filepath.Base(path)
	return strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum"
}

// nextBuild is where a build is written until it serves. It has the
// module's own name, in a directory of its own, so that what its load
// says (a refused binding, a trap) names the module the user knows.
func nextBuild(m *manifest.Manifest) string {
	return filepath.Join(filepath.Dir(m.WasmPath()), "next", filepath.Base(m.WasmPath()))
}

// removeUnservedBuild removes the directory of a build that a wharf dev
// killed (kill -9) left before it served.
func removeUnservedBuild(m *manifest.Manifest) { os.RemoveAll(filepath.Dir(nextBuild(m))) }

// reloadOnChange rebuilds the plugin once its sources settle after a
// change and reloads the Worker with the new build: interpreted at once,
// then compiled in the background, in a process of its own that a newer
// save kills. A failed build or a module that does not fit is logged and
// the old code keeps serving; if its compile was under way, it starts
// again, so the old code does not stay interpreted. A build is written
// next to the module's path and moved there once it serves, so the path
// always holds the module being served, which that compile reads.
func (w *sourceWatcher) reloadOnChange(ctx context.Context, m *manifest.Manifest, worker *host.Worker, logger *slog.Logger) {
	var timer <-chan time.Time
	var changed string
	manifestChanged, imageChanged := false, false
	wasm, next := m.WasmPath(), nextBuild(m)
	defer os.RemoveAll(filepath.Dir(next)) // a build not served yet
	stopCompile := func() {}
	defer func() { stopCompile() }()
	var compiled *atomic.Bool // the served build's compile succeeded; nil: it was loaded compiled
	// Builds are numbered in the log, the one wharf dev started with
	// being 1, so that a compile ending late says which build it was.
	built, served := 1, 1
	compile := func(build int, start time.Time) {
		compileCtx, cancel := context.WithCancel(ctx)
		done := new(atomic.Bool)
		stopCompile, compiled = cancel, done
		go func() {
			err := compileApart(compileCtx, worker.CompileConfig(wasm))
			if err == nil {
				err = worker.Reload(compileCtx, wasm, false) // from the cache
			}
			switch {
			case compileCtx.Err() != nil: // a newer build, or shutting down
			case err != nil:
				logger.Error("compiling the new build failed; it stays interpreted", "plugin", m.Name, "build", build, "err", err)
			default:
				done.Store(true)
				logger.Info("reloaded, compiled", "plugin", m.Name, "build", build, "took", time.Since(start).Round(time.Millisecond))
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			logger.Warn("watching the sources", "err", err)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Chmod) {
				continue
			}
			if ev.Name == w.root && ev.Has(fsnotify.Rename|fsnotify.Remove) {
				// The watch ended with the directory's name: saves in
				// its new place (or in one made again under the old
				// name) were ignored without a word.
				logger.Error("the plugin's directory was moved or removed: saves no longer rebuild; the build loaded keeps serving until wharf dev is restarted where the plugin now is",
					"plugin", m.Name, "dir", w.root, "serving", served)
				continue
			}
			if w.inImageContext(ev.Name) {
				imageChanged, timer = true, time.After(settle)
			}
			if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && ev.Has(fsnotify.Create) {
				// Files written with the directory came before its watch.
				if src := w.addTree(ev.Name); src != "" {
					changed, timer = src, time.After(settle)
				}
				continue
			}
			switch {
			case ev.Name == m.Path:
				manifestChanged, timer = true, time.After(settle)
			case isSource(ev.Name):
				changed, timer = ev.Name, time.After(settle)
			}
		case <-timer:
			timer = nil
			if manifestChanged {
				manifestChanged = false
				logger.Warn("wharf.toml changed: restart wharf dev to apply it (code changes reload by themselves)", "path", m.Path)
			}
			if imageChanged {
				imageChanged = false
				w.warnChangedImages(ctx, m, logger)
			}
			if changed == "" {
				continue
			}
			stopCompile() // the build it was compiling is out of date
			start := time.Now()
			built++
			logger.Info("rebuilding", "plugin", m.Name, "build", built, "changed", changed)
			changed = ""
			var out bytes.Buffer
			_, err := manifest.Build(ctx, m, next, &out)
			if err == nil {
				if err = worker.Reload(ctx, next, true); err != nil {
					os.Remove(next)
				}
			}
			if ctx.Err() != nil {
				return // shutting down cut the build or its load short
			}
			if err != nil {
				attrs := []any{"plugin", m.Name, "build", built, "serving", served, "err", err}
				if output := strings.TrimSpace(out.String()); output != "" { // go build's errors
					attrs = append(attrs, textlog.OutputKey, output)
				}
				logger.Error("reload failed; the previous build keeps serving", attrs...)
				if compiled != nil && !compiled.Load() {
					compile(served, time.Now()) // the build still served, whose compile stopped for this one
				}
				continue
			}
			served = built
			if err := os.Rename(next, wasm); err != nil { // the compile would read the old build
				compiled = nil
				logger.Error("reloaded, but it stays interpreted", "plugin", m.Name, "build", served, "err", err)
				continue
			}
			logger.Info("reloaded, interpreted until compiled", "plugin", m.Name, "build", served, "took", time.Since(start).Round(time.Millisecond))
			compile(served, start)
		}
	}
}
