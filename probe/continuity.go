package probe

import (
	"fmt"
	"time"
)

// continuity checks that the PLC's state survives whatever happens to it:
// the marker stays, and the scan counter only moves forward, never faster
// than the wall clock allows. Moving slower is fine: a frozen PLC (during a
// migration) does not scan.
type continuity struct {
	marker     uint16
	scanPeriod time.Duration

	have     bool
	lastScan uint32
	lastSent time.Time
}

// Slack for the forward-jump check: 50% over the wall clock plus a fixed
// number of cycles, because the two ends of an interval are sampled at
// slightly different points of a request's round trip.
const (
	jumpFactor      = 1.5
	jumpSlackCycles = 20
)

// observe checks one reading. sent and recv bound when the PLC sampled it.
// It returns a description per violation found (none when all is well).
func (c *continuity) observe(sent, recv time.Time, scan uint32, marker uint16) []string {
	var out []string
	if marker != c.marker {
		out = append(out, fmt.Sprintf("marker changed: wrote %#04x, read %#04x (PLC state lost or overwritten)", c.marker, marker))
	}
	if !c.have {
		c.have, c.lastScan, c.lastSent = true, scan, sent
		return out
	}
	// Unsigned difference, so a wrap of the uint32 counter is a small step
	// forward; a "step" of more than half the range is a step backwards.
	delta := scan - c.lastScan
	switch {
	case int32(delta) < 0:
		out = append(out, fmt.Sprintf("scan counter went backwards: %d -> %d (PLC restarted or state rolled back)", c.lastScan, scan))
	default:
		// The newest sample was taken at most recv - lastSent after the previous one.
		elapsed := recv.Sub(c.lastSent)
		allowed := float64(elapsed)/float64(c.scanPeriod)*jumpFactor + jumpSlackCycles
		if float64(delta) > allowed {
			out = append(out, fmt.Sprintf("scan counter jumped forward: %d -> %d (+%d) in %v, at most %.0f expected",
				c.lastScan, scan, delta, elapsed.Round(time.Millisecond), allowed))
		}
	}
	c.lastScan, c.lastSent = scan, sent
	return out
}
