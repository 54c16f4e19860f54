// Package integration holds capsec's end-to-end tests: real agents, real
// CRIU, runc's libcontainer and network namespaces, and a real Modbus client.
// They need root and opt in with CAPSEC_TEST_ROOT=1 (see `make integration`);
// CAPSEC_BIN and CAPSEC_IMAGES point at what `make build` made.
package integration

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/api/client"
	"github.com/capsec/capsec/lab"
)

const plcIP = "10.77.0.50"

func labConfig(t *testing.T) lab.Config {
	t.Helper()
	if os.Getenv("CAPSEC_TEST_ROOT") != "1" {
		t.Skip("integration test: needs root, CRIU and netns; run `make integration` (CAPSEC_TEST_ROOT=1)")
	}
	bin, images := os.Getenv("CAPSEC_BIN"), os.Getenv("CAPSEC_IMAGES")
	if bin == "" || images == "" {
		t.Fatal("CAPSEC_BIN and CAPSEC_IMAGES must name the build output (`make integration` sets them)")
	}
	if _, err := os.Stat(filepath.Join(images, "plcsim", "config.json")); err != nil {
		t.Fatalf("no plcsim image: %v (run `make images`)", err)
	}
	return lab.Config{Nodes: 2, BinDir: bin, Images: images, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

// upLab brings the lab up for one test and proves on cleanup that down
// leaves nothing behind.
func upLab(t *testing.T, nodes int) lab.Config {
	return upLabWith(t, func(c *lab.Config) { c.Nodes = nodes })
}

// upLabWith is upLab with a chance to change the lab's configuration, e.g.
// to give one agent a fault to inject.
func upLabWith(t *testing.T, change func(*lab.Config)) lab.Config {
	cfg := labConfig(t)
	change(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := lab.Up(ctx, cfg); err != nil {
		lab.Down(context.Background(), cfg.Log)
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"node-a", "node-b"} {
				if b, err := os.ReadFile(filepath.Join(lab.NodeDir(n), "agent.log")); err == nil {
					t.Logf("agent log of %s (tail):\n%s", n, tailLines(string(b), 40))
				}
			}
		}
		if err := lab.Down(context.Background(), cfg.Log); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left := lab.Leftovers(); len(left) > 0 {
			t.Errorf("lab down left behind: %v", left)
		}
	})
	return cfg
}

func node(name string) *client.Client { return &client.Client{Socket: client.LabSocket(name)} }

func runPLC(t *testing.T, ctx context.Context) api.Container {
	t.Helper()
	c, err := node("node-a").Run(ctx, api.RunRequest{Name: "plc1", Image: "plcsim", IP: plcIP + "/24"})
	if err != nil {
		t.Fatalf("run plc1: %v", err)
	}
	if c.Status != "running" || c.Pid == 0 {
		t.Fatalf("plc1 after run: status %q pid %d", c.Status, c.Pid)
	}
	time.Sleep(300 * time.Millisecond)
	return c
}

// TestLabPLCServesHMI is the foundation: the lab comes up, a PLC runs on
// node-a, the HMI polls it over one session with no error, and down leaves
// nothing behind (checked in cleanup).
func TestLabPLCServesHMI(t *testing.T) {
	cfg := upLab(t, 2)
	ctx := context.Background()
	runPLC(t, ctx)
	p, err := lab.StartProbe(cfg, plcIP+":502", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	rep, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Check(); err != nil {
		t.Errorf("probe: %v", err)
	}
	if rep.Successes < 100 {
		t.Errorf("probe: only %d successful polls in 3 s at 10 ms", rep.Successes)
	}
	cs, err := node("node-a").Containers(ctx)
	if err != nil || len(cs) != 1 || cs[0].Status != "running" {
		t.Errorf("node-a containers = %+v, %v; want plc1 running", cs, err)
	}
	logs := &writeBuf{}
	if err := node("node-a").Logs(ctx, "plc1", false, logs); err != nil || logs.Len() == 0 {
		t.Errorf("logs of plc1: %q, %v; want plcsim's output", logs.String(), err)
	}
}

func tailLines(s string, n int) string {
	lines := splitLines(s)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

type writeBuf struct{ b []byte }

func (w *writeBuf) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *writeBuf) Len() int                    { return len(w.b) }
func (w *writeBuf) String() string              { return string(w.b) }
