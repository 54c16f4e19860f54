package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/capsec/capsec/api"
)

// moveResult is a MoveResult shaped like the agent's: the source's phases,
// with the destination's restore@ and plug@ after its restore.
func moveResult(dump, xfer, restore, destRestore, plug, downtime time.Duration) api.MoveResult {
	return api.MoveResult{
		ID: "m1", From: "node-a", To: "node-b", Outcome: "moved", OK: true,
		Downtime: downtime, Total: downtime + 40*time.Millisecond, BytesSent: 2_000_000,
		SessionsSeen: 1, SessionsKept: 1,
		Phases: []api.Phase{
			{Name: "connect", Duration: 5 * time.Millisecond},
			{Name: "preflight", Duration: 2 * time.Millisecond},
			{Name: "image", Duration: 0},
			{Name: "prepare", Duration: 10 * time.Millisecond},
			{Name: "dump", Duration: dump},
			{Name: "transfer", Duration: xfer},
			{Name: "switch", Duration: time.Millisecond},
			{Name: "restore", Duration: restore},
			{Name: "restore@node-b", Duration: destRestore},
			{Name: "plug@node-b", Duration: plug},
			{Name: "commit", Duration: 3 * time.Millisecond},
		},
	}
}

func TestBreakdown(t *testing.T) {
	cases := []struct {
		name     string
		phases   []PhaseMs
		downtime float64
		want     []PhaseMs
	}{
		{
			name:     "agent phases",
			phases:   NewMoveSample(1, moveResult(140*time.Millisecond, 20*time.Millisecond, 130*time.Millisecond, 120*time.Millisecond, 2*time.Millisecond, 300*time.Millisecond)).Phases,
			downtime: 300,
			want: []PhaseMs{{"dump", 140}, {"transfer", 20}, {"switch", 1}, {"restore", 118}, {"plug", 2},
				{"restore-rpc", 10}, {"other", 9}},
		},
		{
			name:     "dump starts before the freeze",
			phases:   []PhaseMs{{"dump", 100}, {"transfer", 10}, {"restore", 50}},
			downtime: 155,
			want:     []PhaseMs{{"dump", 95}, {"transfer", 10}, {"restore", 50}, {"other", 0}},
		},
		{
			name:     "a new phase in the window keeps its name",
			phases:   []PhaseMs{{"prepare", 9}, {"dump", 30}, {"lazy-setup", 5}, {"restore", 40}, {"lazy-pages", 500}},
			downtime: 80,
			want:     []PhaseMs{{"dump", 30}, {"lazy-setup", 5}, {"restore", 40}, {"other", 5}},
		},
		{name: "no dump", phases: []PhaseMs{{"transfer", 10}, {"restore", 5}}, downtime: 20},
		{name: "no phases", downtime: 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Breakdown(tc.phases, tc.downtime)
			if !slices.EqualFunc(got, tc.want, func(a, b PhaseMs) bool {
				return a.Name == b.Name && math.Abs(a.Ms-b.Ms) < 1e-9
			}) {
				t.Errorf("Breakdown = %v, want %v", got, tc.want)
			}
			if len(got) > 0 {
				sum := 0.0
				for _, p := range got {
					sum += p.Ms
				}
				if math.Abs(sum-tc.downtime) > 1e-9 {
					t.Errorf("parts add up to %v, want the downtime %v", sum, tc.downtime)
				}
			}
		})
	}
}

func TestNewMoveSample(t *testing.T) {
	r := moveResult(140*time.Millisecond, 20*time.Millisecond, 130*time.Millisecond, 120*time.Millisecond, 2*time.Millisecond, 300*time.Millisecond)
	s := NewMoveSample(3, r)
	if s.Index != 3 || s.DowntimeMs != 300 || s.TotalMs != 340 || s.SessionsKept != "1/1" {
		t.Errorf("sample = %+v", s)
	}
	// 2 MB over the 20 ms of transfer (+ 0 of image) is 100 MB/s.
	if math.Abs(s.ThroughputMBps-100) > 1e-9 {
		t.Errorf("throughput %v MB/s, want 100", s.ThroughputMBps)
	}
	r.Outcome, r.OK = "rolled-back", false
	if s := NewMoveSample(1, r); s.Breakdown != nil {
		t.Errorf("a rolled-back move has a downtime breakdown: %v", s.Breakdown)
	}
}

// sampleConfig is a configuration of moves with the given downtimes and
// probe gaps, all moved unless failed says otherwise.
func sampleConfig(name string, ballast int, down, gaps []float64, failed int) ConfigResult {
	c := ConfigResult{MoveConfig: MoveConfig{Name: name, BallastMiB: ballast}}
	for i, d := range down {
		s := NewMoveSample(i+1, moveResult(time.Duration(d/2*1e6), time.Duration(d/4*1e6), time.Duration(d/4*1e6), 0, 0, time.Duration(d*1e6)))
		s.Probe = &ProbeWindow{LargestGapMs: gaps[i], Sessions: 1}
		c.Moves = append(c.Moves, s)
	}
	for i := 0; i < failed; i++ {
		c.Moves = append(c.Moves, MoveSample{Index: len(c.Moves) + 1, Outcome: "rolled-back",
			Probe: &ProbeWindow{LargestGapMs: 900, Errors: 2, Reconnects: 1, Sessions: 2}})
	}
	c.Summarize()
	return c
}

func TestConfigSummarize(t *testing.T) {
	c := sampleConfig("small", 0, []float64{40, 60, 50, 80}, []float64{70, 90, 80, 120}, 1)
	if c.Moved != 4 || c.Failed != 1 {
		t.Fatalf("moved %d failed %d, want 4 and 1", c.Moved, c.Failed)
	}
	if c.DowntimeMs.P50 != 50 || c.DowntimeMs.P99 != 80 || c.DowntimeMs.N != 4 {
		t.Errorf("downtime %+v, want p50 50 p99 80 over 4 moved", c.DowntimeMs)
	}
	// The failed move's window counts: the HMI saw it.
	if c.ProbeGapMs.N != 5 || c.ProbeGapMs.Max != 900 || c.ProbeErrors != 2 || c.ProbeReconnects != 1 {
		t.Errorf("probe gap %+v errors %d reconnects %d", c.ProbeGapMs, c.ProbeErrors, c.ProbeReconnects)
	}
	total := 0.0
	for _, s := range c.Shares {
		total += s.Share
	}
	if math.Abs(total-1) > 1e-9 {
		t.Errorf("shares %+v add up to %v, want 1", c.Shares, total)
	}
	// Half of each downtime is dump, less the 1 ms switch that the phases
	// add beyond the downtime (taken off dump), over 230 ms in all.
	if want := (115.0 - 4) / 230; c.Shares[0].Name != "dump" || math.Abs(c.Shares[0].Share-want) > 1e-9 {
		t.Errorf("first share %+v, want dump at %.3f", c.Shares[0], want)
	}
}

func TestCheckTargets(t *testing.T) {
	fast := sampleConfig("small", 0, []float64{40, 50, 55}, []float64{60, 70, 240}, 0)
	slow := sampleConfig("small", 0, []float64{300, 350}, []float64{310, 400}, 0)
	big := sampleConfig("1GiB", 1024, []float64{90, 100, 110}, []float64{100, 110, 130}, 0)
	bigSlow := sampleConfig("1GiB", 1024, []float64{9000}, []float64{9100}, 1)
	tr := &TransferResult{QUICOverTCP: 0.8}
	cases := []struct {
		name    string
		r       Report
		wantMet []bool
	}{
		{"all met", Report{Configs: []ConfigResult{fast, big}, Transfer: tr}, []bool{true, true, true, true, true, true, true}},
		{"all missed", Report{Configs: []ConfigResult{slow, bigSlow}, Transfer: &TransferResult{QUICOverTCP: 0.1}},
			[]bool{false, false, false, true, false, false, false}},
		{"nothing measured", Report{}, []bool{false, false, false, false, false, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckTargets(tc.r)
			var met []bool
			for _, c := range got {
				met = append(met, c.Met)
				if c.Measured == "" || c.Target == "" {
					t.Errorf("target %q says nothing: %+v", c.Name, c)
				}
			}
			if !slices.Equal(met, tc.wantMet) {
				t.Errorf("met = %v, want %v\n%+v", met, tc.wantMet, got)
			}
		})
	}
}

// TestJSONShape pins the keys that BENCHMARKS.md and any plotting script
// read, so that renaming a field is a deliberate act.
func TestJSONShape(t *testing.T) {
	r := Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:    Host{Hostname: "vm", CPUs: 2},
		Configs: []ConfigResult{sampleConfig("small", 0, []float64{40, 50}, []float64{60, 70}, 0)},
		Transfer: &TransferResult{Bytes: 1 << 30, Modes: []TransferMode{
			{Mode: ModeTCP, MBps: 1000}, {Mode: ModeTLS, MBps: 500}, {Mode: ModeQUIC, MBps: 300}}},
	}
	r.Transfer.Ratios()
	r.Targets = CheckTargets(r)
	path := filepath.Join(t.TempDir(), "sub", "bench.json")
	if err := WriteJSON(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	wantKeys := func(where string, m any, want ...string) {
		t.Helper()
		obj, ok := m.(map[string]any)
		if !ok {
			t.Fatalf("%s is %T, want an object", where, m)
		}
		var missing []string
		for _, k := range want {
			if _, ok := obj[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Errorf("%s lacks %v; has %v", where, missing, keys)
		}
	}
	wantKeys("report", doc, "started", "finished", "host", "settings", "configs", "transfer", "targets")
	cfg := doc["configs"].([]any)[0]
	wantKeys("config", cfg, "name", "ballast_mib", "dirty_mib_per_s", "moves", "moved", "failed",
		"downtime_ms", "downtime_shares", "probe_largest_gap_ms", "probe_errors", "probe_reconnects",
		"total_ms", "bytes_sent", "throughput_mb_per_s")
	wantKeys("downtime", cfg.(map[string]any)["downtime_ms"], "n", "min", "p50", "p99", "max", "mean")
	move := cfg.(map[string]any)["moves"].([]any)[0]
	wantKeys("move", move, "index", "from", "to", "outcome", "downtime_ms", "total_ms", "phases",
		"downtime_breakdown", "bytes_sent", "throughput_mb_per_s", "probe")
	wantKeys("probe", move.(map[string]any)["probe"], "largest_gap_ms", "errors", "reconnects", "sessions")
	wantKeys("transfer", doc["transfer"], "bytes", "modes", "quic_over_tcp", "tls_over_tcp")
	wantKeys("target", doc["targets"].([]any)[0], "name", "target", "measured", "met")

	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Transfer.QUICOverTCP != 0.3 || back.Transfer.TLSOverTCP != 0.5 {
		t.Errorf("ratios after a round trip: %+v", back.Transfer)
	}
	if back.Configs[0].DowntimeMs != r.Configs[0].DowntimeMs {
		t.Errorf("downtime after a round trip: %+v, want %+v", back.Configs[0].DowntimeMs, r.Configs[0].DowntimeMs)
	}
}
