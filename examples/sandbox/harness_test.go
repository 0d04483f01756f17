package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/wharftest"
)

// TestSandboxInHarness runs a script in a real container through the
// harness, straight to the object by name.
func TestSandboxInHarness(t *testing.T) {
	p := wharftest.Start(t, wharftest.Options{Images: []string{wharftest.BusyboxImage(t)}})
	req, _ := http.NewRequest("POST", "http://sandbox/run", strings.NewReader("echo hi from $(pwd)"))
	resp, err := p.Fetch("SANDBOX", "t", req)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode, string(out))
	assert.Equal(t, "hi from /work\n", string(out))
}
