// Since Go 1.24 listeners use MPTCP where the kernel has it, and CRIU cannot
// checkpoint MPTCP sockets ("inet: Unsupported proto 262"). The Modbus
// library calls net.Listen itself, so the binary's default is set here.
//
//go:debug multipathtcp=0

// Command plcsim runs the lab's simulated PLC: a Modbus TCP server whose scan
// counter (holding registers 0-1) grows every 10 ms. See package plcsim for
// the register map.
//
// Usage:
//
//	plcsim [--listen :502] [--ballast MiB] [--dirty-rate MiB/s] [--idle-timeout 2m]
//
// EXAMPLES
//
//	$ plcsim --listen 10.77.0.50:502
//	$ plcsim --ballast 512 --dirty-rate 64
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/capsec/capsec/plcsim"
)

func main() {
	// stdout is a pipe read by an agent that may restart; without this a
	// write after the reader went away kills the PLC with SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("plcsim", flag.ContinueOnError)
	var cfg plcsim.Config
	fs.StringVar(&cfg.Listen, "listen", ":502", "Modbus TCP listen address (host:port)")
	fs.IntVar(&cfg.BallastMiB, "ballast", 0, "extra resident memory in MiB, for migration benchmarks")
	fs.Float64Var(&cfg.DirtyRateMiBps, "dirty-rate", 0, "MiB/s of ballast rewritten continuously (0 = never after start)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", plcsim.DefaultIdleTimeout, "close a client session quiet for this long")
	fs.UintVar(&cfg.MaxClients, "max-clients", plcsim.DefaultMaxClients, "maximum concurrent client sessions")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "plcsim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("plcsim starting", "pid", os.Getpid(), "listen", cfg.Listen,
		"ballast_mib", cfg.BallastMiB, "dirty_mib_per_s", cfg.DirtyRateMiBps)
	if err := plcsim.Run(ctx, cfg); err != nil {
		log.Error("plcsim failed", "err", err)
		return 1
	}
	log.Info("plcsim stopped")
	return 0
}
