package testutil

import "slices"

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
