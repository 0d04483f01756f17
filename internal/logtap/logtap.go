// Package logtap lets `wharf tail` follow a running host's log: a
// slog.Handler that passes every record on and, while someone listens,
// also encodes it as a JSON line for each listener.
package logtap

import (
	"context"
	"log/slog"
	"sync"

	"github.com/wharfhq/wharf/internal/jsonlog"
)

// Handler passes records to an inner handler and to the tap's listeners.
type Handler struct {
	inner slog.Handler
	json  slog.Handler // writes to the tap
	tap   *Tap
}

// Tap is the set of listeners of one log.
type Tap struct {
	mu        sync.Mutex
	listeners map[chan []byte]struct{}
}

// backlog is how many lines a slow listener may fall behind before lines
// are dropped for it.
const backlog = 1024

// New wraps inner; records are JSON-encoded for listeners only while
// there are some.
func New(inner slog.Handler) (*Handler, *Tap) {
	t := &Tap{listeners: map[chan []byte]struct{}{}}
	return &Handler{inner: inner, json: jsonlog.New(t, &slog.HandlerOptions{Level: slog.LevelDebug}), tap: t}, t
}

// Listen returns a channel of JSON lines and a function that stops it.
func (t *Tap) Listen() (<-chan []byte, func()) {
	ch := make(chan []byte, backlog)
	t.mu.Lock()
	t.listeners[ch] = struct{}{}
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		delete(t.listeners, ch)
		t.mu.Unlock()
	}
}

func (t *Tap) listening() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.listeners) > 0
}

// Write hands one encoded record to every listener, dropping it for those
// that are full.
func (t *Tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range t.listeners {
		select {
		case ch <- append([]byte(nil), p...):
		default:
		}
	}
	return len(p), nil
}

// Enabled reports whether the inner handler, or a listener, wants level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level) || h.tap.listening()
}

// Handle passes r on and to the listeners.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.inner.Enabled(ctx, r.Level) {
		err = h.inner.Handle(ctx, r)
	}
	if h.tap.listening() {
		h.json.Handle(ctx, r)
	}
	return err
}

// WithAttrs returns a handler adding attrs on both sides.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), json: h.json.WithAttrs(attrs), tap: h.tap}
}

// WithGroup returns a handler nesting later attributes on both sides.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), json: h.json.WithGroup(name), tap: h.tap}
}
