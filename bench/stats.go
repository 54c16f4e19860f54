package bench

import (
	"math"
	"slices"
)

// Dist summarises a handful of samples. With 10 moves per configuration a
// percentile is one of the samples, so Percentile uses the nearest-rank
// method: p99 of 10 samples is the largest, which is what a reader expects.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of xs:
// the smallest sample that at least p% of the samples do not exceed. It
// returns 0 for no samples and does not modify xs.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Summarize returns the distribution of xs; the zero Dist for none.
func Summarize(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return Dist{
		N:    len(xs),
		Min:  slices.Min(xs),
		P50:  Percentile(xs, 50),
		P99:  Percentile(xs, 99),
		Max:  slices.Max(xs),
		Mean: sum / float64(len(xs)),
	}
}
