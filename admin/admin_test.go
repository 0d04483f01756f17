package admin

import (
	"context"
	"net"
	"net/http"
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
