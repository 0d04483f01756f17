package admin

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRefusalsCarryAMessage: a refusal's body is the error; an empty body
// still gives an error that says what the running wharf answered.
func TestRefusalsCarryAMessage(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", SocketPath(dir))
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			rw.WriteHeader(http.StatusInternalServerError)
		default:
			http.Error(rw, "no such object", http.StatusNotFound)
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	c := NewClient(dir)
	_, err = c.Metrics(context.Background())
	assert.EqualError(t, err, "the running wharf answered 500 Internal Server Error with no message")
	_, err = c.Inspect(context.Background(), "APP", "bob")
	assert.EqualError(t, err, "no such object")
	_, err = c.Exec(context.Background(), "APP", "bob", ExecRequest{Cmd: []string{"true"}}, nil, nil, nil, nil)
	assert.EqualError(t, err, "no such object")
}

// TestTailFilterLevel: a level slog does not know is refused with the
// levels there are; a known one filters lower ones out.
func TestTailFilterLevel(t *testing.T) {
	_, err := TailFilterFrom(url.Values{"level": {"loud"}})
	assert.EqualError(t, err, `--level must be debug, info, warn or error, got "loud"`)
	f, err := TailFilterFrom(url.Values{"level": {"warn"}})
	require.NoError(t, err)
	assert.False(t, f.Match([]byte(`{"level":"INFO","msg":"x"}`)))
	assert.True(t, f.Match([]byte(`{"level":"ERROR","msg":"x"}`)))
}

// TestTailFilterClassAndObject: --class and --object keep an object's
// event lines (request_id Class#<8 hex>-n) and container lines (class,
// object) of that class and id prefix, and drop those of others.
func TestTailFilterClassAndObject(t *testing.T) {
	event := []byte(`{"level":"INFO","msg":"x","request_id":"App#3f9a2c11-4"}`)
	ctr := []byte(`{"level":"INFO","msg":"x","class":"App","object":"3f9a2c11aa"}`)
	for _, f := range []TailFilter{{Class: "App"}, {Object: "3f9a"}, {Class: "App", Object: "3f9a2c11aa"}} {
		assert.True(t, f.Match(event), "%+v", f)
		assert.True(t, f.Match(ctr), "%+v", f)
	}
	for _, f := range []TailFilter{{Class: "Other"}, {Object: "3f9b"}} {
		assert.False(t, f.Match(event), "%+v", f)
		assert.False(t, f.Match(ctr), "%+v", f)
	}
}
