package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/capsec/capsec/transfer"
)

// TransferOptions places the micro-benchmark: the sender runs in FromNetns
// as FromNode, the receiver in ToNetns as ToNode listening on ToIP.
type TransferOptions struct {
	Exe       string // the capsec-bench binary, re-run under nsenter for each side
	Bytes     int64
	FromNetns string
	ToNetns   string
	FromNode  string
	ToNode    string
	ToIP      string
	Modes     []string      // default TransferModes
	Timeout   time.Duration // per mode
	Log       *slog.Logger
}

// RunTransfer runs every mode once between the two namespaces, with
// certificates from a throwaway CA, and returns the rates and ratios. A mode
// that fails is recorded with its error and the others still run.
func RunTransfer(ctx context.Context, o TransferOptions) (*TransferResult, error) {
	if len(o.Modes) == 0 {
		o.Modes = TransferModes
	}
	dir, err := os.MkdirTemp("/run", "capsec-bench-certs-")
	if err != nil {
		return nil, fmt.Errorf("transfer benchmark: certificate dir: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := transfer.InitCA(dir); err != nil {
		return nil, fmt.Errorf("transfer benchmark: throwaway CA: %w", err)
	}
	for _, n := range []string{o.FromNode, o.ToNode} {
		if err := transfer.IssueNode(dir, n, dir, 24*time.Hour, nil); err != nil {
			return nil, fmt.Errorf("transfer benchmark: %w", err)
		}
	}
	res := &TransferResult{From: o.FromNetns, To: o.ToNetns + " " + o.ToIP, Bytes: o.Bytes}
	for _, mode := range o.Modes {
		m, err := runMode(ctx, o, dir, mode)
		if err != nil {
			m = TransferMode{Mode: mode, Bytes: o.Bytes, Error: err.Error()}
			o.Log.Warn("transfer benchmark", "mode", mode, "err", err)
		}
		res.Modes = append(res.Modes, m)
		if ctx.Err() != nil {
			break
		}
	}
	res.Ratios()
	return res, ctx.Err()
}

func runMode(ctx context.Context, o TransferOptions, certs, mode string) (TransferMode, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var srvErr bytes.Buffer
	srv := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+o.ToNetns, "--",
		o.Exe, "transfer-server", "--mode", mode, "--listen", net.JoinHostPort(o.ToIP, "0"),
		"--certs", certs, "--node", o.ToNode, "--peer", o.FromNode)
	srv.Stderr = &srvErr
	srv.WaitDelay = 2 * time.Second
	out, err := srv.StdoutPipe()
	if err != nil {
		return TransferMode{}, err
	}
	if err := srv.Start(); err != nil {
		return TransferMode{}, fmt.Errorf("start %s receiver: %w", mode, err)
	}
	defer srv.Process.Kill() // a no-op once it has exited
	lines := bufio.NewScanner(out)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "ready ") {
		srv.Wait()
		return TransferMode{}, fmt.Errorf("%s receiver did not start: %s", mode, strings.TrimSpace(srvErr.String()))
	}
	addr := strings.TrimPrefix(lines.Text(), "ready ")

	cli := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+o.FromNetns, "--",
		o.Exe, "transfer-client", "--mode", mode, "--connect", addr, "--bytes", fmt.Sprint(o.Bytes),
		"--certs", certs, "--node", o.FromNode, "--peer", o.ToNode)
	var cliErr bytes.Buffer
	cli.Stderr = &cliErr
	cli.WaitDelay = 2 * time.Second
	cliOut, cerr := cli.Output()
	var rest bytes.Buffer
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	serr := srv.Wait()
	if cerr != nil {
		return TransferMode{}, fmt.Errorf("%s sender: %w: %s (receiver: %s)", mode, cerr,
			strings.TrimSpace(cliErr.String()), strings.TrimSpace(srvErr.String()))
	}
	if serr != nil {
		return TransferMode{}, fmt.Errorf("%s receiver: %w: %s", mode, serr, strings.TrimSpace(srvErr.String()))
	}
	var m TransferMode
	if err := json.Unmarshal(lastLine(cliOut), &m); err != nil {
		return TransferMode{}, fmt.Errorf("%s sender's result %q: %w", mode, cliOut, err)
	}
	var got struct {
		Bytes int64 `json:"bytes"`
	}
	if err := json.Unmarshal(lastLine(rest.Bytes()), &got); err != nil || got.Bytes != o.Bytes {
		return TransferMode{}, fmt.Errorf("%s receiver got %d of %d bytes (%q, %v)", mode, got.Bytes, o.Bytes, rest.String(), err)
	}
	m.SenderCPU = cpuSeconds(cli.ProcessState)
	m.ReceiverCPU = cpuSeconds(srv.ProcessState)
	return m, nil
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

// PeerArgs are the flags both transfer subcommands take.
type PeerArgs struct {
	Mode  string
	Certs string // holds ca.pem and <node>.pem/.key, as RunTransfer writes them
	Node  string // this side's certificate
	Peer  string // the other side's node name
}

func (a PeerArgs) identity() (*transfer.Identity, error) {
	return transfer.LoadIdentity(a.Node, filepath.Join(a.Certs, a.Node+".pem"),
		filepath.Join(a.Certs, a.Node+".key"), filepath.Join(a.Certs, transfer.CACertFile))
}

// ServeTransferCmd is `capsec-bench transfer-server`: it listens on addr,
// writes "ready ADDR", receives one transfer and writes {"bytes": N}.
func ServeTransferCmd(ctx context.Context, a PeerArgs, addr string, w io.Writer, log *slog.Logger) error {
	id, err := a.identity()
	if err != nil {
		return err
	}
	s, err := ListenTransfer(ctx, a.Mode, addr, id, []string{a.Peer}, log)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(w, "ready %s\n", s.Addr())
	n, err := s.ServeOne(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(map[string]int64{"bytes": n})
}

// SendTransferCmd is `capsec-bench transfer-client`: it sends n bytes to
// addr and writes the TransferMode as JSON.
func SendTransferCmd(ctx context.Context, a PeerArgs, addr string, n int64, w io.Writer) error {
	id, err := a.identity()
	if err != nil {
		return err
	}
	m, err := SendTransfer(ctx, a.Mode, addr, id, a.Peer, n)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(m)
}

// cpuSeconds is a finished process's user and system time. nsenter execs
// the benchmark in place, so this is the benchmark's own.
func cpuSeconds(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}
