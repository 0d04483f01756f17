package objects

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAlarmsIndexAndDelivery: alarms wait for Start, are delivered when
// due, survive a reopen until they succeed, are retried after a failure,
// and an index entry of a class no longer declared is ignored.
func TestAlarmsIndexAndDelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.sqlite")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	type delivery struct {
		class, id string
		retry     int
		done      func(error)
	}
	open := func(known ...string) (*Alarms, chan delivery) {
		got := make(chan delivery, 10)
		a, err := OpenAlarms(path, func(c string) bool { return len(known) == 0 || c == known[0] },
			func(class, id string, retry int, done func(error)) error {
				got <- delivery{class, id, retry, done}
				return nil
			}, logger)
		require.NoError(t, err)
		return a, got
	}

	a, got := open()
	require.NoError(t, a.Set("C", "x", time.Now()))
	require.NoError(t, a.Set("D", "y", time.Now()))
	select {
	case d := <-got:
		t.Fatalf("delivered before Start: %+v", d)
	case <-time.After(50 * time.Millisecond):
	}
	a.Close()

	a, got = open("C") // D is no longer declared
	a.Start()
	d := <-got
	assert.Equal(t, "C", d.class)
	assert.Equal(t, "x", d.id)
	assert.Equal(t, 0, d.retry)
	d.done(errors.New("boom"))
	select {
	case d := <-got:
		t.Fatalf("retried at once, or D delivered: %+v", d)
	case <-time.After(200 * time.Millisecond):
	}
	d = <-got // after firstRetryDelay
	assert.Equal(t, 1, d.retry, "the retry says how many times it failed")
	d.done(nil)
	a.Close()

	a, got = open()
	a.Start()
	d = <-got
	assert.Equal(t, "D", d.class, "only D's entry is left: C's succeeded")
	a.Close()
}

// TestAlarmSetAsTheLastOneSucceeds sets an object's next alarm while its
// last one's success is being recorded, as a handler's caller may once the
// last alarm's writes are visible: the new alarm is kept, in memory and in
// the index, whichever goes first.
func TestAlarmSetAsTheLastOneSucceeds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.sqlite")
	got := make(chan func(error), 1)
	a, err := OpenAlarms(path, func(string) bool { return true },
		func(_, _ string, _ int, done func(error)) error {
			got <- done
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	a.Start()
	k := alarmKey{"C", "x"}
	for i := range 100 {
		require.NoError(t, a.Set(k.class, k.id, time.Now()))
		done := <-got
		next := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, a.Set(k.class, k.id, next))
		}()
		time.Sleep(time.Duration(i%10) * 50 * time.Microsecond) // either may go first
		done(nil)
		wg.Wait()
		a.mu.Lock()
		due := a.due[k]
		a.mu.Unlock()
		require.True(t, due.Equal(next), "round %d: the alarm set as the last one succeeded was forgotten (due %v)", i, due)
		var ms int64
		require.NoError(t, a.db.QueryRow("SELECT at_ms FROM alarms WHERE class = ? AND id = ?", k.class, k.id).Scan(&ms),
			"round %d: the index lost the alarm set as the last one succeeded", i)
		require.Equal(t, next.UnixMilli(), ms, "round %d", i)
	}
}
