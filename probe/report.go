package probe

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a probe run saw. Times are in milliseconds.
type Report struct {
	Target     string    `json:"target"`
	StartedAt  time.Time `json:"started_at"`
	DurationMs float64   `json:"duration_ms"`
	Marker     uint16    `json:"marker"`

	Requests    int      `json:"requests"`
	Successes   int      `json:"successes"`
	Errors      int      `json:"errors"`
	FirstErrors []string `json:"first_errors,omitempty"`
	// Reconnects counts sessions dropped after an error; each one makes the
	// next request open a new TCP session.
	Reconnects int `json:"reconnects"`
	// LocalPorts has the local TCP port of every session opened, in order.
	LocalPorts []int `json:"local_ports"`

	// LargestGapMs is the longest time between two consecutive successful
	// replies; LargestGapAt is when the reply ending it arrived.
	LargestGapMs float64   `json:"largest_gap_ms"`
	LargestGapAt time.Time `json:"largest_gap_at,omitzero"`
	LatencyP50Ms float64   `json:"latency_p50_ms"`
	LatencyP99Ms float64   `json:"latency_p99_ms"`
	LatencyMaxMs float64   `json:"latency_max_ms"`

	Violations      int      `json:"violations"`
	FirstViolations []string `json:"first_violations,omitempty"`
	// MarkerIntact is true once the marker has been read back and has
	// never differed from what was written.
	MarkerIntact bool   `json:"marker_intact"`
	FirstScan    uint32 `json:"first_scan"`
	LastScan     uint32 `json:"last_scan"`
	// ScanDeficitMs is the wall time between the first and last reading
	// minus the scan cycles the PLC ran in it: roughly how long the PLC did
	// not scan (frozen during a move, or starved of CPU).
	ScanDeficitMs float64 `json:"scan_deficit_ms"`
}

// ErrNeverConnected means no TCP session to the target was ever opened.
var ErrNeverConnected = errors.New("never connected")

// firstFew is how many error and violation descriptions a report keeps.
const firstFew = 5

// Check returns an error naming every way the run fell short of "one TCP
// session, no errors, state continuous", or nil. It is --strict's verdict.
func (r Report) Check() error {
	var p []string
	switch n := len(r.LocalPorts); {
	case n == 0:
		p = append(p, fmt.Sprintf("%s to %s", ErrNeverConnected, r.Target))
	case n > 1:
		p = append(p, fmt.Sprintf("%d TCP sessions instead of 1", n))
	}
	if r.Successes == 0 && len(r.LocalPorts) > 0 {
		p = append(p, "no successful reply")
	}
	if r.Errors > 0 {
		p = append(p, fmt.Sprintf("%d errors", r.Errors))
	}
	if r.Reconnects > 0 {
		p = append(p, fmt.Sprintf("%d reconnects", r.Reconnects))
	}
	if r.Violations > 0 {
		p = append(p, fmt.Sprintf("%d state violations", r.Violations))
	}
	if len(p) == 0 {
		return nil
	}
	return errors.New("probe: " + strings.Join(p, ", "))
}

// SessionKept reports whether the whole run used one TCP session without an error.
func (r Report) SessionKept() bool {
	return len(r.LocalPorts) == 1 && r.Errors == 0 && r.Reconnects == 0
}

// WriteTable prints the report for a person, ending with verdict lines.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	ms := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + " ms" }
	ports := make([]string, len(r.LocalPorts))
	for i, p := range r.LocalPorts {
		ports[i] = strconv.Itoa(p)
	}
	gap := ms(r.LargestGapMs)
	if !r.LargestGapAt.IsZero() {
		gap += " (ended " + r.LargestGapAt.Format("15:04:05.000") + ")"
	}
	rows := [][2]string{
		{"target", r.Target},
		{"duration", ms(r.DurationMs)},
		{"marker", fmt.Sprintf("%d (%#04x)", r.Marker, r.Marker)},
		{"requests", strconv.Itoa(r.Requests)},
		{"successes", strconv.Itoa(r.Successes)},
		{"errors", strconv.Itoa(r.Errors)},
		{"reconnects", strconv.Itoa(r.Reconnects)},
		{"tcp sessions", fmt.Sprintf("%d (local ports %s)", len(r.LocalPorts), strings.Join(ports, ", "))},
		{"largest gap", gap},
		{"latency", fmt.Sprintf("p50 %s  p99 %s  max %s", ms(r.LatencyP50Ms), ms(r.LatencyP99Ms), ms(r.LatencyMaxMs))},
		{"scan counter", fmt.Sprintf("%d -> %d (+%d)", r.FirstScan, r.LastScan, r.LastScan-r.FirstScan)},
		{"scan deficit", ms(r.ScanDeficitMs)},
		{"violations", strconv.Itoa(r.Violations)},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "  %s\t%s\n", row[0], row[1])
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(tw, "  error\t%s\n", e)
	}
	for _, v := range r.FirstViolations {
		fmt.Fprintf(tw, "  violation\t%s\n", v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	plural := "s"
	if len(r.LocalPorts) == 1 {
		plural = ""
	}
	_, err := fmt.Fprintf(w, "session kept: %s (%d TCP session%s, %d errors, %d reconnects)\nstate continuous: %s (%d violations, marker %s)\n",
		yesNo(r.SessionKept()), len(r.LocalPorts), plural, r.Errors, r.Reconnects,
		yesNo(r.Violations == 0 && r.MarkerIntact), r.Violations, markerState(r))
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func markerState(r Report) string {
	switch {
	case r.MarkerIntact:
		return "intact"
	case r.Successes == 0:
		return "never read"
	default:
		return "changed or never read back"
	}
}
