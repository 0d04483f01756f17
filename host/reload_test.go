package host

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestReloadSwitchesCodeWithoutFailedRequests reloads the plugin three
// times under a steady load of object writes and reads: every request
// succeeds, each new build answers as soon as Reload returns, and the
// objects keep their storage across the moves.
func TestReloadSwitchesCodeWithoutFailedRequests(t *testing.T) {
	const pkg = "testdata/guests/objects"
	w := startObjects(t, t.TempDir(), "")
	builds := map[int]string{}
	for v := 2; v <= 4; v++ {
		builds[v] = testutil.BuildGuestWith(t, pkg, fmt.Sprintf("-ldflags=-X main.codeVersion=%d", v))
	}
	_, version := get(t, w.url+"/version")
	require.Equal(t, "1", version)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	last := make([]atomic.Int64, 8) // the value each client wrote last
	for c := range last {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprint("reload", c)
			for n := int64(1); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body := w.call(t, "STORE", name, "Put", map[string]string{"key": "n", "value": fmt.Sprint(n)})
				if code == 200 {
					last[c].Store(n)
					code, body = w.call(t, "STORE", name, "Get", "n")
				}
				if code != 200 || (body != fmt.Sprintf("%q", fmt.Sprint(n))) {
					failed.Add(1)
					t.Errorf("client %d, write %d: %d %s", c, n, code, body)
					return
				}
				served.Add(1)
			}
		}()
	}
	for v := 2; v <= 4; v++ {
		before := served.Load()
		require.Eventually(t, func() bool { return served.Load() > before+20 }, 10*time.Second, 10*time.Millisecond, "no requests served")
		require.NoError(t, w.Reload(context.Background(), builds[v], v == 3))
		_, version := get(t, w.url+"/version")
		assert.Equal(t, fmt.Sprint(v), version, "the new build answers at once")
	}
	before := served.Load()
	require.Eventually(t, func() bool { return served.Load() > before+20 }, 10*time.Second, 10*time.Millisecond, "no requests served after the last reload")
	close(stop)
	wg.Wait()
	assert.Zero(t, failed.Load())
	for c := range last {
		assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(last[c].Load())), w.mustCall(t, "STORE", fmt.Sprint("reload", c), "Get", "n"))
	}
	assert.NotContains(t, w.logs.String(), "panic")
	assert.Equal(t, w.manifest.Limits.Instances, w.Instances().Live)
	t.Logf("%d requests served across 3 reloads", served.Load())
}

// TestReloadRefusesModuleThatDoesNotFit: a build that lacks a class the
// manifest binds is refused with the reason, and the old code keeps
// serving.
func TestReloadRefusesModuleThatDoesNotFit(t *testing.T) {
	w := startObjects(t, t.TempDir(), "")
	w.mustCall(t, "STORE", "kept", "Put", map[string]string{"key": "k", "value": "v"})
	err := w.Reload(context.Background(), testutil.BuildGuest(t, "testdata/guests/testworker"), false)
	require.ErrorContains(t, err, `class "Store"`)
	_, version := get(t, w.url+"/version")
	assert.Equal(t, "1", version)
	assert.Equal(t, `"v"`, w.mustCall(t, "STORE", "kept", "Get", "k"))
}

// TestReloadDuringBackToBackEvents reloads twice while clients keep one
// object's queue full, so events chained on an instance of the old build
// are in flight as it retires, and streamed responses from the same
// object come in between: every request succeeds, every write is read
// back, and each stream arrives whole after the write it made.
func TestReloadDuringBackToBackEvents(t *testing.T) {
	const pkg = "testdata/guests/objects"
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\n")
	builds := map[int]string{}
	for v := 2; v <= 3; v++ {
		builds[v] = testutil.BuildGuestWith(t, pkg, fmt.Sprintf("-ldflags=-X main.codeVersion=%d", v))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	last := make([]atomic.Int64, 12)
	for c := range last {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint("n", c)
			for n := int64(1); ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if c%4 == 3 { // a streamed response in the middle of the queue
					code, body := get(t, w.url+"/fetch/STORE/shared/stream")
					if !assert.Equal(t, 200, code, body) || !assert.Equal(t, "one two three", body) {
						return
					}
					served.Add(1)
					continue
				}
				code, body := w.call(t, "STORE", "shared", "Put", map[string]string{"key": key, "value": fmt.Sprint(n)})
				if !assert.Equal(t, 200, code, "client %d, write %d: %s", c, n, body) {
					return
				}
				last[c].Store(n)
				code, body = w.call(t, "STORE", "shared", "Get", key)
				if !assert.Equal(t, 200, code, body) || !assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(n)), body, "client %d", c) {
					return
				}
				served.Add(1)
			}
		}()
	}
	for v := 2; v <= 3; v++ {
		before := served.Load()
		require.Eventually(t, func() bool { return served.Load() > before+50 }, 20*time.Second, 10*time.Millisecond, "no requests served")
		require.NoError(t, w.Reload(context.Background(), builds[v], false))
		_, version := get(t, w.url+"/version")
		assert.Equal(t, fmt.Sprint(v), version)
	}
	before := served.Load()
	require.Eventually(t, func() bool { return served.Load() > before+50 }, 20*time.Second, 10*time.Millisecond, "no requests served after the last reload")
	close(stop)
	wg.Wait()
	for c := range last {
		if c%4 != 3 {
			assert.Equal(t, fmt.Sprintf("%q", fmt.Sprint(last[c].Load())), w.mustCall(t, "STORE", "shared", "Get", fmt.Sprint("n", c)))
		}
	}
	assert.Equal(t, `"yes"`, w.mustCall(t, "STORE", "shared", "Get", "streamed"))
	assert.Equal(t, w.manifest.Limits.Instances, w.Instances().Live)
	t.Logf("%d requests served across 2 reloads", served.Load())
}
