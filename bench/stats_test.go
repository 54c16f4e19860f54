package bench

import (
	"slices"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ten := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	cases := []struct {
		name string
		xs   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"one sample", []float64{42}, 99, 42},
		{"p50 of ten is the fifth", ten, 50, 5},
		{"p99 of ten is the largest", ten, 99, 10},
		{"p90 of ten is the ninth", ten, 90, 9},
		{"p100", ten, 100, 10},
		{"tiny p is the smallest", ten, 0.1, 1},
		{"p50 of two is the smaller", []float64{300, 100}, 50, 100},
		{"p50 of three is the middle", []float64{3, 1, 2}, 50, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.xs)
			if got := Percentile(tc.xs, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.xs, tc.p, got, tc.want)
			}
			if !slices.Equal(in, tc.xs) {
				t.Errorf("Percentile reordered its input: %v", tc.xs)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
		want Dist
	}{
		{"empty", nil, Dist{}},
		{"four", []float64{40, 10, 30, 20}, Dist{N: 4, Min: 10, P50: 20, P99: 40, Max: 40, Mean: 25}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(tc.xs); got != tc.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestParseConfigs(t *testing.T) {
	cases := []struct {
		in      string
		want    []MoveConfig
		wantErr bool
	}{
		{in: "small,256MiB,1GiB+dirty", want: DefaultConfigs()},
		{in: "SMALL", want: []MoveConfig{{Name: "small"}}},
		{in: "512", want: []MoveConfig{{Name: "512MiB", BallastMiB: 512}}},
		{in: "1024:64, 0", want: []MoveConfig{{Name: "1024MiB+64MiB/s", BallastMiB: 1024, DirtyMiBps: 64}, {Name: "small"}}},
		{in: "", wantErr: true},
		{in: "big", wantErr: true},
		{in: "-5", wantErr: true},
		{in: "256:fast", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseConfigs(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseConfigs(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ParseConfigs(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestPLCArgs(t *testing.T) {
	cases := []struct {
		c    MoveConfig
		want []string
	}{
		{MoveConfig{Name: "small"}, nil},
		{MoveConfig{BallastMiB: 256}, []string{"--ballast", "256"}},
		{MoveConfig{BallastMiB: 1024, DirtyMiBps: 64}, []string{"--ballast", "1024", "--dirty-rate", "64"}},
	}
	for _, tc := range cases {
		t.Run(tc.c.Name, func(t *testing.T) {
			if got := tc.c.PLCArgs(); !slices.Equal(got, tc.want) {
				t.Errorf("PLCArgs() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProbeTail(t *testing.T) {
	cases := []struct {
		name            string
		after, downtime time.Duration
		want            time.Duration
	}{
		{"short freeze", 500 * time.Millisecond, 300 * time.Millisecond, time.Second},
		{"two seconds", 500 * time.Millisecond, 2 * time.Second, 2700 * time.Millisecond},
		{"beyond half the probe timeout", 500 * time.Millisecond, 3 * time.Second, 3700*time.Millisecond + 6*time.Second},
		{"beyond the probe timeout", 500 * time.Millisecond, 15 * time.Second, 5700*time.Millisecond + 6*time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := probeTail(tc.after, tc.downtime); got != tc.want {
				t.Errorf("probeTail(%v, %v) = %v, want %v", tc.after, tc.downtime, got, tc.want)
			}
		})
	}
}
