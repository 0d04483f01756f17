package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wharfhq/wharf/abi"
)

// A request's head, encoded for a guest, decodes back to its method, URL,
// pseudo-fields and headers.
func TestRequestHeadRoundTrips(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.test/a/b?c=d", strings.NewReader("body"))
	r.Header.Add("X-Twice", "1")
	r.Header.Add("X-Twice", "2")
	raw := EncodeRequestHead(nil, r, [][2]string{{":object", "abc"}})
	var method, u, remote, object string
	h := http.Header{}
	err := DecodeHead(raw, map[string]*string{abi.FieldMethod: &method, abi.FieldURL: &u, abi.FieldRemoteAddr: &remote, ":object": &object}, h)
	if err != nil {
		t.Fatal(err)
	}
	if method != "POST" || u != "http://example.test/a/b?c=d" || remote != r.RemoteAddr || object != "abc" {
		t.Fatalf("pseudo-fields: method %q url %q remote %q object %q", method, u, remote, object)
	}
	if got := h.Values("X-Twice"); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Fatalf("X-Twice: %q", got)
	}
	if h.Get("Host") != "example.test" || h.Get("Content-Length") != "4" {
		t.Fatalf("Host %q, Content-Length %q", h.Get("Host"), h.Get("Content-Length"))
	}
}

func TestResponseHeadRoundTrips(t *testing.T) {
	resp := &http.Response{StatusCode: 418, Header: http.Header{"Content-Type": {"text/plain"}}}
	var status string
	h := http.Header{}
	if err := DecodeHead(EncodeResponseHead(resp), map[string]*string{abi.FieldStatus: &status}, h); err != nil {
		t.Fatal(err)
	}
	if status != "418" || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("status %q, Content-Type %q", status, h.Get("Content-Type"))
	}
}

// A head a guest gets wrong is refused as invalid (too large: as too
// large), saying what is wrong.
func TestDecodeHeadRefusesBadFields(t *testing.T) {
	field := func(name, value string) []byte {
		b := abi.NewFieldsBuilder(nil)
		b.Add(name, value)
		return b.Bytes()
	}
	for _, c := range []struct {
		raw    []byte
		status error
		msg    string
	}{
		{field(":nope", "x"), abi.StatusInvalid, `unknown pseudo-field ":nope"`},
		{field("Bad Name", "x"), abi.StatusInvalid, `invalid header name "Bad Name"`},
		{field("X-Ok", "a\nb"), abi.StatusInvalid, `invalid value for header "X-Ok"`},
		{make([]byte, abi.MaxHeadBytes+1), abi.StatusTooLarge, "the limit is"},
		{[]byte{1, 2, 3}, abi.StatusInvalid, ""},
	} {
		var status string
		err := DecodeHead(c.raw, map[string]*string{abi.FieldStatus: &status}, http.Header{})
		if !errors.Is(err, c.status) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got %v, want %v containing %q", c.raw[:min(len(c.raw), 16)], err, c.status, c.msg)
		}
	}
}

func TestWantsUpgrade(t *testing.T) {
	for _, c := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive, Upgrade"}}, true},
		{http.Header{"Upgrade": {"websocket"}}, false},
		{http.Header{"Connection": {"upgrade"}}, false},
	} {
		if got := WantsUpgrade(c.h); got != c.want {
			t.Errorf("%v: %v, want %v", c.h, got, c.want)
		}
	}
}
