package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wharfhq/wharf/host"
	"github.com/wharfhq/wharf/plugins"
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
	if err := w.addTree(dir); err != nil {
		fw.Close()
		return nil, err
	}
	return w, nil
}

// addTree watches dir and the directories under it.
func (w *sourceWatcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if path != dir && (strings.HasPrefix(d.Name(), ".") || path == w.skip) {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}

// isSource reports whether a change to path calls for a rebuild.
func isSource(path string) bool {
	name := filepath.Base(path)
	return strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum"
}

// reloadOnChange rebuilds the plugin once its sources settle after a
// change and reloads the Worker with the new build; a failed build or a
// module that does not fit is logged and the old code keeps serving.
func (w *sourceWatcher) reloadOnChange(ctx context.Context, m *plugins.Manifest, worker *host.Worker, logger *slog.Logger) {
	var timer <-chan time.Time
	var changed string
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
			if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && ev.Has(fsnotify.Create) {
				w.addTree(ev.Name)
				continue
			}
			if ev.Name == m.Path && !ev.Has(fsnotify.Chmod) {
				logger.Warn("wharf.toml changed: restart wharf dev to apply it (code changes reload by themselves)", "path", m.Path)
				continue
			}
			if isSource(ev.Name) && !ev.Has(fsnotify.Chmod) {
				changed = ev.Name
				timer = time.After(settle)
			}
		case <-timer:
			timer = nil
			start := time.Now()
			logger.Info("rebuilding", "plugin", m.Name, "changed", changed)
			var out bytes.Buffer
			wasm, err := plugins.Build(ctx, m, "", &out)
			if err == nil { // serve it interpreted at once, then compiled
				err = worker.Reload(ctx, wasm, true)
			}
			if err == nil {
				logger.Info("reloaded, interpreted until compiled", "plugin", m.Name, "took", time.Since(start).Round(time.Millisecond))
				err = worker.Reload(ctx, wasm, false)
			}
			if errors.Is(err, context.Canceled) {
				return
			}
			if err != nil {
				logger.Error("reload failed; the previous build keeps serving", "plugin", m.Name, "err", err, "output", strings.TrimSpace(out.String()))
				continue
			}
			logger.Info("reloaded, compiled", "plugin", m.Name, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}
