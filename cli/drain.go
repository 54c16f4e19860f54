package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/capsec/capsec/api"
)

type drainOpts struct {
	to      string
	timeout time.Duration
}

func drainCmd() *command {
	return &command{
		name:  "drain",
		short: "move every running container off the agent's node, e.g. before patching the host",
		long: `Each running container moves live, one at a time, to --to, or else in turn
to the agent's peers. A container whose move fails stays (or is rolled back)
on this node; drain carries on with the others and exits non-zero at the end.`,
		examples: []string{
			"migrate drain --node node-a",
			"migrate drain --to node-b --node node-a",
		},
		flags: func(fs *flag.FlagSet) any {
			o := &drainOpts{}
			fs.StringVar(&o.to, "to", "", "destination `node` for every container (default: the peers in turn)")
			fs.DurationVar(&o.timeout, "timeout", 0, "bound of each move (default: the agent's --move-timeout)")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			o := opts.(*drainOpts)
			st, err := e.c.Status(ctx)
			if err != nil {
				return err
			}
			targets := []string{o.to}
			if o.to == "" {
				targets = targets[:0]
				for _, p := range st.Peers {
					targets = append(targets, p.Node)
				}
				sort.Strings(targets)
			}
			if len(targets) == 0 {
				return fmt.Errorf("node %s has no peers to drain to (capsec-agent --peer): %w", st.Node, api.ErrFailedPrecondition)
			}
			cs, err := e.c.Containers(ctx)
			if err != nil {
				return err
			}
			var failed []string
			moved := 0
			for _, c := range cs {
				if c.Status != "running" {
					fmt.Fprintf(e.stdout, "skip %s (%s)\n", c.Name, c.Status)
					continue
				}
				to := targets[moved%len(targets)]
				start := time.Now()
				res, err := e.c.Move(ctx, c.Name, api.MoveRequest{To: to, Timeout: o.timeout}, func(ev api.MoveEvent) {
					printProgress(e, start, ev)
				})
				switch {
				case res.ID != "":
					fmt.Fprintln(e.stdout, res.Summary())
				case err != nil:
					fmt.Fprintf(e.stdout, "NOT moved %s → %s: %v\n", c.Name, to, err)
				}
				if err != nil {
					failed = append(failed, c.Name)
					continue
				}
				moved++
			}
			fmt.Fprintf(e.stdout, "drained %s: %d moved, %d failed\n", st.Node, moved, len(failed))
			if len(failed) > 0 {
				return errors.New("not moved: " + fmt.Sprint(failed))
			}
			return nil
		},
	}
}
