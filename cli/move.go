package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/capsec/capsec/api"
)

type moveOpts struct {
	to      string
	timeout time.Duration
	json    bool
}

func moveCmd() *command {
	return &command{
		name:  "move",
		args:  "NAME",
		short: "move a running container live to another node",
		long: `The container is checkpointed with its established TCP sessions, its images
cross to the peer over mutual-TLS QUIC and are checked against a SHA-256
manifest, its IP and MAC move with it, and it is restored there. Until the
destination commits, any failure rolls back: the container keeps running,
or is restored, here. The last line reports the downtime (freeze to
running), the bytes sent and whether every TCP session was kept.`,
		examples: []string{
			"migrate move plc1 --to node-b --node node-a",
			"migrate move plc1 --to node-a --node node-b --timeout 30s",
		},
		flags: func(fs *flag.FlagSet) any {
			o := &moveOpts{}
			fs.StringVar(&o.to, "to", "", "destination `node` (required)")
			fs.DurationVar(&o.timeout, "timeout", 0, "give up and roll back after this long (default: the agent's --move-timeout)")
			fs.BoolVar(&o.json, "json", false, "print the result as JSON")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			o := opts.(*moveOpts)
			if o.to == "" {
				return fmt.Errorf("--to is required: the node to move %s to: %w", pos[0], api.ErrInvalid)
			}
			start := time.Now()
			res, err := e.c.Move(ctx, pos[0], api.MoveRequest{To: o.to, Timeout: o.timeout}, func(ev api.MoveEvent) {
				printProgress(e, start, ev)
			})
			if res.ID == "" {
				return err
			}
			if o.json {
				printJSON(e, res)
			} else {
				fmt.Fprintln(e.stdout, res.Summary())
			}
			if err != nil {
				return fmt.Errorf("%s", res.Outcome)
			}
			return nil
		},
	}
}

func printProgress(e *env, start time.Time, ev api.MoveEvent) {
	at := fmt.Sprintf("%7.3fs", time.Since(start).Seconds())
	switch {
	case ev.Total > 0:
		fmt.Fprintf(e.stderr, "%s  %-9s %3.0f%%  %d / %d bytes\n", at, ev.Phase, 100*float64(ev.Bytes)/float64(ev.Total), ev.Bytes, ev.Total)
	case ev.Message != "":
		fmt.Fprintf(e.stderr, "%s  %-9s %s\n", at, ev.Phase, ev.Message)
	default:
		fmt.Fprintf(e.stderr, "%s  %s\n", at, ev.Phase)
	}
}

func historyCmd() *command {
	return &command{
		name:     "history",
		short:    "list the moves this node's agent started, with their figures",
		examples: []string{"migrate history --node node-a", "migrate history --json"},
		flags:    jsonFlag,
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			h, err := e.c.History(ctx)
			if err != nil {
				return err
			}
			if opts.(*jsonOpt).json {
				return printJSON(e, h)
			}
			if len(h) == 0 {
				fmt.Fprintln(e.stdout, "no moves yet")
			}
			for _, m := range h {
				fmt.Fprintf(e.stdout, "%s  %s  %s\n", m.Started.Local().Format("2006-01-02 15:04:05"), m.ID, m.Summary())
			}
			return nil
		},
	}
}
