// Package jsonlog is slog's JSON format for wharf's logs, with durations
// written as Go writes them ("1.5s"), as the text format does, instead of
// slog's integer nanoseconds.
package jsonlog

import (
	"io"
	"log/slog"
)

// New returns a JSON handler writing to w; opts may be nil.
func New(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	o := slog.HandlerOptions{}
	if opts != nil {
		o = *opts
	}
	o.ReplaceAttr = durationText
	return slog.NewJSONHandler(w, &o)
}

// durationText replaces a duration by its text.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
