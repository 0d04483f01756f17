package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/wharftest"
)

// TestHelloInHarness is the test a plugin author writes: wharftest builds
// the plugin and serves it in-process.
func TestHelloInHarness(t *testing.T) {
	p := wharftest.Start(t, wharftest.Options{})
	resp, err := http.Get(p.URL + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "Hello from wharf!\n", string(body))

	// GET /fetch without its parameter is the client's mistake, and the
	// plugin keeps serving.
	resp, err = http.Get(p.URL + "/fetch")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "missing the url parameter: GET /fetch?url=<URL to fetch>\n", string(body))
	resp, err = http.Get(p.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}
