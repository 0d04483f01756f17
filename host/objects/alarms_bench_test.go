package objects

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// BenchmarkAlarmSetWithManyPending times Set (an object's setAlarm) on a
// started scheduler with 100,000 alarms pending, an hour ahead; the
// baseline, in alternating rounds, is the same Sets with 100 pending. A
// ratio near 1 says a Set costs the same however many alarms wait.
func BenchmarkAlarmSetWithManyPending(b *testing.B) {
	open := func(pending int) *Alarms {
		path := filepath.Join(b.TempDir(), "alarms.sqlite")
		fillAlarmIndex(b, path, pending, time.Now().Add(time.Hour))
		a, err := OpenAlarms(path, func(string) bool { return true },
			func(class, id string, _ int, _ func(error)) error {
				return fmt.Errorf("alarm %s/%s delivered: none is due", class, id)
			}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		require.NoError(b, err)
		b.Cleanup(a.Close)
		a.Start()
		return a
	}
	many, few := open(100_000), open(100)
	const sets = 200
	perSet := func(a *Alarms) float64 {
		at := time.Now().Add(2 * time.Hour)
		start := time.Now()
		for i := range sets {
			if err := a.Set("C", fmt.Sprint(i%50), at.Add(time.Duration(i)*time.Millisecond)); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / sets
	}
	var m, base []float64
	for range b.N * testutil.BenchRounds {
		m = append(m, perSet(many))
		base = append(base, perSet(few))
	}
	b.ReportMetric(testutil.Median(m), "ns/set")
	b.ReportMetric(testutil.Median(base), "ns/set_100_pending")
	b.ReportMetric(testutil.Median(m)/testutil.Median(base), "ratio")
}
