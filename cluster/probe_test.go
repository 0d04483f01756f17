package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnreachableEtcdAsksWhetherItRunsOnlyWhereNothingAnswers: an endpoint
// where nothing listens asks whether etcd runs there; one that answers but
// refuses the client (it wants a certificate) says so without the question,
// since something, most likely etcd, runs there.
func TestUnreachableEtcdAsksWhetherItRunsOnlyWhereNothingAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String()
	require.NoError(t, l.Close())

	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	wantsCert := srv.URL

	err = whyUnreachable([]string{closed, wantsCert}, &tls.Config{RootCAs: roots}, errors.New("context deadline exceeded"))
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, "context deadline exceeded: "+closed+": dial tcp ")
	assert.Contains(t, msg, "connection refused (is etcd running there?)")
	assert.Contains(t, msg, wantsCert+": TLS: remote error: tls: certificate required")
	assert.Equal(t, 1, strings.Count(msg, "is etcd running there?"), "asked of the endpoint that answered too: %s", msg)
}
