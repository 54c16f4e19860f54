package probe

import (
	"strings"
	"testing"
	"time"
)

func TestContinuity(t *testing.T) {
	const marker = 0x1234
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type reading struct {
		at     time.Duration // send time after t0; the reply comes 1 ms later
		scan   uint32
		marker uint16
	}
	tests := []struct {
		name     string
		readings []reading
		want     []string // substrings, one per violation, in order
	}{
		{"steady", []reading{{0, 100, marker}, {10 * time.Millisecond, 101, marker}, {20 * time.Millisecond, 102, marker}}, nil},
		{"frozen then resumes", []reading{
			{0, 100, marker},
			{10 * time.Millisecond, 100, marker},
			{3 * time.Second, 101, marker}, // frozen for ~3 s, counter stood still
			{3010 * time.Millisecond, 102, marker},
		}, nil},
		{"slower than wall clock", []reading{{0, 100, marker}, {time.Second, 150, marker}}, nil},
		{"within slack", []reading{{0, 100, marker}, {100 * time.Millisecond, 100 + 15 + 20, marker}}, nil},
		{"backwards", []reading{{0, 500, marker}, {10 * time.Millisecond, 3, marker}}, []string{"backwards: 500 -> 3"}},
		{"restart is flagged once", []reading{{0, 500, marker}, {10 * time.Millisecond, 3, marker}, {20 * time.Millisecond, 4, marker}}, []string{"backwards"}},
		{"big forward jump", []reading{{0, 100, marker}, {10 * time.Millisecond, 100 + 1000, marker}}, []string{"jumped forward: 100 -> 1100"}},
		{"wrap is forward", []reading{{0, 0xffffffff, marker}, {10 * time.Millisecond, 0, marker}}, nil},
		{"marker changed", []reading{{0, 100, marker}, {10 * time.Millisecond, 101, 0}}, []string{"marker changed"}},
		{"marker wrong at first read", []reading{{0, 100, 7}}, []string{"marker changed"}},
		{"marker and counter", []reading{{0, 100, marker}, {10 * time.Millisecond, 1, 0}}, []string{"marker changed", "backwards"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := continuity{marker: marker, scanPeriod: 10 * time.Millisecond}
			var got []string
			for _, r := range tt.readings {
				sent := t0.Add(r.at)
				got = append(got, c.observe(sent, sent.Add(time.Millisecond), r.scan, r.marker)...)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("violations %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("violation %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestLatencyQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample is its own max", []time.Duration{1234 * time.Microsecond}, 0.99, 1234 * time.Microsecond},
		{"p50 fine bucket", []time.Duration{100 * time.Microsecond, 200 * time.Microsecond, 5 * time.Second}, 0.5, 210 * time.Microsecond},
		{"p99 coarse bucket", append(make([]time.Duration, 98), 2500*time.Millisecond, 3*time.Second), 0.99, 2600 * time.Millisecond},
		{"overflow capped by max", []time.Duration{2 * time.Minute}, 0.5, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l latencies
			for _, s := range tt.samples {
				l.add(s)
			}
			if got := l.quantile(tt.q); got != tt.want {
				t.Fatalf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}
