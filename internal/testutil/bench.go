package testutil

import (
	"slices"
	"testing"
	"time"
)

// BenchRounds is how many alternating rounds a benchmark runs of the
// measured thing and its baseline; ratios are taken between medians.
const BenchRounds = 5

// Median returns the middle value of xs.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// Percentile returns the value below which a fraction p of xs falls.
func Percentile(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// CompareLoops times guest exports that loop n times (the measured one and
// its baseline) in alternating rounds and reports the medians per iteration
// and their ratio, as unit/iteration and baselineUnit/iteration metrics.
func CompareLoops(b *testing.B, n uint64, call func(export string, n uint64) error, measured, baseline, unit, baselineUnit string) {
	perCall := func(export string) float64 {
		start := time.Now()
		if err := call(export, n); err != nil {
			b.Fatal(err)
		}
		return float64(time.Since(start).Nanoseconds()) / float64(n)
	}
	var m, base []float64
	for i := 0; i < b.N*BenchRounds; i++ {
		m = append(m, perCall(measured))
		base = append(base, perCall(baseline))
	}
	b.ReportMetric(Median(m), unit)
	b.ReportMetric(Median(base), baselineUnit)
	b.ReportMetric(Median(m)/Median(base), "ratio")
}
