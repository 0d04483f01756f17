package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/manifest"
)

// settle is how long the sources must stay unchanged before a rebuild: an
// editor's save is often several writes and renames.
const settle = 100 * time.Millisecond

// sourceWatcher watches a plugin's directory tree, but not its data
// directory or hidden directories, for changes to its sources.
type sourceWatcher struct {
	*fsnotify.Watcher
	skip string // the data directory
}

func newSourceWatcher(dir, dataDir string) (*sourceWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &sourceWatcher{Watcher: fw, skip: dataDir}
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

// isSource reports whether a change to path calls for a rebuild.
func isSource(path string) bool {
	name := filepath.Base(path)
	return strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum"
}

// reloadOnChange rebuilds the plugin once its sources settle after a
// change and reloads the Worker with the new build: interpreted at once,
// then compiled in the background. A newer save abandons that compile. A
// failed build or a module that does not fit is logged and the old code
// keeps serving.
func (w *sourceWatcher) reloadOnChange(ctx context.Context, m *manifest.Manifest, worker *host.Worker, logger *slog.Logger) {
	var timer <-chan time.Time
	var changed string
	manifestChanged := false
	stopCompile := func() {}
	defer func() { stopCompile() }()
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
			if changed == "" {
				continue
			}
			stopCompile() // the build it was compiling is out of date
			start := time.Now()
			logger.Info("rebuilding", "plugin", m.Name, "changed", changed)
			changed = ""
			var out bytes.Buffer
			wasm, err := manifest.Build(ctx, m, "", &out)
			if err == nil {
				err = worker.Reload(ctx, wasm, true)
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			if err != nil {
				logger.Error("reload failed; the previous build keeps serving", "plugin", m.Name, "err", err, "output", strings.TrimSpace(out.String()))
				continue
			}
			logger.Info("reloaded, interpreted until compiled", "plugin", m.Name, "took", time.Since(start).Round(time.Millisecond))
			compileCtx, cancel := context.WithCancel(ctx)
			stopCompile = cancel
			go func() {
				err := worker.Reload(compileCtx, wasm, false)
				switch {
				case compileCtx.Err() != nil: // a newer build, or shutting down
				case err != nil:
					logger.Error("compiling the new build failed; it stays interpreted", "plugin", m.Name, "err", err)
				default:
					logger.Info("reloaded, compiled", "plugin", m.Name, "took", time.Since(start).Round(time.Millisecond))
				}
			}()
		}
	}
}
