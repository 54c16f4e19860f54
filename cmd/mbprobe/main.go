// Command mbprobe is the lab's HMI: it polls a plcsim PLC over one Modbus TCP
// session and reports whether the session and the PLC's state survived.
//
// Usage:
//
//	mbprobe --target host:port [--interval 10ms] [--duration 10s] [--timeout 5s]
//	        [--marker N] [--unit N] [--strict] [--json FILE|-]
//
// --duration 0 runs until SIGINT/SIGTERM; a signal ends any run early and
// the report so far is printed. The table goes to stdout, or to stderr when
// --json - puts the JSON report on stdout. Exit status: 0 ok, 1 never
// connected or (--strict) any error, reconnect or violation, 2 bad usage.
//
// EXAMPLES
//
//	$ mbprobe --target 10.77.0.50:502 --duration 10s
//	$ mbprobe --target 10.77.0.50:502 --duration 0 --strict --json report.json
//	$ mbprobe --target 127.0.0.1:5020 --duration 2s --json - | jq .largest_gap_ms
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/capsec/capsec/probe"
)

func main() {
	// Our output may be a pipe whose reader goes away; report the write
	// error instead of dying of SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("mbprobe", flag.ContinueOnError)
	var cfg probe.Config
	var marker, unit uint
	var strict bool
	var jsonOut string
	fs.StringVar(&cfg.Target, "target", "", "PLC address host:port (required)")
	fs.DurationVar(&cfg.Interval, "interval", probe.DefaultInterval, "time between polls")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run (0 = until signalled)")
	fs.DurationVar(&cfg.Timeout, "timeout", probe.DefaultTimeout, "per-request timeout; keep it above the longest freeze expected")
	fs.UintVar(&marker, "marker", 0, "marker written to holding register 10 (0 = random non-zero)")
	fs.UintVar(&unit, "unit", 0, "Modbus unit id")
	fs.BoolVar(&strict, "strict", false, "exit 1 on any error, reconnect or state violation")
	fs.StringVar(&jsonOut, "json", "", "also write the report as JSON to FILE (- = stdout)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	switch {
	case cfg.Target == "":
		fmt.Fprintln(os.Stderr, "mbprobe: --target is required")
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "mbprobe: unexpected arguments %q\n", fs.Args())
		return 2
	case marker > 0xffff || unit > 0xff:
		fmt.Fprintln(os.Stderr, "mbprobe: --marker must fit in 16 bits and --unit in 8 bits")
		return 2
	}
	cfg.Marker, cfg.UnitID = uint16(marker), byte(unit)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, runErr := probe.Run(ctx, cfg)
	if runErr != nil && !errors.Is(runErr, probe.ErrNeverConnected) {
		fmt.Fprintln(os.Stderr, "mbprobe:", runErr)
		return 2
	}

	var table io.Writer = os.Stdout
	if jsonOut == "-" {
		table = os.Stderr
	}
	rep.WriteTable(table)
	if jsonOut != "" {
		if err := writeJSON(jsonOut, rep); err != nil {
			fmt.Fprintln(os.Stderr, "mbprobe:", err)
			return 1
		}
	}
	switch {
	case runErr != nil:
		fmt.Fprintln(os.Stderr, "mbprobe:", runErr)
		return 1
	case strict:
		if err := rep.Check(); err != nil {
			fmt.Fprintln(os.Stderr, "mbprobe: strict:", err)
			return 1
		}
	}
	return 0
}

func writeJSON(path string, rep probe.Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}
