// Package textlog is slog's text format for people: a record's "stack"
// attribute (a guest's panic trace) and "output" attribute (a failed
// command's output, such as go build's errors) are printed after the line,
// one line of theirs per line, instead of as one quoted value full of \n.
package textlog

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// StackKey and OutputKey are the attributes printed on lines of their own.
const (
	StackKey  = "stack"
	OutputKey = "output"
)

// OnLines reports whether the attribute key is printed on lines of its own.
func OnLines(key string) bool { return key == StackKey || key == OutputKey }

// Handler wraps slog.TextHandler.
type Handler struct {
	inner slog.Handler
	w     io.Writer
	mu    *sync.Mutex // shared by the handlers WithAttrs and WithGroup make
}

// New returns a text handler writing to w.
func New(w io.Writer, opts *slog.HandlerOptions) *Handler {
	return &Handler{inner: slog.NewTextHandler(w, opts), w: w, mu: &sync.Mutex{}}
}

// Enabled reports whether the inner handler logs level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle writes the record without its stack and output, then each of
// them indented by a tab.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var blocks []string
	if r.NumAttrs() > 0 {
		rest := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if OnLines(a.Key) && a.Value.Kind() == slog.KindString {
				blocks = append(blocks, a.Value.String())
			} else {
				rest.AddAttrs(a)
			}
			return true
		})
		r = rest
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	for _, block := range blocks {
		if _, err := io.WriteString(h.w, IndentLines(block)); err != nil {
			return err
		}
	}
	return nil
}

// IndentLines returns text's lines, each after a tab.
func IndentLines(text string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimRight(text, "\n")) {
		b.WriteString("\t" + strings.TrimRight(line, "\n") + "\n")
	}
	return b.String()
}

// WithAttrs returns a handler adding attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(attrs), w: h.w, mu: h.mu}
}

// WithGroup returns a handler nesting later attributes under name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name), w: h.w, mu: h.mu}
}
