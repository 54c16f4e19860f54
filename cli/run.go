package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/capsec/capsec/api"
)

type runOpts struct {
	image, ip, mac, gw string
}

func runCmd() *command {
	return &command{
		name:  "run",
		args:  "NAME",
		short: "start a stateful container on the agent's node",
		long: `The container gets its own network namespace on the plant network with the
given IP and a MAC derived from it (or --mac). The image must be in the
agent's store ('migrate status' lists them).`,
		examples: []string{
			"migrate run plc1 --image plcsim --ip 10.77.0.50/24 --node node-a",
			"migrate run plc2 --image plcsim --ip 10.77.0.51/24 --mac 02:ca:00:00:00:51 --gateway 10.77.0.1",
		},
		flags: func(fs *flag.FlagSet) any {
			o := &runOpts{}
			fs.StringVar(&o.image, "image", "", "image `name` (required), e.g. plcsim")
			fs.StringVar(&o.ip, "ip", "", "container address in CIDR form (required), e.g. 10.77.0.50/24")
			fs.StringVar(&o.mac, "mac", "", "container MAC (default: derived from the IP)")
			fs.StringVar(&o.gw, "gateway", "", "default gateway (optional)")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			o := opts.(*runOpts)
			if o.image == "" || o.ip == "" {
				return fmt.Errorf("--image and --ip are required, e.g. --image plcsim --ip 10.77.0.50/24: %w", api.ErrInvalid)
			}
			c, err := e.c.Run(ctx, api.RunRequest{Name: pos[0], Image: o.image, IP: o.ip, MAC: o.mac, Gateway: o.gw})
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s running on %s (pid %d, %s, %s)\n", c.Name, c.Node, c.Pid, c.IP, c.MAC)
			return nil
		},
	}
}
