package probe

import (
	"log/slog"
	"net"
	"time"
)

// recorder accumulates a run's figures. It is used from the polling
// goroutine only, apart from sessionOpened which the session calls from
// that same goroutine while dialling.
type recorder struct {
	log   *slog.Logger
	start time.Time
	scanP time.Duration
	r     Report
	cont  continuity
	lat   latencies

	lastOK     time.Time // reply time of the latest success
	firstRead  time.Time // reply time of the first holding read
	lastRead   time.Time // reply time of the latest holding read
	down       bool      // an error since the latest success
	downSince  time.Time
	markerSeen bool
	markerBad  bool
}

func newRecorder(cfg Config, marker uint16, start time.Time) *recorder {
	return &recorder{
		log:   cfg.Logger,
		start: start,
		scanP: cfg.ScanPeriod,
		r: Report{
			Target:     cfg.Target,
			StartedAt:  start,
			Marker:     marker,
			LocalPorts: []int{},
		},
		cont: continuity{marker: marker, scanPeriod: cfg.ScanPeriod},
	}
}

func (c *recorder) sessionOpened(local *net.TCPAddr) {
	c.r.LocalPorts = append(c.r.LocalPorts, local.Port)
	c.log.Info("probe session opened", "target", c.r.Target, "local", local.String(),
		"session", len(c.r.LocalPorts))
}

func (c *recorder) success(sent, recv time.Time) {
	c.r.Requests++
	c.r.Successes++
	c.lat.add(recv.Sub(sent))
	if !c.lastOK.IsZero() {
		if gap := recv.Sub(c.lastOK); ms(gap) > c.r.LargestGapMs {
			c.r.LargestGapMs, c.r.LargestGapAt = ms(gap), recv
		}
	}
	c.lastOK = recv
	if c.down {
		c.down = false
		c.log.Info("probe reached the PLC again", "target", c.r.Target,
			"outage", recv.Sub(c.downSince).Round(time.Millisecond))
	}
}

func (c *recorder) failure(at time.Time, err error) {
	c.r.Requests++
	c.r.Errors++
	if len(c.r.FirstErrors) < firstFew {
		c.r.FirstErrors = append(c.r.FirstErrors, at.Format("15:04:05.000")+" "+err.Error())
	}
	// One line per outage, not one per failed poll.
	if !c.down {
		c.down, c.downSince = true, at
		c.log.Warn("probe lost the PLC", "target", c.r.Target, "err", err)
	}
}

func (c *recorder) reconnect() {
	c.r.Reconnects++
	c.log.Warn("probe dropped its session; the next request reconnects",
		"target", c.r.Target, "reconnects", c.r.Reconnects)
}

func (c *recorder) violation(desc string) {
	c.r.Violations++
	if len(c.r.FirstViolations) < firstFew {
		c.r.FirstViolations = append(c.r.FirstViolations, desc)
	}
	c.log.Warn("probe saw a state violation", "target", c.r.Target, "violation", desc)
}

// observe checks a holding-register reading for continuity.
func (c *recorder) observe(sent, recv time.Time, scan uint32, marker uint16) {
	if c.firstRead.IsZero() {
		c.firstRead, c.r.FirstScan = recv, scan
	}
	c.lastRead, c.r.LastScan = recv, scan
	c.markerSeen = true
	if marker != c.r.Marker {
		c.markerBad = true
	}
	for _, v := range c.cont.observe(sent, recv, scan, marker) {
		c.violation(v)
	}
}

func (c *recorder) report(end time.Time) Report {
	r := c.r
	r.DurationMs = ms(end.Sub(c.start))
	r.LatencyP50Ms = ms(c.lat.quantile(0.50))
	r.LatencyP99Ms = ms(c.lat.quantile(0.99))
	r.LatencyMaxMs = ms(c.lat.max)
	r.MarkerIntact = c.markerSeen && !c.markerBad
	if !c.firstRead.IsZero() {
		ran := time.Duration(r.LastScan-r.FirstScan) * c.scanP
		r.ScanDeficitMs = ms(max(c.lastRead.Sub(c.firstRead)-ran, 0))
	}
	// Copy the slices, so that the report does not alias the recorder.
	r.LocalPorts = append([]int{}, r.LocalPorts...)
	r.FirstErrors = append([]string(nil), r.FirstErrors...)
	r.FirstViolations = append([]string(nil), r.FirstViolations...)
	return r
}

// ms converts to fractional milliseconds, rounded to microseconds.
func ms(d time.Duration) float64 {
	return float64(d.Round(time.Microsecond)) / float64(time.Millisecond)
}
