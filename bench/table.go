package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable renders a report for a person: the moves, where the downtime
// went, the transfer micro-benchmark and the targets. It shows the same
// figures as the JSON.
func WriteTable(w io.Writer, r Report) error {
	h := r.Host
	fmt.Fprintf(w, "capsec bench, %s, %s: %d CPUs, %.1f GiB, kernel %s, %s, CRIU %s\n",
		r.Started.Format("2006-01-02 15:04 MST"), h.Hostname, h.CPUs, float64(h.MemMiB)/1024, h.Kernel, h.Go, orDash(h.CRIU))
	fmt.Fprintf(w, "%d moves per configuration, HMI polling every %.0f ms (one probe per move: from %.0f ms before it to %.0f ms + the freeze after it)\n\n",
		r.Settings.Moves, r.Settings.ProbeIntervalMs, r.Settings.ProbeBeforeMs, r.Settings.ProbeAfterMs)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "configuration\tmoved\tdowntime p50\tp99\tHMI gap p50\tp99\terrors\treconnects\tmove total p50\tsent/move\tthroughput p50\t")
	for _, c := range r.Configs {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n",
			c.Name, c.Moved, c.Moved+c.Failed,
			msCell(c.DowntimeMs.P50, c.DowntimeMs.N), msCell(c.DowntimeMs.P99, c.DowntimeMs.N),
			msCell(c.ProbeGapMs.P50, c.ProbeGapMs.N), msCell(c.ProbeGapMs.P99, c.ProbeGapMs.N),
			c.ProbeErrors, c.ProbeReconnects,
			msCell(c.TotalMs.P50, c.TotalMs.N), mibCell(c.BytesSent.Mean, c.BytesSent.N),
			mbpsCell(c.ThroughputMBps.P50, c.ThroughputMBps.N))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Configs {
		if c.Error != "" {
			fmt.Fprintf(w, "  %s stopped: %s\n", c.Name, c.Error)
		}
	}

	fmt.Fprintln(w, "\nwhere the downtime went (p50 of each part, and its share of all downtime)")
	for _, c := range r.Configs {
		parts := make([]string, 0, len(c.Shares))
		for _, s := range c.Shares {
			parts = append(parts, fmt.Sprintf("%s %.0f ms (%.0f%%)", s.Name, s.P50Ms, 100*s.Share))
		}
		if len(parts) == 0 {
			parts = append(parts, "-")
		}
		fmt.Fprintf(w, "  %-12s %s\n", c.Name, strings.Join(parts, ", "))
	}

	if t := r.Transfer; t != nil {
		fmt.Fprintf(w, "\ntransfer micro-benchmark: %.0f MiB, %s → %s, one connection, memory to memory\n",
			float64(t.Bytes)/(1<<20), t.From, t.To)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tMB/s\tseconds\thandshake\tvs tcp\tCPU s sender\treceiver\t")
		tcp := 0.0
		for _, m := range t.Modes {
			if m.Mode == ModeTCP && m.Error == "" {
				tcp = m.MBps
			}
		}
		for _, m := range t.Modes {
			if m.Error != "" {
				fmt.Fprintf(tw, "%s\tfailed\t-\t-\t-\t-\t-\t\n", m.Mode)
				continue
			}
			ratio := "-"
			if tcp > 0 {
				ratio = fmt.Sprintf("%.2f", m.MBps/tcp)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.1f ms\t%s\t%.2f\t%.2f\t\n", m.Mode, m.MBps, m.Seconds, m.HandshakeMs, ratio, m.SenderCPU, m.ReceiverCPU)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, m := range t.Modes {
			if m.Error != "" {
				fmt.Fprintf(w, "  %s failed: %s\n", m.Mode, m.Error)
			}
		}
	}

	fmt.Fprintln(w, "\ntargets (issue 5)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", t.Name, t.Target, t.Measured, metWord(t))
	}
	return tw.Flush()
}

func metWord(t TargetCheck) string {
	switch {
	case t.Met:
		return "met"
	case t.Measured == "not measured":
		return "-"
	default:
		return "MISSED"
	}
}

func msCell(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", v)
}

func mibCell(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", v/(1<<20))
}

func mbpsCell(v float64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MB/s", v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
