package probe

import "time"

// latencies is a fixed-size histogram: a run "until signalled" at 100
// requests per second must not grow memory without bound. Buckets are
// 10 µs wide below 10 ms, 1 ms wide below 1 s, 100 ms wide below 60 s, and
// one overflow bucket; a percentile is reported as its bucket's upper edge.
type latencies struct {
	counts [1000 + 990 + 590 + 1]uint64
	n      uint64
	max    time.Duration
}

func latencyBucket(d time.Duration) int {
	switch {
	case d < 10*time.Millisecond:
		return int(d / (10 * time.Microsecond))
	case d < time.Second:
		return 1000 + int((d-10*time.Millisecond)/time.Millisecond)
	case d < time.Minute:
		return 1990 + int((d-time.Second)/(100*time.Millisecond))
	default:
		return 2580
	}
}

func latencyUpper(b int) time.Duration {
	switch {
	case b < 1000:
		return time.Duration(b+1) * 10 * time.Microsecond
	case b < 1990:
		return 10*time.Millisecond + time.Duration(b-1000+1)*time.Millisecond
	case b < 2580:
		return time.Second + time.Duration(b-1990+1)*100*time.Millisecond
	default:
		return time.Minute
	}
}

func (l *latencies) add(d time.Duration) {
	l.counts[latencyBucket(max(d, 0))]++
	l.n++
	l.max = max(l.max, d)
}

// quantile returns the upper edge of the bucket holding the q-th sample,
// never more than the largest sample seen; 0 when empty.
func (l *latencies) quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := uint64(q*float64(l.n) + 0.5)
	rank = min(max(rank, 1), l.n)
	var seen uint64
	for b, c := range l.counts {
		seen += c
		if seen >= rank {
			return min(latencyUpper(b), l.max)
		}
	}
	return l.max
}
