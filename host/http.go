package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/host/web"
	"github.com/wharfhq/wharf/plugins"
)

// incoming is an HTTP request being served by a guest, and its response.
type incoming struct {
	r         *http.Request
	rw        http.ResponseWriter
	rc        *http.ResponseController
	head      []byte // encoded on first request_head
	body      *guestio.ReadStream
	responded bool
	status    int
	headSent  bool                 // the response's status and header went out (to rw, or the 101 on a switched connection)
	stream    *guestio.WriteStream // set when the response body streams
	// streamed, if set, runs before a streamed response's head is released
	// (an object commits its writes there).
	streamed func() error
	// pseudo are extra pseudo-fields of the head (wharf_on_outbound's).
	pseudo [][2]string
	// upgrade is set for a client's request to switch protocols (e.g. a
	// WebSocket): answered with 101, the connection is taken over.
	upgrade *upgrade
	// reqBody is the request body's source once the Worker took it.
	reqBody *requestBody
}

// Responded reports whether the guest sent the response's head (for
// objects.Request).
func (in *incoming) Responded() bool { return in.responded }

// Streams reports whether the response's body streams (for
// objects.Request).
func (in *incoming) Streams() bool { return in.stream != nil }

// upgrade carries a switched connection: the client's bytes reach the
// guest's request body through a pipe, the response body goes to conn.
type upgrade struct {
	r    *io.PipeReader
	w    *io.PipeWriter
	conn net.Conn // set once the 101 is sent
}

// writeHead hands the response's status and header to rw, once.
func (in *incoming) writeHead() {
	if !in.headSent {
		in.headSent = true
		in.rw.WriteHeader(in.status)
	}
}

// newIncoming makes the incoming request r, answered through rw. A
// client's request to switch protocols gets the pipe its connection feeds
// once switched; not one with a body, though (curl --http2 asks to switch
// to h2c on a POST): that body is the request's (a server switches only
// after reading it whole, RFC 9110 7.8), and the Worker reading it would
// wait for a 101 that never comes, until its time limit.
func newIncoming(rw http.ResponseWriter, r *http.Request) *incoming {
	in := &incoming{r: r, rw: rw, rc: http.NewResponseController(rw)}
	if _, ok := rw.(http.Hijacker); ok && web.WantsUpgrade(r.Header) && (r.Body == nil || r.Body == http.NoBody) {
		pr, pw := io.Pipe()
		in.upgrade = &upgrade{r: pr, w: pw}
	}
	return in
}

// upgradeBody is the request body of a client's request to switch
// protocols: what the client sends once switched. Host-side readers of it
// (a forward to an object or a container) wait for the Worker's answer;
// the Worker reading it itself before it answers cannot wait for a 101 it
// has not sent, so that read ends the body (see readByGuest).
type upgradeBody struct {
	*io.PipeReader
	in *incoming
}

// readByGuest is called when the guest reads the body itself: before it
// answered, the request is an ordinary one with an empty body (as net/http
// gives a handler), which a 101 can no longer answer.
func (b upgradeBody) readByGuest() {
	if !b.in.responded {
		b.in.dropUpgrade()
	}
}

// dropUpgrade makes a client's request to switch protocols, which will not
// switch, an ordinary request: its body, which the connection would feed
// after a 101, ends (EOF).
func (in *incoming) dropUpgrade() {
	if in.upgrade != nil {
		in.upgrade.w.Close()
		in.upgrade = nil
	}
}

// switchProtocols answers 101 on the client's own connection and starts
// feeding what the client sends into the request body.
func (in *incoming) switchProtocols(h http.Header) error {
	conn, brw, err := in.rc.Hijack()
	if err != nil {
		return err
	}
	var head strings.Builder
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(&head)
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		conn.Close()
		return err
	}
	in.upgrade.conn = conn
	go func() {
		_, err := io.Copy(in.upgrade.w, brw)
		in.upgrade.w.CloseWithError(err)
	}()
	return nil
}

// endUpgrade closes a switched connection, or ends the unused pipe.
func (in *incoming) endUpgrade() {
	if in.upgrade != nil {
		in.upgrade.w.Close()
		if in.upgrade.conn != nil {
			in.upgrade.conn.Close()
		}
	}
}

func importRequestHead(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindRequest)
	if err != nil {
		return err
	}
	in := obj.(*incoming)
	if in.head == nil {
		in.head = web.EncodeRequestHead(g.inst.scratch, in.r, in.pseudo)
		g.inst.scratch = in.head
	}
	return writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), in.head)
}

func importRequestBody(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindRequest)
	if err != nil {
		return err
	}
	in := obj.(*incoming)
	if in.body != nil {
		return fmt.Errorf("%w: the request body was already taken", abi.StatusBusy)
	}
	if err := writeU32(mem, u32(a[1]), 0); err != nil {
		return err
	}
	var src io.ReadCloser
	switch {
	case in.upgrade != nil: // what the client sends after a 101
		src = upgradeBody{in.upgrade.r, in}
	case in.r.Body != nil && in.r.Body != http.NoBody && in.r.ContentLength != 0:
		// A body net/http serves has read deadlines (see requestBody).
		served := in.rc.SetReadDeadline(time.Time{}) == nil
		in.reqBody = &requestBody{body: in.r.Body, served: served, closed: make(chan struct{})}
		src = in.reqBody
		// Let the guest read while it writes (an echo). Only for a body it
		// takes: net/http must handle an unread body itself.
		in.rc.EnableFullDuplex()
	}
	in.body = guestio.NewReadStream(src, g.wake)
	return g.newHandle(mem, u32(a[1]), abi.KindReadStream, in.body)
}

// requestBody is a request's body as its stream's source. Each read of the
// body runs on a goroutine of its own, which Close does not wait for: a
// read of the connection stopped by a read deadline fails in net/http,
// which then cancels the connection's context, the request's (and the
// guest's event with it: a Worker that closed its body while the client
// still sent was canceled mid-response) and every later request's on the
// connection. endRequestBody settles a read left in flight. Another body
// (an object's, from its caller's stream) is closed, which ends its read.
type requestBody struct {
	body   io.ReadCloser
	served bool // net/http serves the body: Close leaves it open
	closed chan struct{}
	read   chan struct{} // closed when the last read ended; nil before the first
	n      int           // the last read's result, once read is closed
	err    error
	got    int64 // bytes read, once the last read ended
}

// Read reads into p on a goroutine of its own. After Close it returns at
// once, while that goroutine may still write into p (ReadStream drops a
// buffer its closed source returned).
func (b *requestBody) Read(p []byte) (int, error) {
	read := make(chan struct{})
	b.read = read
	go func() {
		defer close(read)
		b.n, b.err = b.body.Read(p)
		b.got += int64(b.n)
	}()
	select {
	case <-read:
		return b.n, b.err
	case <-b.closed:
		return 0, io.ErrClosedPipe
	}
}

// Close makes a Read in progress return; a served body's read goes on.
func (b *requestBody) Close() error {
	close(b.closed)
	if b.served {
		return nil
	}
	return b.body.Close()
}

// endRequestBody ends the request body the Worker took, once its stream
// is closed and the response written. Its head may have gone out already
// without "Connection: close" (a streamed response; full duplex): a body
// not read to its end would close a connection the client was told it
// could reuse, failing its next request sent before the close reaches it.
// So the rest is drained a bounded moment, as net/http drains a body its
// handler left: what is left of a read still waiting for the client, then
// up to drainBytes more (none if more than that is declared, nor for a
// client that asked to close), all before drainTimeout. A body read to its
// end keeps the connection. Otherwise net/http closes it after the
// response, which then says so if its head is still to be written, with
// net/http's grace before the close so the client reads the response
// before the unread rest resets the connection. The drain runs here,
// before ServeHTTP returns: after a full-duplex handler net/http drains
// only once the handler returned, and reaching the end there starts a
// read of the next request that the next request's own reads collide
// with, a panic ("invalid concurrent Body.Read call") that drops the
// connection unanswered. A read stopped by the deadline fails in
// net/http, which cancels the connection's context: the event has ended.
func (in *incoming) endRequestBody() {
	b := in.reqBody
	if b == nil || !b.served {
		return
	}
	in.rc.SetReadDeadline(time.Now().Add(drainTimeout))
	var err error
	if b.read != nil {
		<-b.read
		err = b.err
	}
	if err == nil && !in.r.Close && (in.r.ContentLength < 0 || in.r.ContentLength-b.got <= drainBytes) {
		_, err = io.CopyN(io.Discard, b.body, drainBytes+1)
	}
	in.rc.SetReadDeadline(time.Time{})
	if err != io.EOF {
		// A MaxBytesReader over its limit is how a handler has net/http
		// close the connection after the response, the head sent or not.
		http.MaxBytesReader(in.rw, io.NopCloser(strings.NewReader("x")), 0).Read(make([]byte, 1))
	}
}

// drainTimeout and drainBytes bound the rest of a request body that
// endRequestBody reads after the Worker left it; drainBytes is net/http's
// own bound on draining a body a handler left (maxPostHandlerReadBytes).
const (
	drainTimeout = 500 * time.Millisecond
	drainBytes   = 256 << 10
)

// newResponseStream makes the stream the response body goes out through:
// it ends, aborted, once the request's client went away.
func (in *incoming) newResponseStream(g *guest) *guestio.WriteStream {
	s := guestio.NewWriteStream(responseSink{in}, g.wake)
	s.AbortWhenReaderGone(in.r.Context())
	return s
}

// responseSink writes a streamed response body to the client.
type responseSink struct{ in *incoming }

func (s responseSink) Write(p []byte) error {
	if u := s.in.upgrade; u != nil && u.conn != nil {
		_, err := u.conn.Write(p)
		return err
	}
	s.in.writeHead()
	if _, err := s.in.rw.Write(p); err != nil {
		return err
	}
	return s.in.rc.Flush()
}

// bodyEnder is a ResponseWriter whose body must be ended explicitly (an
// object's response to another guest, objects.Response).
type bodyEnder interface{ EndBody(error) }

func (s responseSink) Finish() error {
	s.in.writeHead()
	if e, ok := s.in.rw.(bodyEnder); ok {
		e.EndBody(nil)
	}
	return nil
}

func (s responseSink) Abort(err error) {
	if e, ok := s.in.rw.(bodyEnder); ok {
		e.EndBody(err)
		return
	}
	if u := s.in.upgrade; u != nil && u.conn != nil {
		u.conn.Close()
		return
	}
	s.in.rc.SetWriteDeadline(time.Now())
}

func importResponseSend(ctx context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindRequest)
	if err != nil {
		return err
	}
	in := obj.(*incoming)
	if in.responded {
		return fmt.Errorf("%w: a response was already sent for this request", abi.StatusBusy)
	}
	raw, err := readMem(mem, u32(a[1]), u32(a[2]))
	if err != nil {
		return err
	}
	body, err := readMem(mem, u32(a[3]), u32(a[4]))
	if err != nil {
		return err
	}
	streaming := u32(a[5])&abi.ResponseStream != 0
	if streaming {
		if err := writeU32(mem, u32(a[6]), 0); err != nil {
			return err
		}
	}
	var statusText string
	dst := in.rw.Header()
	if err := web.DecodeHead(raw, map[string]*string{abi.FieldStatus: &statusText}, dst); err != nil {
		clear(dst)
		return err
	}
	status, err := strconv.Atoi(statusText)
	// A client's connection switches only for an Upgrade request without a
	// body that the Worker did not read before answering (in.upgrade, see
	// newIncoming and upgradeBody); an object's 101 goes to its caller.
	_, client := in.rw.(http.Hijacker)
	switchProto := err == nil && status == http.StatusSwitchingProtocols && streaming && web.WantsUpgrade(in.r.Header) && (in.upgrade != nil || !client)
	if (err != nil || status < 200 || status > 599) && !switchProto {
		clear(dst)
		return fmt.Errorf("%w: response status %q is not a number from 200 to 599 (or 101 with a streamed body, answering an Upgrade request without a body, which the worker did not read before answering)", abi.StatusInvalid, statusText)
	}
	if len(body) > 0 && dst.Get("Content-Type") == "" {
		dst.Set("Content-Type", http.DetectContentType(body)) // as net/http would, natively rather than in the guest
	}
	if !streaming && dst.Get("Content-Length") == "" {
		dst["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	in.responded, in.status = true, status
	if !switchProto {
		in.dropUpgrade() // no switch: the body ends, and whatever reads it (a forward) with it
	}
	if switchProto && in.upgrade != nil { // the client's connection: take it over
		if err := in.switchProtocols(dst); err != nil {
			return fmt.Errorf("%w: switching protocols: %w", abi.StatusClosed, err)
		}
		in.headSent = true // the 101 went on the taken-over connection
	} else if !streaming || in.streamed != nil {
		// A client's streamed response sends its head with the first body
		// bytes or the clean end, so a stream that fails before them is
		// answered with an error status. An object's is handed over at once.
		in.writeHead()
	}
	if !streaming && len(body) > bufferedBodyBytes && in.streamed == nil && status != http.StatusNoContent && status != http.StatusNotModified {
		// A client that does not read would block the write, and the
		// instance with it: the body goes out from a writer goroutine,
		// which the request's handler waits for. (A 204 or 304 refuses a
		// body: that write fails at once, as CLOSED.)
		in.stream = in.newResponseStream(g)
		if _, err := in.stream.Write(ctx, body, false); err != nil {
			in.stream.Abort(err)
			return err
		}
		in.stream.Close()
		return nil
	}
	if !streaming {
		if len(body) > 0 {
			if len(body) > guestio.ChunkSize { // may block on a slow client: honour the deadline
				stop := context.AfterFunc(ctx, func() { in.rc.SetWriteDeadline(time.Now()) })
				defer stop()
			}
			if _, err := in.rw.Write(body); err != nil {
				return fmt.Errorf("%w: writing the response: %w", abi.StatusClosed, err)
			}
		}
		return nil
	}
	in.stream = in.newResponseStream(g)
	if in.streamed != nil {
		if err := in.streamed(); err != nil {
			in.stream.Abort(err)
			return fmt.Errorf("%w: %w", abi.StatusIO, err)
		}
	}
	if _, err := in.stream.Write(ctx, body, false); err != nil {
		in.stream.Abort(err) // no handle was issued: end it here
		return err
	}
	return g.newHandle(mem, u32(a[6]), abi.KindWriteStream, in.stream)
}

// bufferedBodyBytes is the body net/http buffers before it writes to the
// connection (its bufferBeforeChunkingSize): a body this small is written
// without waiting for the client.
const bufferedBodyBytes = 2048

// fetchedResponse is the response to an outbound fetch.
type fetchedResponse struct {
	resp      *http.Response
	head      []byte
	bodyTaken bool
	cancel    context.CancelFunc
}

func (r *fetchedResponse) close() {
	if !r.bodyTaken {
		r.resp.Body.Close()
		r.cancel()
	}
}

// outboundRequest builds the request of fetch or object_fetch from a guest
// head: method (default GET), an absolute URL that check accepts, headers,
// and, with withBody, a writable body stream registered at bodyOut. The
// request's context is a child of base (the host's, or an object call's:
// see callContext), canceled by the returned func.
func (s *services) outboundRequest(base context.Context, g *guest, mem plugins.Memory, raw []byte, withBody bool, bodyOut uint32, check func(*url.URL) bool, want string) (*http.Request, context.CancelFunc, error) {
	var method, rawURL string
	header := http.Header{}
	if err := web.DecodeHead(raw, map[string]*string{abi.FieldMethod: &method, abi.FieldURL: &rawURL}, header); err != nil {
		return nil, nil, err
	}
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return nil, nil, fmt.Errorf("%w: invalid method %q", abi.StatusInvalid, method)
	}
	u, err := url.Parse(rawURL)
	if err != nil || !check(u) {
		return nil, nil, fmt.Errorf("%w: %s, got %q", abi.StatusInvalid, want, rawURL)
	}
	ctx, cancel := context.WithCancel(base)
	req, err := http.NewRequestWithContext(web.WithDialBound(ctx), method, u.String(), nil)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	req.Header = header
	if host := header.Get("Host"); host != "" {
		req.Host = host
	}
	if withBody {
		pr, pw := io.Pipe()
		req.Body = pr
		req.ContentLength = -1
		if cl, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64); err == nil {
			req.ContentLength = cl
		}
		if err := g.newHandle(mem, bodyOut, abi.KindWriteStream, guestio.NewWriteStream(web.PipeSink{W: pw}, g.wake)); err != nil {
			cancel()
			return nil, nil, err
		}
	}
	return req, cancel, nil
}

// sameURL reports whether written, a URL as an http.Client error writes it
// (its password replaced), is u.
func sameURL(written string, u *url.URL) bool {
	w, err := url.Parse(written)
	return err == nil && w.Scheme == u.Scheme && w.Host == u.Host && w.Path == u.Path && w.RawQuery == u.RawQuery
}

func (s *services) importFetch(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	httpURL := func(u *url.URL) bool { return (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" }
	return s.startFetch(g, mem, a, httpURL, "fetch needs an absolute http or https URL", func(req *http.Request) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			resp, err := s.client.Do(req)
			if err != nil {
				return nil, fetchError(req, err)
			}
			return resp, nil
		}
	})
}

// fetchError is the guest's error of req, which an http.Client failed
// with err: REFUSED if nothing listened, else IO; the cause alone, without
// the client's *url.Error and its `Get "URL": `, as the guest's side names
// the request once (its http.Client, or the SDK's Stub.Fetch and
// Port.Fetch), but kept when it names a redirect's URL, which the guest
// never saw.
func fetchError(req *http.Request, err error) error {
	status := abi.StatusIO
	if errors.Is(err, syscall.ECONNREFUSED) {
		status = abi.StatusRefused
	}
	var ue *url.Error
	if errors.As(err, &ue) && sameURL(ue.URL, req.URL) {
		err = ue.Err
	}
	return fmt.Errorf("%w: %w", status, err)
}

// startFetch is fetch and container_fetch from a[0:5] (head, len, flags,
// body_out, pending_out): check vets the URL, route readies the request
// on the instance's thread and returns how to send it, which runs off it
// and words its errors for the guest (see fetchError).
func (s *services) startFetch(g *guest, mem plugins.Memory, a []uint64, check func(*url.URL) bool, want string,
	route func(*http.Request) (send func() (*http.Response, error))) error {
	raw, err := readMem(mem, u32(a[0]), u32(a[1]))
	if err != nil {
		return err
	}
	if err := writeU32(mem, u32(a[4]), 0); err != nil {
		return err
	}
	req, cancel, err := s.outboundRequest(s.base, g, mem, raw, u32(a[2])&abi.FetchBodyStream != 0, u32(a[3]), check, want)
	if err != nil {
		return err
	}
	send := route(req)
	p := guestio.NewPending(g.wake, cancel)
	if err := g.newHandle(mem, u32(a[4]), abi.KindPending, p); err != nil {
		return err
	}
	go func() {
		resp, err := send()
		if err != nil {
			cancel()
			p.Resolve(nil, err)
			return
		}
		p.Resolve(&fetchedResponse{resp: resp, cancel: cancel}, nil)
	}()
	return nil
}

func importFetchResult(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	h := handleArg(a[0])
	obj, err := g.table.Lookup(h, abi.KindPending)
	if err != nil {
		return err
	}
	p := obj.(*guestio.Pending)
	if !p.Cancelable() { // only a fetch's pending result can be canceled, not a forward's
		return fmt.Errorf("%w: pending handle %d is a forward, not a fetch: poll it, then close it", abi.StatusInvalid, h)
	}
	if err := writeU32(mem, u32(a[1]), 0); err != nil {
		return err
	}
	if !p.Ready() {
		return abi.StatusAgain
	}
	v, err := p.Result()
	if err != nil {
		g.table.Remove(h)
		return err
	}
	resp, ok := v.(*fetchedResponse)
	if !ok {
		return fmt.Errorf("%w: pending handle %d is an object call, not a fetch: use call_result", abi.StatusInvalid, h)
	}
	if err := g.newHandle(mem, u32(a[1]), abi.KindResponse, resp); err != nil {
		return err
	}
	g.table.Remove(h) // resp is now owned by the response handle
	return nil
}

func importResponseHead(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindResponse)
	if err != nil {
		return err
	}
	r := obj.(*fetchedResponse)
	if r.head == nil {
		r.head = web.EncodeResponseHead(r.resp)
	}
	return writeOut(mem, u32(a[1]), u32(a[2]), u32(a[3]), r.head)
}

func importResponseBody(_ context.Context, g *guest, mem plugins.Memory, a []uint64) error {
	obj, err := g.table.Lookup(handleArg(a[0]), abi.KindResponse)
	if err != nil {
		return err
	}
	r := obj.(*fetchedResponse)
	if r.bodyTaken {
		return fmt.Errorf("%w: the response body was already taken", abi.StatusBusy)
	}
	if err := writeU32(mem, u32(a[1]), 0); err != nil {
		return err
	}
	r.bodyTaken = true
	s := guestio.NewReadStream(web.CancelingBody{ReadCloser: r.resp.Body, Cancel: r.cancel}, g.wake)
	return g.newHandle(mem, u32(a[1]), abi.KindReadStream, s)
}
