package sdk

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Transport is an http.RoundTripper that sends requests through the host's
// fetch. The SDK installs it as http.DefaultTransport.
type Transport struct{}

// RoundTrip sends req and waits for the response head. The request body is
// streamed to the host; the response body is a host stream. A request made
// with a handler's context (http.NewRequestWithContext(r.Context(), ...))
// acts for that request's event; a deadline on its context bounds the wait.
// Its errors leave out "wharf: ": http.Client puts them after the method
// and URL (`Get "URL": cause`).
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := roundTrip(req, wharf.Event.Fetch)
	return resp, wharf.Within(err)
}

// requestError is err of a request sent as http.Client.Do sends it, naming
// the method and URL once as Do does (`Get "URL": cause`, the cause
// without "wharf: "): for Stub.Fetch and Port.Fetch. roundTrip's own
// errors leave them out, as a RoundTripper's do, since the client names
// them.
func requestError(req *http.Request, err error) error {
	if err == nil {
		return nil
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	return &url.Error{Op: method[:1] + strings.ToLower(method[1:]), URL: req.URL.Redacted(), Err: wharf.Within(err)}
}

// errSendingBody begins the error of a request whose body could not be
// sent, said once (withSentinel): not "wharf: sending request body: wharf: …".
var errSendingBody = errors.New("wharf: sending request body")

// roundTrip sends req through start (fetch, object_fetch or
// container_fetch) on behalf of the event req's context carries, and waits
// for the response head.
func roundTrip(req *http.Request, start func(ev wharf.Event, head []byte, flags uint32) (body, pending uint32, err error)) (*http.Response, error) {
	if req.URL == nil {
		return nil, errors.New("wharf: http request has no URL")
	}
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldMethod, req.Method)
	b.Add(abi.FieldURL, req.URL.String())
	if req.Host != "" {
		b.Add("Host", req.Host)
	}
	for name, values := range req.Header {
		for _, v := range values {
			b.Add(name, v)
		}
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.ContentLength > 0 && req.Header.Get("Content-Length") == "" {
		b.Add("Content-Length", strconv.FormatInt(req.ContentLength, 10))
	}
	var flags uint32
	if hasBody {
		flags = abi.FetchBodyStream
	}
	ev := eventOf(req.Context())
	bodyH, pendingH, err := start(ev, b.Bytes(), flags)
	if hasBody {
		defer req.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	pending := &Pending{ev: ev, handle: pendingH}
	if hasBody {
		body := &Stream{ev: ev, handle: bodyH}
		if src, err := streamOf(req.Body); err == nil {
			// A host stream (an incoming body, say) is copied by the host,
			// while the response is awaited: it may never end (a WebSocket).
			if _, err := ForwardStream(src, body); err != nil {
				ev.Close(pendingH)
				return nil, withSentinel(errSendingBody, err)
			}
		} else if _, err := io.Copy(body, req.Body); err != nil {
			body.Abort(err.Error())
			ev.Close(pendingH)
			return nil, withSentinel(errSendingBody, err)
		} else {
			body.Close()
		}
	}
	if err := waitContext(req.Context(), pending); err != nil {
		ev.Close(pendingH)
		return nil, err
	}
	respH, err := ev.FetchResult(pendingH)
	if err != nil {
		return nil, err
	}
	defer ev.Close(respH)
	head, err := ev.ResponseHead(respH, make([]byte, 0, 2048))
	if err != nil {
		return nil, err
	}
	resp := &http.Response{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Request: req, ContentLength: -1,
	}
	err = abi.RangeFields(head, func(name, value []byte) bool {
		if string(name) == abi.FieldStatus {
			resp.StatusCode, _ = strconv.Atoi(string(value))
			return true
		}
		resp.Header.Add(string(name), string(value))
		return true
	})
	if err != nil {
		return nil, err
	}
	resp.Status = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if cl := resp.Header.Get("Content-Length"); cl != "" {
		resp.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	}
	bodyStream, err := ev.ResponseBody(respH)
	if err != nil {
		return nil, err
	}
	resp.Body = &Stream{ev: ev, handle: bodyStream}
	return resp, nil
}

// Forward sends src as the response body from the host side: the response
// head is flushed, and the bytes keep flowing after the handler returns,
// without passing through the guest. src must be a host stream: a request
// body, a fetched response body, a *Stream (a file of Files.Open) or a
// *ProcessLogs, which then follows the process past the event's end. w must
// be the ResponseWriter the SDK passed to the handler.
func Forward(w http.ResponseWriter, src io.Reader) (*Pending, error) {
	in, err := streamOf(src)
	if err != nil {
		return nil, err
	}
	bs, ok := w.(interface{ BodyStream() (*Stream, error) })
	if !ok {
		return nil, errors.New("wharf: Forward needs the ResponseWriter given by the SDK")
	}
	out, err := bs.BodyStream()
	if err != nil {
		return nil, err
	}
	return ForwardStream(in, out)
}

func streamOf(r io.Reader) (*Stream, error) {
	switch s := r.(type) {
	case *Stream:
		return s, nil
	case *ProcessLogs:
		return s.Stream, nil
	case interface{ Stream() (*Stream, error) }:
		return s.Stream()
	}
	return nil, fmt.Errorf("wharf: %T is not a host stream", r)
}

// WriteResponse answers with resp: its headers, its status and its body,
// which the host copies (Forward) when it is a host stream (a fetched,
// object or container response) and the guest copies otherwise. It closes
// resp.Body.
func WriteResponse(w http.ResponseWriter, resp *http.Response) error {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := Forward(w, resp.Body); err == nil {
		return nil
	}
	defer resp.Body.Close()
	_, err := io.Copy(w, resp.Body)
	return err
}
