// Package agent is capsec's per-node daemon: it keeps the node's container
// table, serves the local API on a UNIX socket, and moves containers live to
// and from peer agents over mutual-TLS QUIC.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/capsec/capsec/checkpoint"
	"github.com/capsec/capsec/image"
	"github.com/capsec/capsec/netmove"
	"github.com/capsec/capsec/transfer"
)

// Version is the agent's protocol and build version, compared in preflight.
const Version = "0.1.0"

// Config is everything an agent needs to start. cmd/capsec-agent fills it
// from flags.
type Config struct {
	Node     string            // this node's name; also the CN of its certificate
	StateDir string            // containers, logs, images, history (0700)
	Socket   string            // local API socket (0600)
	Listen   string            // QUIC address for peers, e.g. 10.77.0.11:7443
	Cert     string            // this node's certificate (PEM)
	Key      string            // its key
	CA       string            // the operator's CA certificate
	Peers    map[string]string // node name -> QUIC address; the only peers accepted
	Bridge   string            // bridge in this node's netns that joins the plant network
	CRIU     string            // CRIU binary; "" = the wrapper `make deps` installs
	// TmpfsMiB sizes the tmpfs that holds checkpoint images (memory only
	// used as images are written).
	TmpfsMiB    int
	MoveTimeout time.Duration // default bound of one move
	// PeerTimeout is how long a peer may go silent before its session, and
	// any move on it, fails. Keep-alives flow every 2 s while both live.
	PeerTimeout time.Duration
	// Policy bounds what an image may ask for; the zero value means
	// image.DefaultPolicy().
	Policy *image.Policy
	Faults Faults // tests only
	Logger *slog.Logger
}

// Agent is one node's daemon.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	criu    *checkpoint.CRIU
	rt      *checkpoint.Runtime
	net     netmove.Host
	images  image.Store
	policy  image.Policy
	id      *transfer.Identity
	started time.Time

	mu sync.Mutex
	// busy holds the containers that a move or another operation owns; a
	// second operation on one of them fails fast rather than queueing.
	busy map[string]string
	// inflight holds the IDs of incoming moves not yet committed or torn down.
	inflight map[string]bool
}

// New checks the node's prerequisites (CRIU, state directory, certificates)
// and returns an agent ready to Run.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !image.ValidName(cfg.Node) {
		return nil, fmt.Errorf("--node %q: use lower-case letters, digits and '-'", cfg.Node)
	}
	if cfg.StateDir == "" || cfg.Socket == "" {
		return nil, errors.New("--state-dir and --socket are required")
	}
	if cfg.Bridge == "" {
		return nil, errors.New("--bridge is required: the bridge in this node's network namespace that reaches the plant network")
	}
	if cfg.MoveTimeout == 0 {
		cfg.MoveTimeout = 2 * time.Minute
	}
	if cfg.PeerTimeout == 0 {
		cfg.PeerTimeout = 5 * time.Second
	}
	if cfg.TmpfsMiB == 0 {
		cfg.TmpfsMiB = 4096
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.Node), busy: map[string]string{}, inflight: map[string]bool{}, started: time.Now()}
	for _, d := range []string{"", "containers", "logs", "images", "runtime", "criu", "tmpfs"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
		if err := os.Chmod(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	criu, err := checkpoint.FindCRIU(ctx, cfg.CRIU)
	if err != nil {
		return nil, err
	}
	if err := criu.UsePath(filepath.Join(cfg.StateDir, "criu", "bin")); err != nil {
		return nil, err
	}
	a.criu = criu
	if err := a.mountTmpfs(); err != nil {
		return nil, err
	}
	rt, err := checkpoint.NewRuntime(filepath.Join(cfg.StateDir, "runtime"), criu, a.log)
	if err != nil {
		return nil, err
	}
	a.rt = rt
	a.net = netmove.Host{Bridge: cfg.Bridge, NSPrefix: "capsec-c-" + cfg.Node + "-"}
	a.images = image.Store{Dir: filepath.Join(cfg.StateDir, "images")}
	a.policy = image.DefaultPolicy()
	if cfg.Policy != nil {
		a.policy = *cfg.Policy
	}
	if cfg.Listen != "" {
		id, err := transfer.LoadIdentity(cfg.Node, cfg.Cert, cfg.Key, cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("node identity: %w (create one with `migrate ca issue %s`)", err, cfg.Node)
		}
		a.id = id
	}
	return a, nil
}

// tmpfs is where checkpoint images live: memory, not disk, both for speed and
// because an image holds the process's memory, secrets included.
func (a *Agent) tmpfs() string { return filepath.Join(a.cfg.StateDir, "tmpfs") }

func (a *Agent) mountTmpfs() error {
	var st unix.Statfs_t
	if err := unix.Statfs(a.tmpfs(), &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		return nil
	}
	opts := fmt.Sprintf("mode=0700,size=%dm", a.cfg.TmpfsMiB)
	if err := unix.Mount("capsec-images", a.tmpfs(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount image tmpfs on %s: %w", a.tmpfs(), err)
	}
	return nil
}

// Run serves the local API and the peer listener until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	a.reattach(ctx)
	a.recoverMoves(ctx)

	if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
		return err
	}
	os.Remove(a.cfg.Socket)
	ln, err := net.Listen("unix", a.cfg.Socket)
	if err != nil {
		return fmt.Errorf("local API socket %s: %w", a.cfg.Socket, err)
	}
	if err := os.Chmod(a.cfg.Socket, 0o600); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, ConnContext: connContext}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()

	if a.id != nil {
		allowed := make([]string, 0, len(a.cfg.Peers))
		for n := range a.cfg.Peers {
			allowed = append(allowed, n)
		}
		sort.Strings(allowed)
		pl, err := transfer.Listen(ctx, a.cfg.Listen, transfer.ServerTLS(a.id, allowed), transfer.WithIdleTimeout(a.cfg.PeerTimeout), transfer.WithLogger(a.log))
		if err != nil {
			srv.Close()
			return fmt.Errorf("peer listener on %s: %w", a.cfg.Listen, err)
		}
		defer pl.Close()
		go a.servePeers(ctx, pl)
	}
	a.log.Info("agent ready", "socket", a.cfg.Socket, "listen", a.cfg.Listen, "criu", a.criu.VersionString)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("local API: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	os.Remove(a.cfg.Socket)
	return nil
}

// reattach picks up the containers that kept running while the agent was
// away: their output pipe is reopened so logging resumes.
func (a *Agent) reattach(ctx context.Context) {
	recs, err := a.loadRecords()
	if err != nil {
		a.log.Error("load container table", "err", err)
		return
	}
	for _, r := range recs {
		info, err := a.rt.Get(r.Name)
		if err != nil || info.Status != "running" {
			a.log.Info("container not running", "container", r.Name)
			continue
		}
		rd, err := a.rt.Attach(r.Name)
		if err != nil {
			a.log.Warn("reattach output", "container", r.Name, "err", err)
			continue
		}
		go a.drain(r.Name, rd)
		a.log.Info("reattached", "container", r.Name, "pid", info.Pid)
	}
}

// claim marks a container as owned by op; it fails if another op owns it.
func (a *Agent) claim(name, op string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.busy[name]; ok {
		return fmt.Errorf("container %s is busy (%s in progress): %w", name, cur, errBusy)
	}
	a.busy[name] = op
	return nil
}

func (a *Agent) release(name string) {
	a.mu.Lock()
	delete(a.busy, name)
	a.mu.Unlock()
}

// Images is the agent's image store.
func (a *Agent) Images() image.Store { return a.images }
