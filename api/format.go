package api

import (
	"fmt"
	"strings"
	"time"
)

// Summary is the one line a user reads after a move.
func (r MoveResult) Summary() string {
	var b strings.Builder
	switch r.Outcome {
	case "moved":
		fmt.Fprintf(&b, "moved %s %s → %s: downtime %s", r.Container, r.From, r.To, ms(r.Downtime))
	case "rolled-back":
		fmt.Fprintf(&b, "NOT moved %s %s → %s: rolled back, running on %s again (frozen %s)", r.Container, r.From, r.To, r.From, ms(r.Downtime))
	case "aborted":
		fmt.Fprintf(&b, "NOT moved %s %s → %s: aborted before the freeze, still running on %s", r.Container, r.From, r.To, r.From)
	default:
		fmt.Fprintf(&b, "FAILED move %s %s → %s", r.Container, r.From, r.To)
	}
	var parts []string
	for _, p := range r.Phases {
		switch p.Name {
		case "dump", "transfer", "switch", "restore":
			if p.Name == "restore" {
				continue // the destination's own figure follows as restore@node
			}
			part := p.Name + " " + ms(p.Duration)
			if p.Name == "dump" && r.Frozen > 0 {
				part += " (frozen " + ms(r.Frozen) + ")"
			}
			parts = append(parts, part)
		default:
			if strings.HasPrefix(p.Name, "restore@") {
				parts = append(parts, "restore "+ms(p.Duration))
			}
		}
	}
	if len(parts) > 0 && r.Outcome == "moved" {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", %s sent", bytesString(r.BytesSent))
	if r.Outcome == "moved" {
		verdict := "kept"
		if r.SessionsKept < r.SessionsSeen {
			verdict = "LOST"
		}
		fmt.Fprintf(&b, ", TCP sessions %s %d/%d", verdict, r.SessionsKept, r.SessionsSeen)
	}
	fmt.Fprintf(&b, ", total %s", ms(r.Total))
	if r.Error != "" {
		fmt.Fprintf(&b, "\n  reason: %s", r.Error)
	}
	return b.String()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
