package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/wharftest"
)

// TestWebappInHarness starts a session's container on the first request.
func TestWebappInHarness(t *testing.T) {
	p := wharftest.Start(t, wharftest.Options{Images: []string{wharftest.BusyboxImage(t)}, StopGrace: 5 * time.Second})
	resp, err := http.Get(p.URL + "/s/alice/index.html")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(body))
	assert.True(t, strings.HasPrefix(string(body), "session container "), string(body))
}
