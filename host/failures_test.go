package host

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// internals are what a failed guest leaves in the host's log and a client
// must never see: stack traces, panic values, source positions.
var internals = []string{"stack", "goroutine", "on purpose", ".go:", "wasm", "panic", "exit"}

// requestIDIn finds the request id a failure answer names.
var requestIDIn = regexp.MustCompile(`\(request id ([^)\s]+)\)`)

// assertOnlyRequestID checks body is a short generic message naming a
// request id, and that the host log holds the details under that id.
func assertOnlyRequestID(t *testing.T, logs, body, detail string) {
	t.Helper()
	for _, s := range internals {
		assert.NotContains(t, strings.ToLower(body), s, "the answer leaks guest internals: %q", body)
	}
	m := requestIDIn.FindStringSubmatch(body)
	require.NotNil(t, m, "the answer names no request id: %q", body)
	var found bool
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "request_id="+m[1]) && strings.Contains(line, detail) {
			found = true
		}
	}
	assert.True(t, found, "no log line with request_id=%s holds %q", m[1], detail)
}

func TestGuestFailuresAnswerWithARequestIDOnly(t *testing.T) {
	w := startWorker(t, "[limits]\ntimeout = \"500ms\"\n")
	for _, c := range []struct {
		path, want, detail string
		code               int
	}{
		{"/trap", "worker failed (request id ", "guest crashed on purpose", 500},
		{"/trap", "worker failed (request id ", "exited with code 2", 500},
		{"/exit", "worker failed (request id ", "exited with code 3", 500},
		{"/panic", "worker failed (request id ", "handler panicked on purpose", 500},
		{"/panic", "worker failed (request id ", "goroutine", 500},
		{"/panic-after-head", "worker failed (request id ", "handler panicked after its head on purpose", 500},
		{"/loop", "worker exceeded its time limit (request id ", "did not end within 500ms", 504},
	} {
		code, body := get(t, w.url+c.path)
		assert.Equal(t, c.code, code, c.path)
		assert.True(t, strings.HasPrefix(body, c.want), "%s: %q", c.path, body)
		assertOnlyRequestID(t, w.logs.String(), body, c.detail)
	}
	w.assertServing(t)
}

func TestObjectFailuresReachCallersAsARequestIDOnly(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	var code int
	var body string
	for i := range 20 {
		// An object placed on the calling Worker's own instance takes the
		// Worker's event down with it ("worker failed"): try another, once
		// the trapped instance's replacement is up (objects go to the least
		// loaded of the live instances).
		require.Eventually(t, func() bool { return w.Instances().Live == 2 }, 30*time.Second, 10*time.Millisecond)
		code, body = w.call(t, "STORE", fmt.Sprint("t", i), "PutThenTrap", "b")
		if !strings.HasPrefix(body, "worker failed") {
			break
		}
	}
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "the object's event failed (request id ")
	assertOnlyRequestID(t, w.logs.String(), body, "object trapped on purpose")

	code, body = w.call(t, "BROKEN", "x", "Anything", nil)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "constructing Broken failed (request id ")
	assertOnlyRequestID(t, w.logs.String(), body, "constructor failed on purpose")
	w.mustCall(t, "STORE", "t", "Put", map[string]string{"key": "a", "value": "1"})
}

func TestObjectPanicAfterStreamingReachesReadersAsARequestIDOnly(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	const detail = "object panicked after streaming on purpose"

	// A guest reading the object's streamed body gets the failure as the
	// read's error, without the panic.
	code, body := get(t, w.url+"/read/STORE/sp/stream-panic")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `200 "" wharf: the object's event failed (request id Store#`)
	assertOnlyRequestID(t, w.logs.String(), body, detail)

	// A client whose Worker forwards that body gets a 502 naming the
	// Worker's request, not an empty reply.
	code, body = get(t, w.url+"/fetch/STORE/sp/stream-panic")
	assert.Equal(t, http.StatusBadGateway, code)
	assert.True(t, strings.HasPrefix(body, "the worker's response failed (request id "), body)
	assertOnlyRequestID(t, w.logs.String(), body, "response body failed before its first byte")
	code, body = get(t, w.url+"/fetch/STORE/sp/stream")
	assert.Equal(t, 200, code)
	assert.Equal(t, "one two three", body, "the object serves on")
}
