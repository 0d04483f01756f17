package objects

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/host/storage"
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

// alarmsHandingOverDone opens an alarm index, closed when the test ends,
// whose delivery hands each alarm's done over on got, for the test to say
// when and how the alarm's event ended.
func alarmsHandingOverDone(t *testing.T) (a *Alarms, got chan func(error)) {
	got = make(chan func(error), 1)
	a, err := OpenAlarms(filepath.Join(t.TempDir(), "alarms.sqlite"), func(string) bool { return true },
		func(_, _ string, _ int, done func(error)) error {
			got <- done
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a, got
}

// TestAlarmSetAsTheLastOneSucceeds sets an object's next alarm while its
// last one's success is being recorded, as a handler's caller may once the
// last alarm's writes are visible: the new alarm is kept, in memory and in
// the index, whichever goes first.
func TestAlarmSetAsTheLastOneSucceeds(t *testing.T) {
	a, got := alarmsHandingOverDone(t)
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

// TestAlarmSetWhileTheLastRetryFailsIsKept: an alarm set by another event
// while the last retry of the one before fails (its failure recorded once
// that event's batch committed) is due at its own time: giving up the old
// one removed the new one from the index, and it never fired.
func TestAlarmSetWhileTheLastRetryFailsIsKept(t *testing.T) {
	a, got := alarmsHandingOverDone(t)
	k := alarmKey{"C", "x"}
	a.Start()
	require.NoError(t, a.Set(k.class, k.id, time.Now()))
	done := <-got
	a.mu.Lock()
	a.retries[k] = maxAlarmRetries // this delivery is the last retry
	a.mu.Unlock()
	a.undone(k.class, k.id) // its event failed, before the other ran
	next := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	require.NoError(t, a.Set(k.class, k.id, next))
	done(errors.New("the last retry failed"))

	a.mu.Lock()
	due, ok := a.due[k]
	retries := a.retries[k]
	a.mu.Unlock()
	require.True(t, ok, "the alarm set meanwhile was given up with the old one")
	assert.True(t, due.Equal(next))
	assert.Zero(t, retries, "the new alarm starts its own count")
	var ms int64
	require.NoError(t, a.db.QueryRow("SELECT at_ms FROM alarms WHERE class = ? AND id = ?", k.class, k.id).Scan(&ms), "the index lost it")
	assert.Equal(t, next.UnixMilli(), ms)
}

// TestAlarmHandlerThatSetsAnAlarmThenFails: a handler that sets the next
// alarm and then fails (its writes, the new alarm with them, are undone)
// is retried with a growing count, as any failing handler: its own Set
// does not start the count again, and the index has the retry's time.
func TestAlarmHandlerThatSetsAnAlarmThenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.sqlite")
	retries := make(chan int, 10)
	var a *Alarms
	a, err := OpenAlarms(path, func(string) bool { return true },
		func(class, id string, retry int, done func(error)) error {
			go func() {
				retries <- retry
				assert.NoError(t, a.Set(class, id, time.Now().Add(time.Hour))) // the handler's next alarm
				a.undone(class, id)                                            // its event failed: rolled back
				done(errors.New("failed after setting the next alarm"))
			}()
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.Set("C", "x", time.Now()))
	a.Start()
	for want := range 2 {
		select {
		case got := <-retries:
			require.Equal(t, want, got, "delivery %d says how many times it failed", want)
		case <-time.After(5 * time.Second):
			t.Fatalf("delivery %d never came", want)
		}
	}
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.retries[alarmKey{"C", "x"}] == 2 && !a.running[alarmKey{"C", "x"}]
	}, 5*time.Second, time.Millisecond, "the second failure counts as the second")
	require.Eventually(t, func() bool { // written as the failure is recorded
		var ms int64
		require.NoError(t, a.db.QueryRow("SELECT at_ms FROM alarms WHERE class = 'C' AND id = 'x'").Scan(&ms))
		return ms < time.Now().Add(time.Minute).UnixMilli()
	}, 5*time.Second, time.Millisecond, "the index has the undone alarm's time, not the retry's: a restart would wait for it")
}

// TestAlarmSetAfterAFailedRunReplacesTheRetry: an alarm another event sets
// after a failed run (its writes undone), before its failure is recorded
// (once that event's batch committed), replaces the retry, as setAlarm
// replaces an object's one alarm in the reference: it fires at its own
// time, earlier than the retry's, with a count of 0. Before, the retry's
// time replaced it, and it fired late, as a retry. A handler's own alarm,
// undone with its failed run, does not (TestAlarmHandlerThatSetsAnAlarmThenFails).
func TestAlarmSetAfterAFailedRunReplacesTheRetry(t *testing.T) {
	type delivery struct {
		retry int
		done  func(error)
	}
	got := make(chan delivery, 10)
	a, err := OpenAlarms(filepath.Join(t.TempDir(), "alarms.sqlite"), func(string) bool { return true },
		func(_, _ string, retry int, done func(error)) error {
			got <- delivery{retry, done}
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	k := alarmKey{"C", "x"}
	a.Start()
	require.NoError(t, a.Set(k.class, k.id, time.Now()))
	d := <-got
	a.undone(k.class, k.id) // the handler failed: its event's writes are undone
	next := time.UnixMilli(time.Now().Add(100 * time.Millisecond).UnixMilli())
	require.NoError(t, a.Set(k.class, k.id, next)) // another event, before the failure is recorded
	start := time.Now()
	d.done(errors.New("the handler failed"))
	var ms int64
	require.NoError(t, a.db.QueryRow("SELECT at_ms FROM alarms WHERE class = ? AND id = ?", k.class, k.id).Scan(&ms), "the index lost it")
	assert.Equal(t, next.UnixMilli(), ms, "the index has the alarm set meanwhile")
	select {
	case d = <-got:
		assert.Zero(t, d.retry, "the alarm set meanwhile is not a retry")
		assert.Less(t, time.Since(start), firstRetryDelay/2, "it fired at the retry's time, not its own")
		assert.False(t, time.Now().Before(next), "it fired before its time")
		d.done(nil)
	case <-time.After(5 * firstRetryDelay):
		t.Fatal("neither the alarm set meanwhile nor a retry fired")
	}
}

// TestAlarmsUnderConcurrentSetAndRemove sets and removes alarms of a few
// objects from many goroutines while their alarms run and succeed or
// fail; once the last alarm of each object is set far ahead and every
// running alarm has finished, memory and index both hold exactly it.
func TestAlarmsUnderConcurrentSetAndRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.sqlite")
	var outcomes sync.WaitGroup
	var n sync.Mutex
	count := 0
	a, err := OpenAlarms(path, func(string) bool { return true },
		func(_, _ string, _ int, done func(error)) error {
			n.Lock()
			count++
			fail := count%3 == 0
			n.Unlock()
			outcomes.Add(1)
			go func() {
				defer outcomes.Done()
				if fail {
					done(errors.New("failed on purpose"))
				} else {
					done(nil)
				}
			}()
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	a.Start()
	ids := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := ids[(g+i)%len(ids)]
				if i%5 == 4 {
					a.Remove("C", id)
				} else {
					assert.NoError(t, a.Set("C", id, time.Now().Add(time.Duration(i%3)*time.Millisecond)))
				}
			}
		})
	}
	wg.Wait()
	last := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	for _, id := range ids {
		require.NoError(t, a.Set("C", id, last))
	}
	// Let the alarms already delivered finish, then check.
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.running) == 0
	}, 5*time.Second, time.Millisecond)
	outcomes.Wait()
	n.Lock()
	t.Logf("%d alarms delivered", count)
	n.Unlock()
	a.Close()
	a, err = OpenAlarms(path, func(string) bool { return true },
		func(string, string, int, func(error)) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	for _, id := range ids {
		assert.True(t, a.due[alarmKey{"C", id}].Equal(last), "the index has %s's last alarm", id)
	}
}

// TestAlarmSetAgainForTheSameTime: a handler that sets its alarm again for
// the time it was due (say, a schedule it keeps in storage and has not
// moved on yet) and succeeds keeps that alarm: it was set after delivery.
func TestAlarmSetAgainForTheSameTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.sqlite")
	due := time.UnixMilli(time.Now().UnixMilli())
	runs := make(chan int, 10)
	var delivered atomic.Int32
	var a *Alarms
	a, err := OpenAlarms(path, func(string) bool { return true },
		func(class, id string, retry int, done func(error)) error {
			go func() {
				// The first run sets it again (not len(runs), which the
				// test empties: a later run would set it after Close).
				if delivered.Add(1) == 1 {
					assert.NoError(t, a.Set(class, id, due))
				}
				runs <- retry
				done(nil)
			}()
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.Set("C", "x", due))
	a.Start()
	for i := range 2 {
		select {
		case <-runs:
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d never came: the alarm set again was dropped", i)
		}
	}
}

// TestAlarmOfADatabaseBroughtBackIsRestored: a database a start brought
// back to an earlier commit (its later ones dropped or given up) may hold
// an alarm again that ran, whose success removed it from the index; the
// start puts it back, so it fires. Before, it never fired until the
// object set another. A database of a class not served here, or that
// cannot be read, is passed over.
func TestAlarmOfADatabaseBroughtBackIsRestored(t *testing.T) {
	root := t.TempDir()
	ns := &Namespace{class: "C", dir: filepath.Join(root, "C")}
	require.NoError(t, os.MkdirAll(ns.dir, 0o700))
	log, err := storage.OpenLog(filepath.Join(root, "commit-log"), root, storage.LogOptions{})
	require.NoError(t, err)
	at := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
	withAlarm := filepath.Join(ns.dir, "x.sqlite")
	db := storage.Lazy(withAlarm, log)
	db.BeginEvent()
	require.NoError(t, db.SetAlarm(at))
	require.NoError(t, db.EndEvent(false))
	require.NoError(t, db.Flush())
	require.NoError(t, db.Close())
	require.NoError(t, log.Close())
	unreadable := filepath.Join(ns.dir, "y.sqlite")
	require.NoError(t, os.WriteFile(unreadable, bytes.Repeat([]byte("not sqlite "), 500), 0o600))
	otherClass := filepath.Join(root, "D", "z.sqlite")

	var logs bytes.Buffer
	got := make(chan string, 3)
	a, err := OpenAlarms(filepath.Join(root, "alarms.sqlite"), func(string) bool { return true },
		func(class, id string, _ int, done func(error)) error {
			got <- class + "/" + id
			done(nil)
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, a.restore([]string{otherClass, withAlarm, unreadable}, map[string]*Namespace{"C": ns}, slog.New(slog.NewTextHandler(&logs, nil))))
	assert.Contains(t, logs.String(), "restoring the alarm of an object brought back to an earlier commit: an object's database could not be read")
	assert.Contains(t, logs.String(), "file="+unreadable)
	a.Start()
	select {
	case fired := <-got:
		assert.Equal(t, "C/x", fired)
	case <-time.After(5 * time.Second):
		t.Fatal("the restored alarm did not fire")
	}
	select {
	case fired := <-got:
		t.Fatalf("an alarm fired that no database holds: %s", fired)
	case <-time.After(100 * time.Millisecond):
	}
}

// fillAlarmIndex writes n alarms, of class C and ids 0 to n-1, due at at,
// into a new alarm index at path, in one transaction.
func fillAlarmIndex(tb testing.TB, path string, n int, at time.Time) {
	a, err := OpenAlarms(path, func(string) bool { return true },
		func(string, string, int, func(error)) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(tb, err)
	a.Close()
	db, err := sql.Open("sqlite3", "file:"+path)
	require.NoError(tb, err)
	defer db.Close()
	tx, err := db.Begin()
	require.NoError(tb, err)
	for i := range n {
		_, err := tx.Exec("INSERT INTO alarms (class, id, at_ms) VALUES ('C', ?, ?)", fmt.Sprint(i), at.UnixMilli())
		require.NoError(tb, err)
	}
	require.NoError(tb, tx.Commit())
}

// TestAlarmsFireInTimeOrder: alarms fire earliest first, an alarm moved
// later fires at its new time, and one removed never fires.
func TestAlarmsFireInTimeOrder(t *testing.T) {
	got := make(chan string, 10)
	a, err := OpenAlarms(filepath.Join(t.TempDir(), "alarms.sqlite"), func(string) bool { return true },
		func(_, id string, _ int, done func(error)) error {
			got <- id
			go done(nil)
			return nil
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer a.Close()
	now := time.Now()
	in := func(ms int) time.Time { return now.Add(time.Duration(ms) * time.Millisecond) }
	for id, ms := range map[string]int{"a": 300, "b": 100, "c": 200, "d": 50, "e": 150} {
		require.NoError(t, a.Set("C", id, in(ms)))
	}
	require.NoError(t, a.Set("C", "b", in(400))) // moved from first to last
	a.Remove("C", "c")
	a.Start()
	var order []string
	for range 4 {
		select {
		case id := <-got:
			order = append(order, id)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v fired", order)
		}
	}
	assert.Equal(t, []string{"d", "e", "a", "b"}, order)
	select {
	case id := <-got:
		t.Fatalf("%s fired too", id)
	case <-time.After(100 * time.Millisecond):
	}
}
