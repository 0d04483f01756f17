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
