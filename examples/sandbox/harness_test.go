package main

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
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

// fatalRecorder is a testing.TB whose Fatal keeps its message and ends
// only the goroutine that called it.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// TestHarnessSaysHowToGiveImages: a plugin whose image the harness was not
// given fails with how to give it, not only with a wharf images command
// for a data directory that is gone after the test.
func TestHarnessSaysHowToGiveImages(t *testing.T) {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		wharftest.Start(r, wharftest.Options{})
	}()
	<-done
	assert.Contains(t, r.msg, `image "wharf.test/busybox:latest" is not in wharf's containerd`)
	assert.Contains(t, r.msg, "give the plugin's images as archives in wharftest.Options{Images: …} (wharftest.BusyboxImage(t) writes a busybox one)")
}
