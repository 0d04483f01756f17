package web

import (
	"fmt"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"

	"github.com/wharfhq/wharf/abi"
)

// A head crosses to and from a guest as an abi field list: pseudo-fields
// (:method, :url, :status, ...) first, then the headers.

// WantsUpgrade reports whether a request with header h asks to switch
// protocols.
func WantsUpgrade(h http.Header) bool {
	return h.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

// EncodeRequestHead lays out :method, :url, any other pseudo-fields and the
// headers of r.
func EncodeRequestHead(buf []byte, r *http.Request, pseudo [][2]string) []byte {
	b := abi.NewFieldsBuilder(buf)
	b.Add(abi.FieldMethod, r.Method)
	for _, f := range pseudo {
		b.Add(f[0], f[1])
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	b.Add(abi.FieldURL, scheme+"://"+r.Host+r.URL.RequestURI())
	b.Add(abi.FieldRemoteAddr, r.RemoteAddr)
	b.Add("Host", r.Host)
	for _, te := range r.TransferEncoding { // net/http moves it out of r.Header
		b.Add("Transfer-Encoding", te)
	}
	if r.Header.Get("Content-Length") == "" && r.Body != nil && r.Body != http.NoBody {
		switch { // a request built by the host (to an object) says how its body ends
		case r.ContentLength > 0:
			b.Add("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		case r.ContentLength < 0 && len(r.TransferEncoding) == 0:
			b.Add("Transfer-Encoding", "chunked")
		}
	}
	for name, values := range r.Header {
		for _, v := range values {
			b.Add(name, v)
		}
	}
	return b.Bytes()
}

// EncodeResponseHead lays out :status and the headers of resp.
func EncodeResponseHead(resp *http.Response) []byte {
	b := abi.NewFieldsBuilder(nil)
	b.Add(abi.FieldStatus, strconv.Itoa(resp.StatusCode))
	for name, values := range resp.Header {
		for _, v := range values {
			b.Add(name, v)
		}
	}
	return b.Bytes()
}

// DecodeHead reads a field list into pseudo-fields and validated headers,
// which are added to h.
func DecodeHead(raw []byte, pseudo map[string]*string, h http.Header) error {
	if len(raw) > abi.MaxHeadBytes {
		return fmt.Errorf("%w: head is %d bytes, the limit is %d", abi.StatusTooLarge, len(raw), abi.MaxHeadBytes)
	}
	var bad error
	err := abi.RangeFields(raw, func(name, value []byte) bool {
		if len(name) > 0 && name[0] == ':' {
			p, ok := pseudo[string(name)]
			if !ok {
				bad = fmt.Errorf("%w: unknown pseudo-field %q", abi.StatusInvalid, name)
				return false
			}
			*p = string(value)
			return true
		}
		n, v := string(name), string(value)
		if !httpguts.ValidHeaderFieldName(n) {
			bad = fmt.Errorf("%w: invalid header name %q", abi.StatusInvalid, n)
			return false
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			bad = fmt.Errorf("%w: invalid value for header %q", abi.StatusInvalid, n)
			return false
		}
		h.Add(n, v)
		return true
	})
	if err != nil {
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return bad
}
