package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/probe"
)

// Report is everything one capsec-bench run measured. It is written as JSON
// (--out) and rendered by WriteTable; both carry the same figures.
type Report struct {
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Host     Host            `json:"host"`
	Settings Settings        `json:"settings"`
	Configs  []ConfigResult  `json:"configs"`
	Transfer *TransferResult `json:"transfer,omitempty"`
	Targets  []TargetCheck   `json:"targets"`
}

// Host says where the figures were measured.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	MemMiB   int64  `json:"mem_mib"`
	Go       string `json:"go"`
	CRIU     string `json:"criu,omitempty"`
}

// Settings are the knobs the run used.
type Settings struct {
	Moves           int     `json:"moves"`
	ProbeIntervalMs float64 `json:"probe_interval_ms"`
	ProbeBeforeMs   float64 `json:"probe_before_ms"`
	ProbeAfterMs    float64 `json:"probe_after_ms"`
	TransferBytes   int64   `json:"transfer_bytes"`
}

// MoveConfig is one workload to move back and forth.
type MoveConfig struct {
	Name       string `json:"name"`
	BallastMiB int    `json:"ballast_mib"`
	DirtyMiBps int    `json:"dirty_mib_per_s"`
}

// PLCArgs are the plcsim arguments that make the configuration's workload.
func (c MoveConfig) PLCArgs() []string {
	var args []string
	if c.BallastMiB > 0 {
		args = append(args, "--ballast", fmt.Sprint(c.BallastMiB))
	}
	if c.DirtyMiBps > 0 {
		args = append(args, "--dirty-rate", fmt.Sprint(c.DirtyMiBps))
	}
	return args
}

// DefaultConfigs are the workloads: a small PLC, 256 MiB, and 1 GiB
// whose ballast is rewritten at 64 MiB/s.
func DefaultConfigs() []MoveConfig {
	return []MoveConfig{
		{Name: "small", BallastMiB: 0},
		{Name: "256MiB", BallastMiB: 256},
		{Name: "1GiB+dirty", BallastMiB: 1024, DirtyMiBps: 64},
	}
}

// PhaseMs is one timed phase in milliseconds.
type PhaseMs struct {
	Name string  `json:"name"`
	Ms   float64 `json:"ms"`
}

// ProbeWindow is what the HMI saw during one move's probe window: its own
// mbprobe, started before the move and stopped after it.
type ProbeWindow struct {
	LargestGapMs float64  `json:"largest_gap_ms"`
	Requests     int      `json:"requests"`
	Successes    int      `json:"successes"`
	Errors       int      `json:"errors"`
	Reconnects   int      `json:"reconnects"`
	Sessions     int      `json:"sessions"`
	Violations   int      `json:"violations"`
	FirstErrors  []string `json:"first_errors,omitempty"`
}

// NewProbeWindow keeps the figures of a probe report that the benchmark uses.
func NewProbeWindow(r probe.Report) ProbeWindow {
	return ProbeWindow{
		LargestGapMs: r.LargestGapMs, Requests: r.Requests, Successes: r.Successes,
		Errors: r.Errors, Reconnects: r.Reconnects, Sessions: len(r.LocalPorts),
		Violations: r.Violations, FirstErrors: r.FirstErrors,
	}
}

// MoveSample is one move: the agent's result and the HMI's view of it.
type MoveSample struct {
	Index          int          `json:"index"`
	From           string       `json:"from"`
	To             string       `json:"to"`
	Outcome        string       `json:"outcome"`
	Error          string       `json:"error,omitempty"`
	DowntimeMs     float64      `json:"downtime_ms"`
	TotalMs        float64      `json:"total_ms"`
	Phases         []PhaseMs    `json:"phases"`
	Breakdown      []PhaseMs    `json:"downtime_breakdown,omitempty"`
	BytesSent      int64        `json:"bytes_sent"`
	ThroughputMBps float64      `json:"throughput_mb_per_s"`
	SessionsKept   string       `json:"sessions_kept"`
	Probe          *ProbeWindow `json:"probe,omitempty"`
}

// NewMoveSample turns an agent's MoveResult into a sample.
func NewMoveSample(index int, r api.MoveResult) MoveSample {
	s := MoveSample{
		Index: index, From: r.From, To: r.To, Outcome: r.Outcome, Error: r.Error,
		DowntimeMs: ms(r.Downtime), TotalMs: ms(r.Total), BytesSent: r.BytesSent,
		SessionsKept: fmt.Sprintf("%d/%d", r.SessionsKept, r.SessionsSeen),
	}
	var wire time.Duration
	for _, p := range r.Phases {
		s.Phases = append(s.Phases, PhaseMs{Name: p.Name, Ms: ms(p.Duration)})
		if p.Name == "transfer" || p.Name == "image" {
			wire += p.Duration
		}
	}
	if wire <= 0 {
		wire = r.Total
	}
	if wire > 0 {
		s.ThroughputMBps = float64(r.BytesSent) / 1e6 / wire.Seconds()
	}
	if r.Outcome == "moved" {
		s.Breakdown = Breakdown(s.Phases, s.DowntimeMs)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Breakdown splits a move's downtime into parts that add up to it. The
// freeze covers the source's phases from "dump" to "restore"; the source's
// "restore" phase holds the destination's own figures (restore@NODE, which
// holds plug@NODE), so it is split into "restore" (CRIU on the destination,
// without the plug), "plug", and "restore-rpc" (the rest: messages and
// waiting). "other" is what the phases do not cover. Phases the agent adds
// later between dump and restore appear under their own names. It returns
// nil if the phases hold no dump…restore window.
//
// The phases come from the agent's MoveResult; if its phases are renamed,
// the breakdown falls back to nil and the table says so, rather than guess.
func Breakdown(phases []PhaseMs, downtimeMs float64) []PhaseMs {
	first, last := -1, -1
	var destRestore, plug float64
	for i, p := range phases {
		switch {
		case strings.HasPrefix(p.Name, "restore@"):
			destRestore += p.Ms
		case strings.HasPrefix(p.Name, "plug@"):
			plug += p.Ms
		case p.Name == "dump" && first < 0:
			first = i
		case p.Name == "restore" && first >= 0:
			last = i
		}
	}
	if first < 0 || last < 0 {
		return nil
	}
	var out []PhaseMs
	covered := 0.0
	add := func(name string, v float64) {
		out = append(out, PhaseMs{Name: name, Ms: v})
		covered += v
	}
	for _, p := range phases[first:last] {
		if !strings.Contains(p.Name, "@") {
			add(p.Name, p.Ms)
		}
	}
	if restore := phases[last].Ms; destRestore > 0 {
		add("restore", destRestore-plug)
		add("plug", plug)
		add("restore-rpc", restore-destRestore)
	} else {
		add("restore", restore)
	}
	// The dump phase starts a moment before the freeze (it first counts
	// the container's sessions), so parts that exceed the downtime have
	// their excess taken off dump rather than shown as a negative "other".
	rest := downtimeMs - covered
	if rest < 0 && out[0].Name == "dump" {
		take := min(-rest, out[0].Ms)
		out[0].Ms -= take
		rest += take
	}
	return append(out, PhaseMs{Name: "other", Ms: rest})
}

// PhaseShare is one part of the downtime across a configuration's moves.
type PhaseShare struct {
	Name  string  `json:"name"`
	P50Ms float64 `json:"p50_ms"`
	// Share is the part's total over the downtimes' total, 0..1.
	Share float64 `json:"share"`
}

// ConfigResult is one configuration's moves and their summary.
type ConfigResult struct {
	MoveConfig
	CRIU   string       `json:"criu,omitempty"` // as the source agent reported it
	Moves  []MoveSample `json:"moves"`
	Moved  int          `json:"moved"`
	Failed int          `json:"failed"`
	// Error says what stopped the configuration before all its moves.
	Error string `json:"error,omitempty"`

	DowntimeMs      Dist         `json:"downtime_ms"`
	Shares          []PhaseShare `json:"downtime_shares"`
	ProbeGapMs      Dist         `json:"probe_largest_gap_ms"`
	ProbeErrors     int          `json:"probe_errors"`
	ProbeReconnects int          `json:"probe_reconnects"`
	ProbeViolations int          `json:"probe_violations"`
	TotalMs         Dist         `json:"total_ms"`
	BytesSent       Dist         `json:"bytes_sent"`
	ThroughputMBps  Dist         `json:"throughput_mb_per_s"`
}

// Summarize fills the summary fields from Moves. Downtime, shares, bytes
// and throughput count moved samples only; the probe's figures count every
// window, since a failed move's gap is what the HMI saw.
func (c *ConfigResult) Summarize() {
	var down, total, bytes, tput, gaps []float64
	sums := map[string]float64{}
	parts := map[string][]float64{}
	var order []string
	c.Moved, c.Failed = 0, 0
	c.ProbeErrors, c.ProbeReconnects, c.ProbeViolations = 0, 0, 0
	downSum := 0.0
	for _, m := range c.Moves {
		if p := m.Probe; p != nil {
			gaps = append(gaps, p.LargestGapMs)
			c.ProbeErrors += p.Errors
			c.ProbeReconnects += p.Reconnects
			c.ProbeViolations += p.Violations
		}
		if m.Outcome != "moved" {
			c.Failed++
			continue
		}
		c.Moved++
		down = append(down, m.DowntimeMs)
		total = append(total, m.TotalMs)
		bytes = append(bytes, float64(m.BytesSent))
		tput = append(tput, m.ThroughputMBps)
		downSum += m.DowntimeMs
		for _, b := range m.Breakdown {
			if _, ok := sums[b.Name]; !ok {
				order = append(order, b.Name)
			}
			sums[b.Name] += b.Ms
			parts[b.Name] = append(parts[b.Name], b.Ms)
		}
	}
	c.DowntimeMs, c.TotalMs = Summarize(down), Summarize(total)
	c.BytesSent, c.ThroughputMBps = Summarize(bytes), Summarize(tput)
	c.ProbeGapMs = Summarize(gaps)
	c.Shares = nil
	for _, name := range order {
		s := PhaseShare{Name: name, P50Ms: Percentile(parts[name], 50)}
		if downSum > 0 {
			s.Share = sums[name] / downSum
		}
		c.Shares = append(c.Shares, s)
	}
}

// WriteJSON writes r, indented, to path (its directory is created).
func WriteJSON(path string, r Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}
