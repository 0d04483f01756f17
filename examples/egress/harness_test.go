package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/wharftest"
)

// TestEgressInHarness: the container's calls are answered by the Worker.
func TestEgressInHarness(t *testing.T) {
	p := wharftest.Start(t, wharftest.Options{Images: []string{wharftest.BusyboxImage(t)},
		DNSUpstream: []string{"127.0.0.1:9"}}) // no name here is resolved upstream
	resp, err := http.Get(p.URL + "/call/a1")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "status=200\nX-Injected-By: wharf-worker\n")
}
