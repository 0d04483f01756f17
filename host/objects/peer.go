package objects

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/host/guestio"
	"github.com/wharfhq/wharf/plugins"
)

// The peer server: where other hosts of the cluster deliver the events of
// objects this host owns (behind mutual TLS, which the caller sets up). An
// event for an object this host does not own is answered 421 Misdirected
// Request, and the sender places the object again.

// PeerHandler serves the events other hosts forward to these objects. A
// nil Objects (a plugin without Durable Objects) answers 404.
func (o *Objects) PeerHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /wharf/v1/objects/{class}/{id}/{kind}", func(rw http.ResponseWriter, r *http.Request) {
		if o == nil {
			http.Error(rw, "this plugin has no Durable Objects", http.StatusNotFound)
			return
		}
		ns, ok := o.classes[r.PathValue("class")]
		if !ok {
			http.Error(rw, "no Durable Object class "+strconv.Quote(r.PathValue("class")), http.StatusNotFound)
			return
		}
		id, err := ns.ids.Parse(r.PathValue("id"))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		if names := r.Header.Values(peerNameHeader); len(names) == 1 {
			if name, err := url.QueryUnescape(names[0]); err == nil {
				ns.learnName(id, name)
			}
		}
		switch r.PathValue("kind") {
		case "fetch":
			o.servePeerFetch(rw, r, ns, id)
		case "call":
			o.servePeerCall(rw, r, ns, id)
		case "alarm":
			o.servePeerAlarm(rw, r, ns, id)
		default:
			http.NotFound(rw, r)
		}
	})
	return mux
}

// refusedHere is why dispatch did not take a forwarded event. A host that
// shuts down takes none: the sender places the event again (421), and it
// runs where the object moves once this host's lease is revoked.
func refusedHere(err error) error {
	if errors.Is(err, plugins.ErrPoolClosed) {
		return fmt.Errorf("%w: %w", errNotOwner, err)
	}
	return err
}

// peerFailure answers a forwarded event that failed here.
func peerFailure(rw http.ResponseWriter, err error) {
	status := peerFailedStatus
	if errors.Is(err, errNotOwner) {
		status = http.StatusMisdirectedRequest
	}
	rw.Header().Set(peerFailedHeader, "1")
	http.Error(rw, err.Error(), status)
}

func (o *Objects) servePeerFetch(rw http.ResponseWriter, r *http.Request, ns *Namespace, id string) {
	u, err := url.Parse(r.Header.Get(peerURLHeader))
	if err != nil {
		http.Error(rw, "bad "+peerURLHeader+": "+err.Error(), http.StatusBadRequest)
		return
	}
	req := r.Clone(r.Context())
	req.Method, req.URL, req.RequestURI, req.Host = r.Header.Get(peerMethodHeader), u, u.RequestURI(), u.Host
	req.Header.Del(peerMethodHeader)
	req.Header.Del(peerURLHeader)
	req.Header.Del(peerNameHeader)
	got := make(chan struct{})
	var resp *http.Response
	out := NewResponse(func(res *http.Response, e error) {
		resp, err = res, e
		close(got)
	})
	if derr := o.dispatch(ns, id, &objectEvent{kind: fetchEvent, ctx: req.Context(), req: req, resp: out, forwarded: true}, nil); derr != nil {
		out.release(refusedHere(derr))
	}
	<-got
	if err != nil {
		peerFailure(rw, err)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		rw.Header()[k] = vs
	}
	rw.WriteHeader(resp.StatusCode)
	flusher, _ := rw.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			return
		}
	}
}

func (o *Objects) servePeerCall(rw http.ResponseWriter, r *http.Request, ns *Namespace, id string) {
	args, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := NewCall(r.Header.Get(peerMethodHeader), args, guestio.NewPending(func() {}, cancel))
	if err := o.dispatch(ns, id, &objectEvent{kind: callEvent, ctx: ctx, call: c, forwarded: true}, nil); err != nil {
		c.resolve(refusedHere(err))
	}
	v, err := c.wait(r.Context()) // an error to a caller gone is written nowhere
	if err != nil {
		if errors.Is(err, errNotOwner) {
			peerFailure(rw, err)
			return
		}
		status := abi.StatusIO
		if s, ok := errors.AsType[abi.Status](err); ok {
			status = s
		}
		rw.Header().Set(peerStatusHeader, strconv.Itoa(int(status)))
		if codes := ErrorCodes(err); len(codes) > 0 {
			rw.Header().Set(peerCodesHeader, strings.Join(codes, " "))
		}
		io.WriteString(rw, err.Error())
		return
	}
	rw.Header().Set(peerStatusHeader, strconv.Itoa(int(abi.StatusOK)))
	rw.Write(v)
}

func (o *Objects) servePeerAlarm(rw http.ResponseWriter, r *http.Request, ns *Namespace, id string) {
	retry, _ := strconv.Atoi(r.Header.Get(peerRetryHeader))
	done := make(chan error, 1)
	ev := &objectEvent{kind: alarmEvent, ctx: r.Context(), retry: retry, forwarded: true, reply: func(err error) { done <- err }}
	if err := o.dispatch(ns, id, ev, nil); err != nil {
		peerFailure(rw, refusedHere(err))
		return
	}
	switch err := <-done; {
	case errors.Is(err, ErrAlarmSkipped):
		rw.Header().Set(peerStatusHeader, "skipped")
	case err != nil:
		peerFailure(rw, err)
	}
}
