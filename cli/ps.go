package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"
)

type jsonOpt struct{ json bool }

func jsonFlag(fs *flag.FlagSet) any {
	o := &jsonOpt{}
	fs.BoolVar(&o.json, "json", false, "print JSON")
	return o
}

func printJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func psCmd() *command {
	return &command{
		name:     "ps",
		short:    "list the agent's containers",
		examples: []string{"migrate ps --node node-a", "migrate ps --json"},
		flags:    jsonFlag,
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			cs, err := e.c.Containers(ctx)
			if err != nil {
				return err
			}
			if opts.(*jsonOpt).json {
				return printJSON(e, cs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNODE\tSTATUS\tPID\tIP\tMAC\tIMAGE\tAGE")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", c.Name, c.Node, c.Status, c.Pid, c.IP, c.MAC, c.Image,
					time.Since(c.Created).Round(time.Second))
			}
			return tw.Flush()
		},
	}
}

func inspectCmd() *command {
	return &command{
		name:     "inspect",
		args:     "NAME",
		short:    "show one container as JSON",
		examples: []string{"migrate inspect plc1 --node node-b"},
		run: func(ctx context.Context, e *env, pos []string, _ any) error {
			c, err := e.c.Container(ctx, pos[0])
			if err != nil {
				return err
			}
			return printJSON(e, c)
		},
	}
}

func statusCmd() *command {
	return &command{
		name:     "status",
		short:    "show the agent: node, CRIU, peers, images",
		examples: []string{"migrate status --node node-a"},
		flags:    jsonFlag,
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			n, err := e.c.Status(ctx)
			if err != nil {
				return err
			}
			if opts.(*jsonOpt).json {
				return printJSON(e, n)
			}
			fmt.Fprintf(e.stdout, "node %s  agent %s  CRIU %s  kernel %s\n", n.Node, n.Version, n.CRIU, n.Kernel)
			fmt.Fprintf(e.stdout, "listening for peers on %s, %d container(s), up %s\n", n.Listen, n.Containers, time.Since(n.Started).Round(time.Second))
			for _, p := range n.Peers {
				fmt.Fprintf(e.stdout, "peer  %s at %s\n", p.Node, p.Addr)
			}
			for _, i := range n.Images {
				fmt.Fprintf(e.stdout, "image %s %s (%d bytes)\n", i.Name, i.Digest, i.Size)
			}
			return nil
		},
	}
}
