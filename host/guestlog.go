package host

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/wharfhq/wharf/abi"
)

// guestLogs bounds what the instances of one plugin log, through the log
// import and their stdout and stderr: a line longer than maxLine is cut and
// marked, and lines beyond the rate limit (a token bucket shared by all the
// plugin's instances) are dropped. While lines are being dropped, their
// count is logged once per reportEvery.
type guestLogs struct {
	plugin  string
	base    *slog.Logger
	maxLine int
	limiter *rate.Limiter

	mu        sync.Mutex
	dropped   int
	reporting bool // a report of the dropped lines is scheduled
}

// reportEvery is how often the number of dropped lines is logged while
// lines are being dropped.
const reportEvery = time.Second

// truncatedMarker ends a line that was cut.
const truncatedMarker = " …[truncated]"

func newGuestLogs(plugin string, base *slog.Logger, maxLine, perSecond, burst int) *guestLogs {
	return &guestLogs{plugin: plugin, base: base, maxLine: maxLine, limiter: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// emit logs one guest line at level through logger unless the plugin is
// over its rate; a line over the size limit is cut first.
func (l *guestLogs) emit(logger *slog.Logger, level slog.Level, line []byte, attrs ...any) {
	if !l.limiter.Allow() {
		l.drop()
		return
	}
	logger.Log(context.Background(), level, l.cut(line), attrs...)
}

// attrOverhead is what an attribute costs of a record's budget besides its
// name and value: the space and '=' a text line puts around them. Without
// it, attributes with an empty name and value cost nothing, and a list of
// them made a line of any length.
const attrOverhead = 2

// hostKeys are the attributes the host's line for a guest record already
// has. A guest attribute of one of these names is logged as guestKeyPrefix
// and its name: a second "level" or "plugin" would read, to a log reader
// that keeps the last (jq, wharf tail), as the host's.
var hostKeys = map[string]bool{
	slog.TimeKey: true, slog.LevelKey: true, slog.MessageKey: true, slog.SourceKey: true,
	pluginKey: true, requestIDKey: true,
}

// guestKeyPrefix names a guest attribute that has the name of a host's.
const guestKeyPrefix = "guest."

// record reads a log_record list: its message and its attributes. The
// attributes share a budget of maxLine bytes (names, values and
// attrOverhead each); the one that crosses it is cut and marked, and those
// after it are dropped.
func (l *guestLogs) record(list []byte) ([]byte, []any, error) {
	var msg []byte
	var attrs []any
	hasMessage, budget := false, l.maxLine
	err := abi.RangeFields(list, func(nameBytes, value []byte) bool {
		if !hasMessage {
			msg, hasMessage = value, string(nameBytes) == abi.FieldMessage
			return hasMessage
		}
		name := string(nameBytes)
		if hostKeys[name] {
			name = guestKeyPrefix + name
		}
		cost := len(name) + len(value) + attrOverhead
		if cost > budget {
			// The last one: cut to what room is left, its name too if that
			// alone is longer.
			room := max(0, budget-attrOverhead)
			if len(name) > room {
				name, value = string(cutUTF8([]byte(name), room)), nil
			} else {
				value = cutUTF8(value, room-len(name))
			}
			attrs = append(attrs, slog.String(name, string(value)+truncatedMarker))
			return false
		}
		budget -= cost
		attrs = append(attrs, slog.String(name, string(value)))
		return true
	})
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("%w: log_record: %w", abi.StatusInvalid, err)
	case !hasMessage:
		return nil, nil, fmt.Errorf("%w: log_record: the list must start with the field %s", abi.StatusInvalid, abi.FieldMessage)
	}
	return msg, attrs, nil
}

// cut returns b as a string of at most maxLine bytes and the marker.
func (l *guestLogs) cut(b []byte) string {
	if len(b) <= l.maxLine {
		return string(b)
	}
	return string(cutUTF8(b, l.maxLine)) + truncatedMarker
}

// drop counts a dropped line and makes sure a report follows.
func (l *guestLogs) drop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped++
	if !l.reporting {
		l.reporting = true
		time.AfterFunc(reportEvery, l.report)
	}
}

// report logs how many lines were dropped since the last report.
func (l *guestLogs) report() {
	l.mu.Lock()
	n := l.dropped
	l.dropped, l.reporting = 0, false
	l.mu.Unlock()
	l.base.Warn(fmt.Sprintf("guest log lines dropped: the plugin logs more than %g lines per second", float64(l.limiter.Limit())),
		pluginKey, l.plugin, "dropped", n)
}

// cutUTF8 returns the first n bytes of b (len(b) > n), less any
// character that would be split.
func cutUTF8(b []byte, n int) []byte {
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}

// lineWriter turns a guest's stdout or stderr into log lines. A line longer
// than the limit is logged cut, and the rest of it, up to the next newline,
// is discarded.
type lineWriter struct {
	in       *instance
	logs     *guestLogs
	level    slog.Level
	name     string
	mu       sync.Mutex
	buf      []byte
	skipping bool // discarding the rest of a line that was cut
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if w.skipping {
			if i < 0 {
				return n, nil
			}
			w.skipping, p = false, p[i+1:]
			continue
		}
		if i < 0 { // keep no more than the part of the line that is logged
			w.buf = append(w.buf, p[:min(len(p), w.logs.maxLine+1-len(w.buf))]...)
			if len(w.buf) > w.logs.maxLine {
				w.emit(w.buf)
				w.buf, w.skipping = w.buf[:0], true
			}
			return n, nil
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		w.emit(line)
		w.buf, p = w.buf[:0], p[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit(line []byte) {
	if bytes.HasPrefix(line, []byte("panic: ")) || bytes.HasPrefix(line, []byte("fatal error: ")) {
		w.in.lastPanic.Store(string(w.logs.cut(line)))
	}
	w.logs.emit(w.in.self.Log(), w.level, line, "stream", w.name)
}
