package sdk

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

var handler http.Handler

// Handle registers h as the Worker's handler, which serves every request
// the plugin receives. Call it before Serve, from main or an init function.
// Requests reach h concurrently, each on its own goroutine.
func Handle(h http.Handler) { handler = h }

// headBufs are buffers for request heads.
var headBufs = sync.Pool{New: func() any { return new([4096]byte) }}

// serveRequest answers request req of event ev with the handler pick
// chooses for it.
func serveRequest(ev wharf.Event, req uint32, pick func(*http.Request) http.Handler) (status int32) {
	rw := &responseWriter{ev: ev, req: req, header: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			ev.Log(abi.LogError, fmt.Sprintf("panic serving request: %v\n%s", p, debug.Stack()))
			status = 1 // the host aborts a streamed body, naming the request id only
		}
	}()
	r, err := newRequest(ev, req)
	if err != nil {
		ev.Log(abi.LogError, "reading the request: "+wharf.Within(err).Error())
		return 1
	}
	h := pick(r)
	if h == nil {
		msg := "no handler: call sdk.Handle before sdk.Serve"
		if src, ok := r.Context().Value(outboundKey{}).(*outboundSource); ok {
			msg = fmt.Sprintf("no outbound handler named %q: register it with sdk.HandleOutbound", src.handler)
		}
		http.Error(rw, msg, http.StatusInternalServerError)
		return rw.finish()
	}
	h.ServeHTTP(rw, r)
	return rw.finish()
}

// newRequest builds an *http.Request from the host's request head. The body
// stream is taken from the host only when the handler first reads it. Go
// code runs many times slower in Wasm than natively, so this avoids
// url.Parse and per-field allocations on the common path.
func newRequest(ev wharf.Event, req uint32) (*http.Request, error) {
	buf := headBufs.Get().(*[4096]byte)
	raw, err := ev.RequestHead(req, buf[:0])
	head := string(raw) // one allocation; names and values slice into it
	headBufs.Put(buf)
	if err != nil {
		return nil, err
	}
	r := &http.Request{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 8),
	}
	var rawURL string
	var out *outboundSource
	err = abi.RangeFields(head, func(n, v string) bool {
		switch n {
		case abi.FieldHandler, abi.FieldClass, abi.FieldID:
			if out == nil {
				out = &outboundSource{}
			}
			switch n {
			case abi.FieldHandler:
				out.handler = v
			case abi.FieldClass:
				out.class = v
			default:
				out.id = v
			}
		case abi.FieldMethod:
			r.Method = v
		case abi.FieldURL:
			rawURL = v
		case abi.FieldRemoteAddr:
			r.RemoteAddr = v
		case "Host":
			r.Host = v
		default: // the host sends canonical header names
			r.Header[n] = append(r.Header[n], v)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if r.URL, r.RequestURI, err = requestURL(rawURL); err != nil {
		return nil, err
	}
	r.ContentLength = -1
	if cl := r.Header.Get("Content-Length"); cl != "" {
		r.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	} else if r.Header.Get("Transfer-Encoding") == "" && r.Header.Get("Upgrade") == "" {
		r.ContentLength = 0 // an Upgrade request's body is what follows a 101
	}
	if r.ContentLength == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = &requestBody{ev: ev, req: req}
	}
	ctx := context.WithValue(withEvent(context.Background(), ev), requestHandleKey{}, req)
	if out != nil { // a container's request keeps its absolute URL
		r.URL.Scheme, _, _ = strings.Cut(rawURL, "://")
		r.URL.Host = r.Host
		ctx = context.WithValue(ctx, outboundKey{}, out)
	}
	return r.WithContext(ctx), nil
}

// requestURL splits an absolute URL into a server-side request URL (path and
// query only) and the request URI.
func requestURL(rawURL string) (*url.URL, string, error) {
	uri := "/"
	if i := strings.Index(rawURL, "://"); i >= 0 {
		rest := rawURL[i+3:]
		if j := strings.IndexAny(rest, "/?"); j >= 0 {
			uri = rest[j:]
		}
		if strings.HasPrefix(uri, "?") {
			uri = "/" + uri
		}
	}
	path, query, _ := strings.Cut(uri, "?")
	if strings.ContainsAny(path, "%#") || !strings.HasPrefix(path, "/") {
		u, err := url.ParseRequestURI(uri)
		return u, uri, err
	}
	return &url.URL{Path: path, RawQuery: query}, uri, nil
}

type requestHandleKey struct{}

// RequestHandle returns the host handle of an incoming request, for calling
// wharf_v2 imports directly; it is 0 for a request the SDK did not create.
func RequestHandle(r *http.Request) uint32 {
	h, _ := r.Context().Value(requestHandleKey{}).(uint32)
	return h
}

// EventHandle returns the handle of the event ctx (a request's context) is
// served for, the first parameter of every wharf_v2 import; it is 0 outside
// any event.
func EventHandle(ctx context.Context) uint32 { return uint32(eventOf(ctx)) }

// requestBody takes the host's body stream on first use.
type requestBody struct {
	ev     wharf.Event
	req    uint32
	stream *Stream
	err    error
}

func (b *requestBody) open() error {
	if b.stream == nil && b.err == nil {
		h, err := b.ev.RequestBody(b.req)
		b.stream, b.err = &Stream{ev: b.ev, handle: h}, err
	}
	return b.err
}

func (b *requestBody) Read(p []byte) (int, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	return b.stream.Read(p)
}

// WriteTo lets io.Copy move the body in large chunks.
func (b *requestBody) WriteTo(w io.Writer) (int64, error) {
	if err := b.open(); err != nil {
		return 0, err
	}
	return b.stream.WriteTo(w)
}

// Stream returns the body as a host stream, e.g. for ForwardStream.
func (b *requestBody) Stream() (*Stream, error) { return b.stream, b.open() }

func (b *requestBody) Close() error {
	if b.stream == nil {
		return nil
	}
	return b.stream.Close()
}

// maxBuffered is how much body a response buffers before it starts
// streaming; a response that fits is sent in one host call.
const maxBuffered = 64 << 10

// responseWriter implements http.ResponseWriter and http.Flusher over
// response_send and a body stream.
type responseWriter struct {
	ev     wharf.Event
	req    uint32
	header http.Header
	status int
	buf    []byte
	stream *Stream
	err    error
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.status == http.StatusSwitchingProtocols && w.stream == nil {
		w.Flush() // a switched connection streams from the first byte
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.stream != nil {
		return w.stream.Write(p)
	}
	if len(w.buf)+len(p) <= maxBuffered {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.send(true); err != nil {
		return 0, err
	}
	return w.stream.Write(p)
}

// ReadFrom copies r into the body in large chunks; io.Copy uses it.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(onlyWriter{w}, r, make([]byte, copyBufferSize))
}

// Flush sends the head and buffered bytes and switches to streaming.
func (w *responseWriter) Flush() {
	w.WriteHeader(http.StatusOK)
	if w.stream == nil && w.err == nil {
		w.send(true)
	}
}

// BodyStream flushes the head and returns the response body stream, for
// ForwardStream.
func (w *responseWriter) BodyStream() (*Stream, error) {
	w.Flush()
	return w.stream, w.err
}

// respHeads are builders for response heads.
var respHeads = sync.Pool{New: func() any { return abi.NewFieldsBuilder(make([]byte, 0, 1024)) }}

func (w *responseWriter) send(streaming bool) error {
	b := respHeads.Get().(*abi.FieldsBuilder)
	defer respHeads.Put(b)
	b.Reset()
	b.Add(abi.FieldStatus, strconv.Itoa(w.status))
	for name, values := range w.header {
		for _, v := range values {
			b.Add(name, v)
		}
	}
	var flags uint32
	if streaming {
		flags = abi.ResponseStream
	}
	h, err := w.ev.ResponseSend(w.req, b.Bytes(), w.buf, flags)
	w.buf = nil
	if err != nil {
		w.err = err
		w.ev.Log(abi.LogError, "sending the response: "+wharf.Within(err).Error())
		return err
	}
	if streaming {
		w.stream = &Stream{ev: w.ev, handle: h}
	} else {
		w.err = errResponseSent
	}
	return nil
}

var errResponseSent = fmt.Errorf("wharf: response already sent")

// finish completes the response after the handler returned.
func (w *responseWriter) finish() int32 {
	w.WriteHeader(http.StatusOK)
	switch {
	case w.stream != nil:
		if err := w.stream.Close(); err != nil {
			return 1
		}
	case w.err == nil:
		if w.send(false) != nil {
			return 1
		}
	}
	return 0
}

// Logger logs to the host's log, tagged with the plugin and, when given a
// request's context (Logger.InfoContext(r.Context(), ...)), the request id.
var Logger = slog.New(logHandler{})

// logHandler sends records with the log_record import: the message and
// each attribute as a field, so the host logs them as attributes (keys and
// values in its JSON log, not words of the message). A group's members are
// named group.member, as slog's text handler names them.
type logHandler struct {
	pairs  []string // name, value, … of WithAttrs, named within their groups
	prefix string   // the groups open for attributes to come: "g." each
	// obj is the object of an ObjectState.Logger: a line whose context
	// names no event is for the object's current event; between its
	// events, it names the object (class and object attributes).
	obj *object
}

func (logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	ev := eventOf(ctx)
	var self []string
	if ev == 0 && h.obj != nil {
		if ev = h.obj.event(); ev == 0 {
			self = []string{"class", h.obj.state.Class, "object", h.obj.state.ID}
		}
	}
	ev.LogRecord(int32(r.Level), h.encode(r, self))
	return nil
}

// encode is r as log_record's field list, after the name, value pairs of
// self.
func (h logHandler) encode(r slog.Record, self []string) []byte {
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMessage, r.Message)
	for i := 0; i < len(self); i += 2 {
		b.Add(self[i], self[i+1])
	}
	for i := 0; i < len(h.pairs); i += 2 {
		b.Add(h.pairs[i], h.pairs[i+1])
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(b.Add, h.prefix, a)
		return true
	})
	return b.Bytes()
}

// addAttr adds a as name/value pairs: a group's members one by one, an
// empty attribute not at all (as slog's handlers do).
func addAttr(add func(name, value string), prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	switch {
	case v.Kind() == slog.KindGroup:
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, m := range v.Group() {
			addAttr(add, prefix, m)
		}
	case !a.Equal(slog.Attr{}):
		add(prefix+a.Key, valueText(v))
	}
}

// valueText is v as slog's own handlers write it: a time in RFC 3339, not
// in Go's "2006-01-02 15:04:05.999999999 -0700 MST"; anything else as
// Value.String does.
func valueText(v slog.Value) string {
	if v.Kind() == slog.KindTime {
		return v.Time().Format(time.RFC3339Nano)
	}
	return v.String()
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	pairs := slices.Clone(h.pairs)
	for _, a := range as {
		addAttr(func(name, value string) { pairs = append(pairs, name, value) }, h.prefix, a)
	}
	return logHandler{pairs: pairs, prefix: h.prefix, obj: h.obj}
}

func (h logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return logHandler{pairs: h.pairs, prefix: h.prefix + name + ".", obj: h.obj}
}
