package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/lab"
)

// TestTenMovesKeepSession moves the PLC back and forth ten times while the
// HMI polls every 10 ms, and checks what an operator would: no error, no
// reconnect, one TCP session throughout, the marker and the scan counter
// intact, and the PLC on exactly the node it was last moved to.
func TestTenMovesKeepSession(t *testing.T) {
	// Only node-a holds the image: the first move must carry it to node-b.
	cfg := upLabWith(t, func(c *lab.Config) { c.Nodes, c.ImageNodes = 2, 1 })
	ctx := context.Background()
	runPLC(t, ctx)
	p, err := lab.StartProbe(cfg, plcIP+":502", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	nodes := []string{"node-a", "node-b"}
	from := 0
	var downtimes []time.Duration
	for i := 0; i < 10; i++ {
		to := 1 - from
		res, err := node(nodes[from]).Move(ctx, "plc1", api.MoveRequest{To: nodes[to]}, nil)
		if err != nil {
			p.Stop()
			t.Fatalf("move %d %s→%s: %v\n%s", i+1, nodes[from], nodes[to], err, res.Summary())
		}
		t.Logf("move %d: %s", i+1, res.Summary())
		if res.Outcome != "moved" || res.SessionsSeen < 1 || res.SessionsKept != res.SessionsSeen {
			t.Errorf("move %d: outcome %s, sessions %d/%d; want moved with every session kept", i+1, res.Outcome, res.SessionsKept, res.SessionsSeen)
		}
		if i == 0 && res.ImageBytes == 0 {
			t.Errorf("move 1 sent no image, but node-b had none")
		}
		if i > 1 && res.ImageBytes != 0 {
			t.Errorf("move %d sent the image again (%d bytes); node %s caches it", i+1, res.ImageBytes, nodes[to])
		}
		if res.Downtime <= 0 || res.Downtime > res.Total {
			t.Errorf("move %d: downtime %v outside (0, total %v]", i+1, res.Downtime, res.Total)
		}
		downtimes = append(downtimes, res.Downtime)
		assertOnlyOn(t, ctx, "plc1", nodes[to], nodes[from])
		from = to
		time.Sleep(300 * time.Millisecond)
	}
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe: %d requests, %d errors, %d reconnects, ports %v, largest gap %.0f ms, violations %d",
		rep.Requests, rep.Errors, rep.Reconnects, rep.LocalPorts, rep.LargestGapMs, rep.Violations)
	if err := rep.Check(); err != nil {
		t.Errorf("HMI: %v", err)
	}
	// The HMI's largest gap includes the agent's downtime; it cannot be
	// smaller than the shortest freeze the agent reported.
	min := downtimes[0]
	for _, d := range downtimes {
		min = minDur(min, d)
	}
	if gap := time.Duration(rep.LargestGapMs * float64(time.Millisecond)); gap+20*time.Millisecond < min {
		t.Errorf("HMI's largest gap %v is below the shortest reported downtime %v: the figures disagree", gap, min)
	}
	h, err := node("node-a").History(ctx)
	if err != nil || len(h) != 5 {
		t.Errorf("node-a history: %d moves, %v; want the 5 it started", len(h), err)
	}
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// assertOnlyOn checks that name runs on `on` and that `off` keeps nothing of
// it: no record, no runtime state, no network namespace.
func assertOnlyOn(t *testing.T, ctx context.Context, name, on, off string) {
	t.Helper()
	c, err := node(on).Container(ctx, name)
	if err != nil || c.Status != "running" {
		t.Errorf("%s on %s: %+v, %v; want running", name, on, c, err)
	}
	if _, err := node(off).Container(ctx, name); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("%s still known on %s after moving away (err %v)", name, off, err)
	}
	if _, err := os.Stat("/run/netns/capsec-c-" + off + "-" + name); err == nil {
		t.Errorf("%s's network namespace left on %s", name, off)
	}
}

// TestMoveRefusals checks moves that must not start: to the node the
// container is on, to an unknown node, of an unknown container, and onto a
// node where the name is taken. Each gives a clear error and the PLC keeps
// running where it was.
func TestMoveRefusals(t *testing.T) {
	upLab(t, 2)
	ctx := context.Background()
	runPLC(t, ctx)
	cases := []struct {
		name, container, to string
		want                error
	}{
		{"same node", "plc1", "node-a", api.ErrInvalid},
		{"unknown node", "plc1", "node-z", api.ErrNotFound},
		{"unknown container", "nope", "node-b", api.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := node("node-a").Move(ctx, tc.container, api.MoveRequest{To: tc.to}, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("move %s to %s: err %v, want %v", tc.container, tc.to, err, tc.want)
			}
		})
	}
	t.Run("name taken on destination", func(t *testing.T) {
		if _, err := node("node-b").Run(ctx, api.RunRequest{Name: "plc1", Image: "plcsim", IP: "10.77.0.60/24"}); err != nil {
			t.Fatalf("run a second plc1 on node-b: %v", err)
		}
		res, err := node("node-a").Move(ctx, "plc1", api.MoveRequest{To: "node-b"}, nil)
		if err == nil || res.Outcome != "aborted" {
			t.Fatalf("move onto a taken name: outcome %q err %v; want aborted", res.Outcome, err)
		}
		if !errors.Is(err, api.ErrFailedPrecondition) {
			t.Errorf("err %v; want a failed precondition", err)
		}
	})
	c, err := node("node-a").Container(ctx, "plc1")
	if err != nil || c.Status != "running" {
		t.Fatalf("plc1 on node-a after refused moves: %+v, %v", c, err)
	}
}

// TestDrain empties node-a before a patch: both PLCs move to node-b live,
// the HMI polling one of them keeps its session, and node-a is left empty.
func TestDrain(t *testing.T) {
	cfg := upLab(t, 2)
	ctx := context.Background()
	runPLC(t, ctx)
	if _, err := node("node-a").Run(ctx, api.RunRequest{Name: "plc2", Image: "plcsim", IP: "10.77.0.51/24"}); err != nil {
		t.Fatal(err)
	}
	p, err := lab.StartProbe(cfg, plcIP+":502", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	out, err := exec.Command(filepath.Join(cfg.BinDir, "migrate"), "drain", "--node", "node-a").CombinedOutput()
	t.Logf("migrate drain:\n%s", out)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		t.Errorf("HMI during the drain: %v", err)
	}
	if cs, _ := node("node-a").Containers(ctx); len(cs) != 0 {
		t.Errorf("node-a after drain: %+v; want empty", cs)
	}
	for _, name := range []string{"plc1", "plc2"} {
		if c, err := node("node-b").Container(ctx, name); err != nil || c.Status != "running" {
			t.Errorf("%s on node-b after drain: %+v, %v", name, c, err)
		}
	}
}
