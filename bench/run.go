// Package bench measures capsec's live moves in the netns lab: agent
// downtime and its phases, what the HMI saw, bytes and throughput for
// workloads of growing memory, and a transfer micro-benchmark comparing
// the agents' QUIC stream with plain TCP and TLS over TCP on the same path.
// cmd/capsec-bench is its thin main; `make bench` runs it.
package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/capsec/capsec/lab"
)

// Options is one benchmark run.
type Options struct {
	MoveOptions
	Configs         []MoveConfig
	Transfer        bool
	TransferBytes   int64
	TransferTimeout time.Duration // per mode
	Exe             string        // this binary, for the transfer subcommands
}

// Run measures every configuration, each in a fresh lab, then the transfer
// micro-benchmark in one more, and checks the figures against the issue's
// targets. The caller holds the lab lock. It returns the report so far
// when ctx ends.
func Run(ctx context.Context, o Options) Report {
	r := Report{
		Started: time.Now().UTC(),
		Host:    hostInfo(),
		Settings: Settings{
			Moves: o.Moves, ProbeIntervalMs: ms(o.Interval),
			ProbeBeforeMs: ms(o.Before), ProbeAfterMs: ms(o.After),
		},
	}
	if o.Transfer {
		r.Settings.TransferBytes = o.TransferBytes
	}
	for _, c := range o.Configs {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(o.Out, "== %s: plcsim %s, %d moves node-a ⇄ node-b, HMI polling every %s\n",
			c.Name, describe(c), o.Moves, o.Interval)
		t := time.Now()
		res := RunConfig(ctx, c, o.MoveOptions)
		fmt.Fprintf(o.Out, "== %s done in %s\n", c.Name, time.Since(t).Round(time.Second))
		r.Configs = append(r.Configs, res)
		if r.Host.CRIU == "" {
			r.Host.CRIU = res.CRIU
		}
	}
	if o.Transfer && ctx.Err() == nil {
		fmt.Fprintf(o.Out, "== transfer: %s from %s to %s, modes %s\n", mib(o.TransferBytes),
			lab.NodeNetns(lab.NodeName(0)), lab.NodeNetns(lab.NodeName(1)), strings.Join(TransferModes, ", "))
		tr, err := runTransferInLab(ctx, o)
		if err != nil {
			fmt.Fprintf(o.Out, "  transfer: %v\n", err)
		}
		r.Transfer = tr
	}
	r.Targets = CheckTargets(r)
	r.Finished = time.Now().UTC()
	return r
}

func describe(c MoveConfig) string {
	if c.BallastMiB == 0 {
		return "without ballast"
	}
	s := fmt.Sprintf("with %d MiB ballast", c.BallastMiB)
	if c.DirtyMiBps > 0 {
		s += fmt.Sprintf(" dirtied at %d MiB/s", c.DirtyMiBps)
	}
	return s
}

// runTransferInLab brings the lab up for its namespaces and runs the
// micro-benchmark from node-a's to node-b's.
func runTransferInLab(ctx context.Context, o Options) (tr *TransferResult, err error) {
	upCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = lab.Up(upCtx, o.Lab)
	cancel()
	defer func() {
		if derr := lab.Down(context.Background(), o.Lab.Log); derr != nil && err == nil {
			err = fmt.Errorf("lab down: %w", derr)
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	tr, err = RunTransfer(ctx, TransferOptions{
		Exe: o.Exe, Bytes: o.TransferBytes,
		FromNetns: lab.NodeNetns(lab.NodeName(0)), ToNetns: lab.NodeNetns(lab.NodeName(1)),
		FromNode: lab.NodeName(0), ToNode: lab.NodeName(1), ToIP: lab.NodeIP(1),
		Timeout: o.TransferTimeout, Log: o.Lab.Log,
	})
	if tr == nil {
		return nil, err
	}
	for _, m := range tr.Modes {
		if m.Error != "" {
			fmt.Fprintf(o.Out, "  %-5s failed: %s\n", m.Mode, m.Error)
		} else {
			fmt.Fprintf(o.Out, "  %-5s %8.1f MB/s (%.2f s, handshake %.1f ms)\n", m.Mode, m.MBps, m.Seconds, m.HandshakeMs)
		}
	}
	return tr, err
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.MemMiB = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	return h
}
