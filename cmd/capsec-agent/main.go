// Command capsec-agent is capsec's per-node daemon. See `capsec-agent --help`.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device rules for libcontainer's cgroup managers
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs before main in the container init re-exec
	"github.com/sirupsen/logrus"

	"github.com/capsec/capsec/agent"
	"github.com/capsec/capsec/api/client"
)

func init() {
	// libcontainer re-executes this binary as "capsec-agent init" to become
	// the container's first process.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

const usage = `capsec-agent: run and live-migrate stateful containers on this node

Usage: capsec-agent --node NAME [flags]

The agent keeps this node's containers, serves the local API that the
migrate CLI uses (a UNIX socket, root only), and accepts live moves from
the peers it is told about, over QUIC with mutual TLS.

EXAMPLES
  $ capsec-agent --node node-a --listen 10.77.0.11:7443 \
      --cert /etc/capsec/node-a.pem --key /etc/capsec/node-a.key --ca /etc/capsec/ca.pem \
      --peer node-b=10.77.0.12:7443 --bridge capsec-br
  $ capsec-agent --node node-a --import plcsim=_output/images/plcsim ...

Flags:
`

type peerFlag map[string]string

func (p peerFlag) String() string { return fmt.Sprint(map[string]string(p)) }
func (p peerFlag) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" || addr == "" {
		return fmt.Errorf("want NODE=HOST:PORT, got %q", v)
	}
	p[name] = addr
	return nil
}

type importFlag [][2]string

func (f *importFlag) String() string { return fmt.Sprint(*f) }
func (f *importFlag) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok || name == "" || dir == "" {
		return fmt.Errorf("want NAME=BUNDLE_DIR, got %q", v)
	}
	*f = append(*f, [2]string{name, dir})
	return nil
}

func main() {
	fs := flag.NewFlagSet("capsec-agent", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	cfg := agent.Config{Peers: map[string]string{}}
	var imports importFlag
	var debug bool
	fs.StringVar(&cfg.Node, "node", "", "this node's `name` (also its certificate's name)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/capsec", "state `dir`: containers, logs, images, move history")
	fs.StringVar(&cfg.Socket, "socket", client.DefaultSocket, "local API socket `path`")
	fs.StringVar(&cfg.Listen, "listen", "", "QUIC `addr` for peer agents (empty: accept no moves)")
	fs.StringVar(&cfg.Cert, "cert", "", "this node's certificate (PEM `file`)")
	fs.StringVar(&cfg.Key, "key", "", "this node's private key (PEM `file`)")
	fs.StringVar(&cfg.CA, "ca", "", "the operator CA's certificate (PEM `file`)")
	fs.Var(peerFlag(cfg.Peers), "peer", "a peer `NODE=HOST:PORT` (repeat); only these peers are accepted")
	fs.StringVar(&cfg.Bridge, "bridge", "capsec-br", "`bridge` in this node's network namespace that joins the plant network")
	fs.StringVar(&cfg.CRIU, "criu", "", "CRIU `binary` (default: /opt/capsec/criu/bin/criu from `make deps`, else criu on PATH)")
	fs.IntVar(&cfg.TmpfsMiB, "tmpfs-mib", 4096, "size limit of the checkpoint image tmpfs in `MiB`")
	fs.DurationVar(&cfg.MoveTimeout, "move-timeout", 2*time.Minute, "default bound of one move")
	fs.DurationVar(&cfg.PeerTimeout, "peer-timeout", 5*time.Second, "a peer silent this long has failed, and so has any move with it")
	fs.Var(&imports, "import", "import an image bundle `NAME=DIR` at start (repeat)")
	fs.BoolVar(&debug, "debug", false, "debug logging")
	fs.Func("test-fault", "TESTS ONLY: inject a `fault` (pause:POINT=DURATION, corrupt-checkpoint)", cfg.Faults.Parse)
	fs.Parse(os.Args[1:])

	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// libcontainer logs through logrus; its warnings (one per restore about
	// the restore hook it cannot serialize) are noise in the agent's log.
	if !debug {
		logrus.SetLevel(logrus.ErrorLevel)
	}
	if err := run(cfg, imports); err != nil {
		fmt.Fprintln(os.Stderr, "capsec-agent:", err)
		os.Exit(1)
	}
}

func run(cfg agent.Config, imports importFlag) error {
	if cfg.Node == "" {
		return fmt.Errorf("--node is required (see --help)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(ctx, cfg)
	if err != nil {
		return err
	}
	store := a.Images()
	for _, im := range imports {
		img, err := store.Import(im[0], im[1], "")
		if err != nil {
			return fmt.Errorf("--import %s: %w", im[0], err)
		}
		cfg.Logger.Info("image imported", "image", im[0], "digest", img.Digest)
	}
	return a.Run(ctx)
}
