// Package cli is the migrate command line: one file per command, each with a
// one-line usage, a short help and examples. cmd/migrate only calls Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/api/client"
)

// command is one migrate subcommand.
type command struct {
	name     string
	args     string // positional arguments, for the usage line
	short    string
	long     string
	examples []string
	flags    func(fs *flag.FlagSet) any
	run      func(ctx context.Context, e *env, pos []string, opts any) error
}

// env is what every command gets: its client and where to write.
type env struct {
	c      *client.Client
	stdout io.Writer
	stderr io.Writer
}

func commands() []*command {
	cs := []*command{
		runCmd(), psCmd(), logsCmd(), stopCmd(), rmCmd(), inspectCmd(),
		moveCmd(), drainCmd(), historyCmd(), statusCmd(), caCmd(),
	}
	return cs
}

// Run runs the migrate CLI with args (without the program name) and returns
// the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			args = []string{args[1], "--help"}
		} else {
			mainUsage(stdout)
			return 0
		}
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == args[0] {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "migrate: unknown command %q\n\n", args[0])
		mainUsage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("migrate "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "agent socket `path` (default "+client.DefaultSocket+")")
	node := fs.String("node", "", "talk to the lab agent of `node` (e.g. node-a); same as --socket "+client.LabSocket("NODE"))
	var opts any
	if cmd.flags != nil {
		opts = cmd.flags(fs)
	}
	fs.Usage = func() { cmdUsage(stderr, cmd, fs) }
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		cmdUsage(stdout, cmd, fs)
		return 0
	}
	if err != nil {
		return 2
	}
	want := len(strings.Fields(cmd.args))
	if strings.HasSuffix(cmd.args, "...") {
		want = -1
	}
	if want >= 0 && len(pos) != want {
		fmt.Fprintf(stderr, "migrate %s: want %d argument(s) (%s), got %d\n", cmd.name, want, cmd.args, len(pos))
		fmt.Fprintf(stderr, "usage: migrate %s %s [flags]   (see migrate %s --help)\n", cmd.name, cmd.args, cmd.name)
		return 2
	}
	e := &env{c: &client.Client{Socket: *socket}, stdout: stdout, stderr: stderr}
	if *node != "" {
		if *socket != "" {
			fmt.Fprintln(stderr, "migrate: give --socket or --node, not both")
			return 2
		}
		e.c.Socket = client.LabSocket(*node)
	}
	if err := cmd.run(ctx, e, pos, opts); err != nil {
		fmt.Fprintln(stderr, "migrate "+cmd.name+": "+err.Error())
		if hint := fixHint(err, e.c); hint != "" {
			fmt.Fprintln(stderr, hint)
		}
		return 1
	}
	return 0
}

// parseInterleaved lets flags come before or after positional arguments:
// `migrate move plc1 --to node-b` reads as users type it.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// fixHint tells the user what to do about an error.
func fixHint(err error, c *client.Client) string {
	var un *client.Unreachable
	switch {
	case errors.As(err, &un):
		return "hint: is the agent running? Start the lab with `capsec-lab up` and pass --node node-a, or start capsec-agent and pass its --socket."
	case errors.Is(err, api.ErrPermission):
		return "hint: the agent's socket is root's: run migrate as root (sudo migrate ...)."
	case errors.Is(err, api.ErrNotFound):
		return "hint: `migrate ps` lists this node's containers; `migrate status` lists its peers and images."
	}
	return ""
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `migrate: run stateful containers and move them live between capsec nodes

Usage: migrate COMMAND [ARGS] [--node NODE | --socket PATH] [flags]

Commands:
`)
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, `
EXAMPLES
  $ migrate run plc1 --image plcsim --ip 10.77.0.50/24 --node node-a
  $ migrate move plc1 --to node-b --node node-a
  $ migrate history --node node-a

Run 'migrate COMMAND --help' for a command's flags and examples.
`)
}

func cmdUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: migrate %s %s [flags]\n\n%s\n", c.name, c.args, c.short)
	if c.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.long))
	}
	fmt.Fprintln(w, "\nFLAGS")
	fs.SetOutput(w)
	fs.PrintDefaults()
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nEXAMPLES")
		for _, ex := range c.examples {
			fmt.Fprintln(w, "  $ "+ex)
		}
	}
}
