package bench

import "fmt"

// The targets. They are reported, never enforced: a missed target
// is a finding, not a failed run.
const (
	targetSmallDowntimeMs = 60
	targetSmallGapP50Ms   = 100
	targetSmallGapP99Ms   = 250
	targetBigOverSmall    = 2
	targetQUICOverTCP     = 0.70
)

// TargetCheck is one target next to what was measured.
type TargetCheck struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Met      bool    `json:"met"`
}

// CheckTargets compares a report with the targets. The small PLC is
// the first configuration without ballast, the big one the configuration
// with the most ballast of at least 1 GiB. A target whose figures are
// missing is reported as not met, saying so.
func CheckTargets(r Report) []TargetCheck {
	var small, big *ConfigResult
	for i := range r.Configs {
		c := &r.Configs[i]
		if c.BallastMiB == 0 && small == nil {
			small = c
		}
		if c.BallastMiB >= 1024 && (big == nil || c.BallastMiB > big.BallastMiB) {
			big = c
		}
	}
	var out []TargetCheck
	atMost := func(name string, v, limit float64, unit string, have bool) {
		t := TargetCheck{Name: name, Target: fmt.Sprintf("≤ %.0f %s", limit, unit), Value: v, Limit: limit}
		switch {
		case !have:
			t.Measured = "not measured"
		case v <= limit:
			t.Measured, t.Met = fmt.Sprintf("%.0f %s", v, unit), true
		default:
			t.Measured = fmt.Sprintf("%.0f %s (%.1f× the target, +%.0f %s)", v, unit, v/limit, v-limit, unit)
		}
		out = append(out, t)
	}
	zero := func(name string, c *ConfigResult) {
		t := TargetCheck{Name: name, Target: "0"}
		if c == nil || c.Moved+c.Failed == 0 {
			t.Measured = "not measured"
		} else {
			n := c.ProbeErrors + c.ProbeReconnects + c.Failed
			t.Value, t.Met = float64(n), n == 0 && c.Error == ""
			t.Measured = fmt.Sprintf("%d probe errors, %d reconnects, %d failed moves", c.ProbeErrors, c.ProbeReconnects, c.Failed)
			if c.Error != "" {
				t.Measured += "; stopped early"
			}
		}
		out = append(out, t)
	}
	hasSmall := small != nil && small.Moved > 0
	var sDown, sGap50, sGap99 float64
	if hasSmall {
		sDown, sGap50, sGap99 = small.DowntimeMs.P50, small.ProbeGapMs.P50, small.ProbeGapMs.P99
	}
	atMost("small PLC: agent downtime p50", sDown, targetSmallDowntimeMs, "ms", hasSmall)
	atMost("small PLC: probe's largest gap p50", sGap50, targetSmallGapP50Ms, "ms", hasSmall && small.ProbeGapMs.N > 0)
	atMost("small PLC: probe's largest gap p99", sGap99, targetSmallGapP99Ms, "ms", hasSmall && small.ProbeGapMs.N > 0)
	zero("small PLC: errors", small)

	hasBig := big != nil && big.Moved > 0
	var bDown float64
	if hasBig {
		bDown = big.DowntimeMs.P50
	}
	atMost("1 GiB: agent downtime p50 (≤ 2× small's)", bDown, targetBigOverSmall*sDown, "ms", hasBig && hasSmall)
	zero("1 GiB: errors", big)

	t := TargetCheck{Name: "transfer: QUIC / plain TCP", Target: fmt.Sprintf("≥ %.2f", targetQUICOverTCP), Limit: targetQUICOverTCP}
	if r.Transfer == nil || r.Transfer.QUICOverTCP == 0 {
		t.Measured = "not measured"
	} else {
		t.Value = r.Transfer.QUICOverTCP
		t.Met = t.Value >= targetQUICOverTCP
		t.Measured = fmt.Sprintf("%.2f", t.Value)
		if !t.Met {
			t.Measured += fmt.Sprintf(" (%.0f%% below the target)", 100*(1-t.Value/targetQUICOverTCP))
		}
	}
	return append(out, t)
}
