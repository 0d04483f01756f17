package host

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallsToAnIdleObjectKeepTheirGuarantees delivers calls to an idle
// object (so at once, by the calling import): a failing one loses its
// write, one past its time limit gets 504, one whose caller went away ends,
// and the object goes on serving every time.
func TestCallsToAnIdleObjectKeepTheirGuarantees(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ntimeout = \"600ms\"\n")
	w.mustCall(t, "STORE", "idle", "Put", map[string]string{"key": "first", "value": "1"})
	for i := range 12 {
		key := fmt.Sprint("k", i)
		time.Sleep(5 * time.Millisecond) // the object waits idle
		code, body := w.call(t, "STORE", "idle", "PutThenPanic", key)
		assert.Equal(t, 500, code, body)
		code, body = w.call(t, "STORE", "idle", "Get", key)
		assert.Equal(t, 500, code, "%s: the failed event's write was undone", key)
		assert.Contains(t, body, "no key")
		time.Sleep(5 * time.Millisecond)
		w.mustCall(t, "STORE", "idle", "Put", map[string]string{"key": key, "value": key})
		assert.Equal(t, fmt.Sprintf("%q", key), w.mustCall(t, "STORE", "idle", "Get", key))
		switch i % 4 {
		case 1:
			time.Sleep(5 * time.Millisecond)
			code, body = w.call(t, "STORE", "idle", "Sleep", 2000)
			assert.Equal(t, 504, code, body)
		case 3:
			time.Sleep(5 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			req, err := http.NewRequestWithContext(ctx, "POST", w.url+"/call/STORE/idle/Sleep", strings.NewReader("300"))
			require.NoError(t, err)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("a caller that went away got an answer: %d", resp.StatusCode)
			}
			cancel()
		}
	}
	assert.Equal(t, `"1"`, w.mustCall(t, "STORE", "idle", "Get", "first"))
	in := w.instanceOf(t, "STORE", "idle")
	require.Eventually(t, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		return in.events.Load() == 0 && len(in.queue) == 0
	}, 5*time.Second, 10*time.Millisecond, "every event on the object's instance ended")
}

// TestCallsPostedToASpinningInstance posts calls to idle objects whose
// instance is stopped by its CPU slice meanwhile: every call is answered,
// every acknowledged write stays, and the objects serve afterwards.
func TestCallsPostedToASpinningInstance(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[limits]\ninstances = 2\ncpu_slice = \"200ms\"\ntimeout = \"5s\"\n")
	names := []string{"p0", "p1", "p2", "p3"}
	for _, n := range names {
		w.mustCall(t, "STORE", n, "Put", map[string]string{"key": "k", "value": n})
	}
	var mu sync.Mutex
	kept := map[string][]string{}
	stop := callUntilStopped(6, func(c, i int) bool {
		name, key := names[(c+i)%len(names)], fmt.Sprintf("c%d-%d", c, i)
		time.Sleep(time.Millisecond)
		if code, _ := w.call(t, "STORE", name, "Put", map[string]string{"key": key, "value": key}); code == 200 {
			mu.Lock()
			kept[name] = append(kept[name], key)
			mu.Unlock()
		}
		return true
	})
	for range 3 {
		code, body := w.call(t, "STORE", "spinner", "Spin", nil)
		assert.Equal(t, 500, code, body)
	}
	stop()
	for name, keys := range kept {
		for _, key := range keys {
			assert.Equal(t, fmt.Sprintf("%q", key), w.mustCall(t, "STORE", name, "Get", key), "%s on %s", key, name)
		}
	}
	for _, n := range names {
		assert.Equal(t, fmt.Sprintf("%q", n), w.mustCall(t, "STORE", n, "Get", "k"))
	}
}

// TestShutdownWithCallsInFlight shuts the host down while clients keep
// calling idle objects: it ends, promptly, and nothing panics.
func TestShutdownWithCallsInFlight(t *testing.T) {
	w := startObjects(t, t.TempDir(), "[durable_objects]\nmax_live = 3\nidle_timeout = \"2ms\"\n")
	stop := callUntilStopped(8, func(c, i int) bool {
		name := fmt.Sprint("s", (c+i)%5)
		body := fmt.Sprintf(`{"key":"k%d","value":"v"}`, i)
		method := "Put"
		if i%3 == 0 {
			method, body = "Sleep", "20"
		}
		resp, err := http.Post(fmt.Sprintf("%s/call/STORE/%s/%s", w.url, name, method), "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	time.Sleep(500 * time.Millisecond)
	w.stopWithin(t, 20*time.Second, "the host did not shut down with calls in flight")
	stop()
}

// callUntilStopped runs n clients, client c making call(c, i) for i = 0,
// 1, … until call returns false or stop is called; stop waits for them.
func callUntilStopped(n int, call func(c, i int) bool) (stop func()) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if !call(c, i) {
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
