package bench

import (
	"bytes"
	"image"
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	r := Report{
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:     Host{Hostname: "vm", CPUs: 2, MemMiB: 24 << 10, Kernel: "6.18", Go: "go1.26", CRIU: "4.2"},
		Settings: Settings{Moves: 3, ProbeIntervalMs: 10, ProbeBeforeMs: 1000, ProbeAfterMs: 500},
		Configs: []ConfigResult{
			sampleConfig("small", 0, []float64{300, 350, 400}, []float64{280, 320, 390}, 0),
			sampleConfig("1GiB+dirty", 1024, []float64{14000}, []float64{14100}, 1),
			{MoveConfig: MoveConfig{Name: "broken", BallastMiB: 256}, Error: "lab up: no CRIU"},
		},
		Transfer: &TransferResult{From: "capsec-node-a", To: "capsec-node-b 10.77.0.12", Bytes: 1 << 30, Modes: []TransferMode{
			{Mode: ModeTCP, MBps: 1500, Seconds: 0.7}, {Mode: ModeTLS, MBps: 675, Seconds: 1.6},
			{Mode: ModeQUIC, Error: "handshake refused"}}},
	}
	r.Transfer.Ratios()
	r.Targets = CheckTargets(r)
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"vm: 2 CPUs, 24.0 GiB, kernel 6.18, go1.26, CRIU 4.2",
		"3 moves per configuration, HMI polling every 10 ms",
		"downtime p50", "HMI gap p50",
		"broken stopped: lab up: no CRIU",
		"small dump ",
		"tls 675 1.60 0.0 ms 0.45",
		"quic failed: handshake refused",
		"small PLC: agent downtime p50",
		"MISSED", "met",
	} {
		if !strings.Contains(squeeze(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Each configuration has one row of the moves table, with its p50.
	for _, row := range []struct{ name, cells string }{
		{"small", "3/3  350 ms  400 ms  320 ms  390 ms  0  0"},
		{"1GiB+dirty", "1/2  14000 ms  14000 ms  900 ms  14100 ms  2  1"},
		{"broken", "0/0  -  -  -  -  0  0"},
	} {
		line := lineWith(out, " "+row.name+"  ")
		if !strings.Contains(squeeze(line), squeeze(row.cells)) {
			t.Errorf("row %q = %q, want cells %q", row.name, line, row.cells)
		}
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// squeeze collapses runs of spaces, so that column widths do not matter.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestRenderPlot(t *testing.T) {
	r := Report{Configs: []ConfigResult{
		sampleConfig("small", 0, []float64{300}, []float64{280}, 0),
		sampleConfig("1GiB", 1024, []float64{14000}, []float64{14100}, 0),
		{MoveConfig: MoveConfig{Name: "nothing", BallastMiB: 256}},
	}}
	img := RenderPlot(r)
	if img.Bounds() != image.Rect(0, 0, plotW, plotH) {
		t.Fatalf("plot is %v", img.Bounds())
	}
	// The 1 GiB points sit at the right edge of the plot area, near the top.
	found := false
	for y := marginT; y < plotH/2 && !found; y++ {
		c := img.RGBAAt(plotW-marginR, y)
		for _, s := range plotSeries {
			found = found || c == s.col
		}
	}
	if !found {
		t.Errorf("no marker at the right edge for the 1 GiB configuration")
	}
}

func TestNiceStep(t *testing.T) {
	cases := []struct{ raw, want float64 }{{0, 1}, {0.3, 0.5}, {7, 10}, {12, 20}, {60, 100}, {3000, 5000}}
	for _, tc := range cases {
		if got := niceStep(tc.raw); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}
