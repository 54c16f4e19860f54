package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/api/client"
	"github.com/capsec/capsec/probe"
)

// DemoConfig shapes the demo.
type DemoConfig struct {
	Config
	Moves    int           // moves back and forth between node-a and node-b
	Settle   time.Duration // probe time before the first move and between moves
	Keep     bool          // leave the lab up afterwards
	PLCIP    string
	Out      io.Writer
	Ballast  int // MiB of plcsim ballast
	Interval time.Duration
}

// Probe is an mbprobe running in the HMI namespace.
type Probe struct {
	cmd  *exec.Cmd
	out  string
	done chan error
}

// StartProbe starts mbprobe in the HMI namespace against target until Stop.
// Extra arguments go to mbprobe (e.g. "--timeout", "20s").
func StartProbe(cfg Config, target string, interval time.Duration, extra ...string) (*Probe, error) {
	out := filepath.Join(Root, fmt.Sprintf("probe-%d.json", time.Now().UnixNano()))
	args := append([]string{"--net=/run/netns/" + HMINetns, "--",
		filepath.Join(cfg.BinDir, "mbprobe"), "--target", target, "--interval", interval.String(),
		"--duration", "0", "--json", out}, extra...)
	cmd := exec.Command("nsenter", args...)
	logf, err := os.Create(out + ".log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start mbprobe: %w", err)
	}
	p := &Probe{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	return p, nil
}

// Stop ends the probe and returns its report.
func (p *Probe) Stop() (probe.Report, error) {
	p.cmd.Process.Signal(syscall.SIGINT)
	var werr error
	select {
	case werr = <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		werr = errors.New("mbprobe did not stop on SIGINT")
	}
	var r probe.Report
	b, err := os.ReadFile(p.out)
	if err != nil {
		log, _ := os.ReadFile(p.out + ".log")
		return r, fmt.Errorf("probe report: %w (mbprobe: %v)\n%s", err, werr, tail(log, 10))
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("probe report: %w", err)
	}
	return r, nil
}

// Demo runs the lab demo: the PLC on node-a, the HMI polling it, and moves
// between node-a and node-b. It returns an error if any move failed or the
// HMI saw any error, reconnect or violation.
func Demo(ctx context.Context, cfg DemoConfig) (err error) {
	w := cfg.Out
	fmt.Fprintf(w, "== capsec lab: %d nodes on bridge %s, HMI at %s\n", cfg.Nodes, Fabric, HMIIP)
	if err := Up(ctx, cfg.Config); err != nil {
		return err
	}
	if !cfg.Keep {
		defer func() {
			if derr := Down(context.Background(), cfg.Log); derr != nil && err == nil {
				err = derr
			}
			if left := Leftovers(); len(left) > 0 {
				fmt.Fprintf(w, "left behind after down: %v\n", left)
			} else {
				fmt.Fprintln(w, "== lab down: nothing left behind")
			}
		}()
	}
	a := &client.Client{Socket: client.LabSocket(NodeName(0))}
	req := api.RunRequest{Name: "plc1", Image: "plcsim", IP: cfg.PLCIP + "/24"}
	if cfg.Ballast > 0 {
		req.Args = []string{"--ballast", fmt.Sprint(cfg.Ballast)}
	}
	c, err := a.Run(ctx, req)
	if err != nil {
		return fmt.Errorf("run plc1 on node-a: %w", err)
	}
	fmt.Fprintf(w, "== plc1 (plcsim) running on %s at %s, MAC %s\n", c.Node, c.IP, c.MAC)
	time.Sleep(300 * time.Millisecond)
	p, err := StartProbe(cfg.Config, cfg.PLCIP+":502", cfg.Interval)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "== HMI polling %s:502 every %s over one Modbus TCP session\n", cfg.PLCIP, cfg.Interval)
	sleep(ctx, cfg.Settle)

	var moveErr error
	from := 0
	for i := 0; i < cfg.Moves && ctx.Err() == nil; i++ {
		to := 1 - from
		cl := &client.Client{Socket: client.LabSocket(NodeName(from))}
		res, err := cl.Move(ctx, "plc1", api.MoveRequest{To: NodeName(to)}, nil)
		if res.ID != "" {
			fmt.Fprintf(w, "move %d: %s\n", i+1, res.Summary())
		}
		if err != nil {
			moveErr = errors.Join(moveErr, err)
			if res.Outcome != "moved" {
				break
			}
		}
		from = to
		sleep(ctx, cfg.Settle)
	}
	rep, perr := p.Stop()
	if perr != nil {
		return errors.Join(moveErr, perr)
	}
	fmt.Fprintln(w, "== what the HMI saw")
	rep.WriteTable(w)
	return errors.Join(moveErr, rep.Check())
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
