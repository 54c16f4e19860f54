package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/transfer"
)

type caOpts struct {
	dir, out string
	validity time.Duration
	ips      string
}

func caCmd() *command {
	return &command{
		name:  "ca",
		args:  "init | issue NODE ...",
		short: "make the operator CA and the nodes' certificates",
		long: `Agents accept each other only with certificates from the operator's CA.
'ca init' creates the CA (ca.pem, ca.key; the key never leaves this
machine); 'ca issue NODE' writes NODE.pem and NODE.key for one agent.`,
		examples: []string{
			"migrate ca init --dir /etc/capsec/ca",
			"migrate ca issue node-a --dir /etc/capsec/ca --out /etc/capsec --ip 10.77.0.11",
		},
		flags: func(fs *flag.FlagSet) any {
			o := &caOpts{}
			fs.StringVar(&o.dir, "dir", "/etc/capsec/ca", "CA `dir`")
			fs.StringVar(&o.out, "out", ".", "where 'issue' writes NODE.pem and NODE.key")
			fs.DurationVar(&o.validity, "validity", 365*24*time.Hour, "certificate lifetime for 'issue'")
			fs.StringVar(&o.ips, "ip", "", "comma-separated IP SANs for 'issue'")
			return o
		},
		run: func(ctx context.Context, e *env, pos []string, opts any) error {
			o := opts.(*caOpts)
			if len(pos) == 0 {
				return fmt.Errorf("say 'init' or 'issue NODE': %w", api.ErrInvalid)
			}
			switch pos[0] {
			case "init":
				if err := transfer.InitCA(o.dir); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "CA written to %s\n", o.dir)
				return nil
			case "issue":
				if len(pos) != 2 {
					return fmt.Errorf("'ca issue' takes one node name: %w", api.ErrInvalid)
				}
				var ips []net.IP
				for _, s := range strings.Split(o.ips, ",") {
					if s = strings.TrimSpace(s); s == "" {
						continue
					}
					ip := net.ParseIP(s)
					if ip == nil {
						return fmt.Errorf("--ip %q is not an IP address: %w", s, api.ErrInvalid)
					}
					ips = append(ips, ip)
				}
				if err := transfer.IssueNode(o.dir, pos[1], o.out, o.validity, ips); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "certificate for %s written to %s\n", pos[1], o.out)
				return nil
			}
			return fmt.Errorf("unknown ca action %q (init or issue): %w", pos[0], api.ErrInvalid)
		},
	}
}
