package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/api/client"
	"github.com/capsec/capsec/lab"
	"github.com/capsec/capsec/probe"
)

// MoveOptions shapes the moves of every configuration.
type MoveOptions struct {
	Lab         lab.Config
	Moves       int           // moves back and forth between node-a and node-b
	Interval    time.Duration // HMI poll interval
	Before      time.Duration // probe time before each move
	After       time.Duration // probe time after each move
	Warmup      time.Duration // after the PLC starts, before the first probe
	MoveTimeout time.Duration // bounds each move (the agent rolls back at its end)
	PLCIP       string
	Out         io.Writer // one progress line per move
}

// RunConfig brings a fresh lab up, runs the configuration's PLC on node-a
// and moves it back and forth. Each move gets its own probe window: an
// mbprobe started Before the move and stopped After it, so that the
// probe's largest gap is that move's gap (mbprobe reports only one largest
// gap per run). The lab is taken down before it returns.
func RunConfig(ctx context.Context, mc MoveConfig, o MoveOptions) (res ConfigResult) {
	res.MoveConfig = mc
	defer res.Summarize()
	fail := func(err error) ConfigResult {
		res.Error = err.Error()
		fmt.Fprintf(o.Out, "  %s: %v\n", mc.Name, err)
		for _, n := range []string{lab.NodeName(0), lab.NodeName(1)} {
			if t := agentLogTail(n, 10); t != "" {
				fmt.Fprintf(o.Out, "  agent log of %s (tail):\n%s\n", n, t)
			}
		}
		return res
	}
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := lab.Up(upCtx, o.Lab)
	cancel()
	defer func() {
		if err := lab.Down(context.Background(), o.Lab.Log); err != nil {
			res.Error = strings.TrimPrefix(res.Error+"; ", "; ") + "lab down: " + err.Error()
		}
	}()
	if err != nil {
		return fail(fmt.Errorf("lab up: %w", err))
	}
	nodes := []string{lab.NodeName(0), lab.NodeName(1)}
	agent := func(n string) *client.Client { return &client.Client{Socket: client.LabSocket(n)} }
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	if st, err := agent(nodes[0]).Status(runCtx); err == nil {
		res.CRIU = st.CRIU
	}
	_, err = agent(nodes[0]).Run(runCtx, api.RunRequest{Name: "plc1", Image: "plcsim", IP: o.PLCIP + "/24", Args: mc.PLCArgs()})
	cancel()
	if err != nil {
		return fail(fmt.Errorf("run plc1 on %s: %w", nodes[0], err))
	}
	sleep(ctx, o.Warmup)
	from := 0
	for i := 1; i <= o.Moves; i++ {
		if ctx.Err() != nil {
			return fail(context.Cause(ctx))
		}
		to := 1 - from
		s, err := moveOnce(ctx, o, i, agent(nodes[from]), nodes[to])
		res.Moves = append(res.Moves, s)
		fmt.Fprintf(o.Out, "  %s move %2d %s → %s: %s\n", mc.Name, i, nodes[from], nodes[to], sampleLine(s))
		if err != nil {
			return fail(fmt.Errorf("move %d: %w", i, err))
		}
		switch s.Outcome {
		case "moved":
			from = to
		case "rolled-back", "aborted":
			// Still running on the source: the next move tries again.
		default:
			return fail(fmt.Errorf("move %d %s: %s; the PLC's whereabouts are unknown, stopping", i, s.Outcome, s.Error))
		}
	}
	return res
}

// moveOnce runs one probe window around one move. An error means the
// configuration cannot go on; a move that ran and failed is a sample.
func moveOnce(ctx context.Context, o MoveOptions, i int, src *client.Client, to string) (MoveSample, error) {
	p, err := lab.StartProbe(o.Lab, o.PLCIP+":502", o.Interval)
	if err != nil {
		return MoveSample{Index: i, To: to, Outcome: "not-run"}, fmt.Errorf("start probe: %w", err)
	}
	sleep(ctx, o.Before)
	r, merr := src.Move(ctx, "plc1", api.MoveRequest{To: to, Timeout: o.MoveTimeout}, nil)
	sleep(ctx, probeTail(o.After, r.Downtime))
	rep, perr := p.Stop()
	if r.ID == "" {
		// The move never produced a result: the agent or its socket failed.
		s := MoveSample{Index: i, To: to, Outcome: "no-result"}
		if merr != nil {
			s.Error = merr.Error()
		}
		return s, errors.Join(merr, perr)
	}
	s := NewMoveSample(i, r)
	if perr != nil {
		return s, fmt.Errorf("probe: %w", perr)
	}
	w := NewProbeWindow(rep)
	s.Probe = &w
	return s, nil
}

// probeTail is how long the probe window runs on after a move that froze
// the PLC for downtime. A gap closes only at mbprobe's next success, and a
// request caught in the freeze is answered only when TCP retransmits it:
// the retransmission timer starts at 200 ms and doubles, so the last
// interval before the resume is at most about the freeze itself. A request
// that is still unanswered when the probe stops is not counted at all, so
// a window that ends too early loses the very gap it is there to measure.
// A freeze near or beyond mbprobe's request timeout makes it fail, drop
// the session and reconnect, retrying each dial for one timeout: then the
// window outlasts one more timeout after the resume.
func probeTail(after, downtime time.Duration) time.Duration {
	tail := after + min(downtime, probe.DefaultTimeout) + 200*time.Millisecond
	if downtime > probe.DefaultTimeout/2 {
		tail += probe.DefaultTimeout + time.Second
	}
	return tail
}

func sampleLine(s MoveSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s downtime %.0f ms, total %.0f ms, %s sent", s.Outcome, s.DowntimeMs, s.TotalMs, mib(s.BytesSent))
	if p := s.Probe; p != nil {
		fmt.Fprintf(&b, "; HMI gap %.0f ms, %d errors, %d reconnects", p.LargestGapMs, p.Errors, p.Reconnects)
	}
	if s.Error != "" {
		fmt.Fprintf(&b, "; %s", s.Error)
	}
	return b.String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// agentLogTail is the end of a node's agent log, for a failed run's report.
func agentLogTail(node string, n int) string {
	b, err := os.ReadFile(filepath.Join(lab.NodeDir(node), "agent.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
