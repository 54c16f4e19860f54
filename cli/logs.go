package cli

import (
	"context"
	"flag"
	"fmt"
)

type logsOpts struct{ follow bool }

func logsCmd() *command {
	return &command{
		name:     "logs",
		args:     "NAME",
		short:    "print a container's output",
		examples: []string{"migrate logs plc1 --node node-a", "migrate logs plc1 -f"},
		flags: func(fs *flag.FlagSet) any {
			o := &logsOpts{}
			fs.BoolVar(&o.follow, "f", false, "follow: keep printing new output until interrupted")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			return e.c.Logs(ctx, pos[0], opts.(*logsOpts).follow, e.stdout)
		},
	}
}

func stopCmd() *command {
	return &command{
		name:     "stop",
		args:     "NAME",
		short:    "stop a container (SIGTERM, then SIGKILL) and keep its record",
		examples: []string{"migrate stop plc1 --node node-a"},
		run: func(ctx context.Context, e *env, pos []string, _ any) error {
			if err := e.c.Stop(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s stopped\n", pos[0])
			return nil
		},
	}
}

type rmOpts struct{ force bool }

func rmCmd() *command {
	return &command{
		name:     "rm",
		args:     "NAME",
		short:    "remove a stopped container and its network namespace",
		examples: []string{"migrate rm plc1 --node node-a", "migrate rm plc1 --force"},
		flags: func(fs *flag.FlagSet) any {
			o := &rmOpts{}
			fs.BoolVar(&o.force, "force", false, "stop the container first if it runs")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			if err := e.c.Remove(ctx, pos[0], opts.(*rmOpts).force); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s removed\n", pos[0])
			return nil
		},
	}
}
