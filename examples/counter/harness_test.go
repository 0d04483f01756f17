package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/wharftest"
)

// TestCounterInHarness drives the Worker over HTTP and reaches the object
// by name, as a plugin author's test would.
func TestCounterInHarness(t *testing.T) {
	p := wharftest.Start(t, wharftest.Options{})
	for range 2 {
		code, body, err := request("POST", p.URL+"/counter/a")
		require.NoError(t, err)
		require.Equal(t, 200, code, body)
	}
	var v int64
	require.NoError(t, p.Call("COUNTER", "a", "Get", nil, &v))
	assert.Equal(t, int64(2), v, "the object the Worker used is the one the name reaches")
	require.NoError(t, p.Call("COUNTER", "a", "Increment", 5, &v))
	assert.Equal(t, int64(7), v)
	code, body, err := request("GET", p.URL+"/counter/a")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "7", body)

	req, _ := http.NewRequest("GET", "http://counter/", nil)
	resp, err := p.Fetch("COUNTER", "a", req)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Regexp(t, `^counter [0-9a-f]{12}… = 7\n$`, string(got))

	var wrong string
	assert.EqualError(t, p.Call("COUNTER", "a", "Get", nil, &wrong),
		"call Get: decoding its result: json: cannot unmarshal number into Go value of type string")
	err = p.Call("COUNTER", "a", "Nope", nil, nil)
	assert.ErrorContains(t, err, `COUNTER "a": Nope: `)
	assert.ErrorContains(t, err, `has no method "Nope"`)
	assert.ErrorContains(t, p.Call("COUNTERS", "a", "Get", nil, nil), `no Durable Object binding named "COUNTERS" in the manifest`)
}
