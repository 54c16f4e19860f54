// Command capsec-bench measures capsec's live moves in the netns lab and a
// transfer micro-benchmark, prints a table and writes the same figures as
// JSON. See `capsec-bench --help`; `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/capsec/capsec/bench"
	"github.com/capsec/capsec/lab"
)

const usage = `capsec-bench: measure live moves in the netns lab (root only)

Usage:
  capsec-bench [flags]             for each configuration: a fresh lab, plcsim on node-a, N moves
                                   node-a <-> node-b, one HMI probe (10 ms) per move; then 1 GiB
                                   node-a -> node-b over TCP, TLS and the agents' QUIC stream
  capsec-bench transfer-server     one side of the transfer micro-benchmark (run by capsec-bench)
  capsec-bench transfer-client     the other side

It holds an exclusive flock on /run/capsec-lab.lock for its whole run, so it
never shares the lab with a test; under 'flock /run/capsec-lab.lock' it uses
the lock it inherits. Targets are reported, never enforced: the exit status
is 1 only if a move failed or a measurement could not be made.

EXAMPLES
  $ capsec-bench --out _output/bench.json
  $ capsec-bench --configs small --moves 3 --transfer=false
  $ capsec-bench --configs small,2048:128 --transfer-mib 256

Flags:
`

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "transfer-server":
		err = transferPeer(ctx, os.Args[2:], true, log)
	case len(os.Args) > 1 && os.Args[1] == "transfer-client":
		err = transferPeer(ctx, os.Args[2:], false, log)
	default:
		err = runBench(ctx, os.Args[1:], log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capsec-bench:", err)
		os.Exit(1)
	}
}

func runBench(ctx context.Context, args []string, log *slog.Logger) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	binDir := filepath.Dir(exe)
	fs := flag.NewFlagSet("capsec-bench", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	o := bench.Options{Exe: exe}
	o.Lab = lab.Config{Nodes: 2, Log: log}
	o.Out = os.Stdout
	fs.StringVar(&o.Lab.BinDir, "bin", binDir, "`dir` holding capsec-agent and mbprobe")
	fs.StringVar(&o.Lab.Images, "images", filepath.Join(binDir, "..", "images"), "`dir` of image bundles (plcsim)")
	out := fs.String("out", "_output/bench.json", "write the figures as JSON to `file`")
	plot := fs.String("plot", "_output/bench.png", "write a PNG of downtime against memory to `file` (empty: none)")
	configs := fs.String("configs", "small,256MiB,1GiB+dirty", "configurations: small, 256MiB, 1GiB+dirty or BALLAST_MiB[:DIRTY_MiB/s]")
	fs.IntVar(&o.Moves, "moves", 10, "moves per configuration")
	fs.DurationVar(&o.Interval, "interval", 10*time.Millisecond, "HMI poll interval")
	fs.DurationVar(&o.Before, "before", time.Second, "probe time before each move")
	fs.DurationVar(&o.After, "after", 500*time.Millisecond, "probe time after each move")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "wait after starting the PLC")
	fs.DurationVar(&o.MoveTimeout, "move-timeout", 2*time.Minute, "bound on each move")
	fs.StringVar(&o.PLCIP, "plc-ip", "10.77.0.50", "the PLC's address")
	fs.BoolVar(&o.Transfer, "transfer", true, "run the transfer micro-benchmark")
	transferMiB := fs.Int64("transfer-mib", 1024, "MiB per transfer mode")
	fs.DurationVar(&o.TransferTimeout, "transfer-timeout", 3*time.Minute, "bound on each transfer mode")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole run")
	lockWait := fs.Duration("lock-wait", 30*time.Minute, "how long to wait for another lab user")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the lab needs root: run 'sudo make bench'")
	}
	if o.Configs, err = bench.ParseConfigs(*configs); err != nil {
		return err
	}
	o.TransferBytes = *transferMiB << 20

	lctx, cancel := context.WithTimeout(ctx, *lockWait)
	lock, err := bench.AcquireLock(lctx, bench.LabLock, func() {
		fmt.Fprintf(os.Stderr, "waiting for %s: another lab user (a test, a demo) holds it\n", bench.LabLock)
	})
	cancel()
	if err != nil {
		return err
	}
	defer lock.Release()

	ctx, cancel = context.WithTimeout(ctx, *timeout)
	defer cancel()
	r := bench.Run(ctx, o)
	fmt.Println()
	if err := bench.WriteTable(os.Stdout, r); err != nil {
		return err
	}
	if err := bench.WriteJSON(*out, r); err != nil {
		return err
	}
	fmt.Printf("\nfigures written to %s\n", *out)
	if *plot != "" {
		if err := bench.WritePlot(*plot, r); err != nil {
			return err
		}
		fmt.Printf("plot written to %s\n", *plot)
	}
	return runErrors(ctx, r)
}

// runErrors says why a run's figures are incomplete; missed targets are
// not errors.
func runErrors(ctx context.Context, r bench.Report) error {
	var p []string
	if ctx.Err() != nil {
		p = append(p, "stopped early: "+context.Cause(ctx).Error())
	}
	for _, c := range r.Configs {
		if c.Failed > 0 || c.Error != "" {
			p = append(p, fmt.Sprintf("%s: %d of %d moves failed %s", c.Name, c.Failed, c.Moved+c.Failed, c.Error))
		}
	}
	if r.Transfer != nil {
		for _, m := range r.Transfer.Modes {
			if m.Error != "" {
				p = append(p, "transfer "+m.Mode+": "+m.Error)
			}
		}
	}
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("incomplete: %s", strings.Join(p, "; "))
}

func transferPeer(ctx context.Context, args []string, server bool, log *slog.Logger) error {
	name := "transfer-client"
	if server {
		name = "transfer-server"
	}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	var a bench.PeerArgs
	fs.StringVar(&a.Mode, "mode", bench.ModeQUIC, "tcp, tls or quic")
	fs.StringVar(&a.Certs, "certs", "", "`dir` with ca.pem and NODE.pem/.key")
	fs.StringVar(&a.Node, "node", "", "this side's node name")
	fs.StringVar(&a.Peer, "peer", "", "the other side's node name")
	listen := fs.String("listen", "", "server: address to listen on (port 0: any)")
	connect := fs.String("connect", "", "client: the server's address")
	n := fs.Int64("bytes", 1<<30, "client: bytes to send")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if server {
		return bench.ServeTransferCmd(ctx, a, *listen, os.Stdout, log)
	}
	return bench.SendTransferCmd(ctx, a, *connect, *n, os.Stdout)
}
