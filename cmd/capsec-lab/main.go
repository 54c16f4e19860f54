// Command capsec-lab runs capsec's one-machine netns lab. See `capsec-lab --help`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/capsec/capsec/image"
	"github.com/capsec/capsec/lab"
)

const usage = `capsec-lab: capsec's netns lab on one machine (root only)

Usage:
  capsec-lab up [--nodes N]     bridge capsec-fabric (10.77.0.0/24), netns capsec-hmi (.10),
                                capsec-node-a (.11), capsec-node-b (.12), ... each with an agent
  capsec-lab down               remove everything the lab made, even after a crash
  capsec-lab status             what is up
  capsec-lab demo [--moves N]   up, run the PLC on node-a, poll it from the HMI, move it
                                node-a -> node-b -> node-a ..., print the report, down
  capsec-lab image NAME BINARY [ARGS...]
                                build an image bundle holding one static binary

EXAMPLES
  $ capsec-lab demo
  $ capsec-lab up --nodes 3 && migrate ps --node node-a
  $ capsec-lab image plcsim _output/bin/plcsim --out _output/images/plcsim

Flags:
`

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	exe, _ := os.Executable()
	binDir := filepath.Dir(exe)
	fs := flag.NewFlagSet("capsec-lab", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	cfg := lab.DemoConfig{Out: os.Stdout}
	fs.IntVar(&cfg.Nodes, "nodes", 2, "number of nodes")
	fs.StringVar(&cfg.BinDir, "bin", binDir, "`dir` holding capsec-agent and mbprobe")
	fs.StringVar(&cfg.Images, "images", filepath.Join(binDir, "..", "images"), "`dir` of image bundles imported into every node")
	fs.IntVar(&cfg.Moves, "moves", 3, "demo: number of moves")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "demo: probe time before and between moves")
	fs.DurationVar(&cfg.Interval, "interval", 10*time.Millisecond, "demo: HMI poll interval")
	fs.BoolVar(&cfg.Keep, "keep", false, "demo: leave the lab up")
	fs.StringVar(&cfg.PLCIP, "plc-ip", "10.77.0.50", "demo: the PLC's address")
	fs.IntVar(&cfg.Ballast, "ballast", 0, "demo: plcsim ballast in MiB")
	out := fs.String("out", "", "image: output bundle `dir`")
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	verb := os.Args[1]
	if verb == "-h" || verb == "--help" || verb == "help" {
		fs.SetOutput(os.Stdout)
		fmt.Print(usage)
		fs.PrintDefaults()
		return
	}
	var pos []string
	args := os.Args[2:]
	for {
		fs.Parse(args)
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	cfg.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch verb {
	case "up":
		err = lab.Up(ctx, cfg.Config)
		if err == nil {
			fmt.Printf("lab up: %d nodes; try `migrate run plc1 --image plcsim --ip 10.77.0.50/24 --node node-a`\n", cfg.Nodes)
		}
	case "down":
		err = lab.Down(ctx, log)
		if left := lab.Leftovers(); err == nil && len(left) > 0 {
			err = fmt.Errorf("still there after down: %v", left)
		}
	case "status":
		err = lab.Status(ctx, os.Stdout)
	case "demo":
		err = lab.Demo(ctx, cfg)
	case "image":
		if len(pos) < 2 || *out == "" {
			err = fmt.Errorf("usage: capsec-lab image NAME BINARY [ARGS...] --out DIR")
			break
		}
		var digest string
		digest, err = image.BuildBundle(*out, pos[1], pos[2:], nil)
		if err == nil {
			fmt.Printf("image %s: %s (%s)\n", pos[0], *out, digest)
		}
	default:
		err = fmt.Errorf("unknown command %q (up, down, status, demo, image)", verb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capsec-lab "+verb+":", err)
		os.Exit(1)
	}
}
