package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/capsec/capsec/api/client"
	"github.com/capsec/capsec/transfer"
)

// Up builds the lab: fabric, HMI and node namespaces, certificates, and one
// agent per node. A lab that is already up is torn down first, so Up always
// starts from a known state.
func Up(ctx context.Context, cfg Config) error {
	if cfg.Nodes < 2 || cfg.Nodes > 9 {
		return fmt.Errorf("--nodes must be 2..9, got %d", cfg.Nodes)
	}
	for _, b := range []string{"capsec-agent", "mbprobe"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return fmt.Errorf("lab needs %s in %s (run `make build`): %w", b, cfg.BinDir, err)
		}
	}
	if err := Down(ctx, cfg.Log); err != nil {
		return fmt.Errorf("clear an earlier lab: %w", err)
	}
	if err := os.MkdirAll(Root, 0o700); err != nil {
		return err
	}
	// quic-go wants larger UDP buffers than the kernel's default.
	for _, k := range []string{"net.core.rmem_max", "net.core.wmem_max"} {
		if cur, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err == nil {
			if n, _ := strconv.Atoi(strings.TrimSpace(string(cur))); n < 7500000 {
				sysctl(k, "7500000")
			}
		}
	}
	if err := buildNetwork(ctx, cfg); err != nil {
		return err
	}
	if err := makeCerts(cfg); err != nil {
		return err
	}
	for i := 0; i < cfg.Nodes; i++ {
		if err := startAgent(ctx, cfg, i); err != nil {
			return err
		}
	}
	for i := 0; i < cfg.Nodes; i++ {
		c := &client.Client{Socket: client.LabSocket(NodeName(i))}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.WaitReady(wctx)
		cancel()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(NodeDir(NodeName(i)), "agent.log"))
			return fmt.Errorf("agent of %s did not start: %w\n%s", NodeName(i), err, tail(log, 15))
		}
	}
	cfg.Log.Info("lab up", "nodes", cfg.Nodes, "fabric", Fabric)
	return nil
}

func buildNetwork(ctx context.Context, cfg Config) error {
	steps := [][]string{
		{"link", "add", Fabric, "type", "bridge"},
		{"addr", "add", FabricIP, "dev", Fabric},
		{"link", "set", Fabric, "up"},
		{"netns", "add", HMINetns},
		{"-n", HMINetns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if err := uplink(ctx, HMINetns, "capsec-up-hmi", "eth0"); err != nil {
		return err
	}
	if err := ip(ctx, "-n", HMINetns, "addr", "add", fmt.Sprintf("%s/%d", HMIIP, prefixLen), "dev", "eth0"); err != nil {
		return err
	}
	for i := 0; i < cfg.Nodes; i++ {
		node, ns := NodeName(i), NodeNetns(NodeName(i))
		steps := [][]string{
			{"netns", "add", ns},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "link", "add", NodeBridge, "type", "bridge"},
		}
		for _, s := range steps {
			if err := ip(ctx, s...); err != nil {
				return err
			}
		}
		if err := uplink(ctx, ns, "capsec-up-"+node[len(node)-1:], "uplink"); err != nil {
			return err
		}
		steps = [][]string{
			{"-n", ns, "link", "set", "uplink", "master", NodeBridge},
			{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", NodeIP(i), prefixLen), "dev", NodeBridge},
			{"-n", ns, "link", "set", NodeBridge, "up"},
		}
		for _, s := range steps {
			if err := ip(ctx, s...); err != nil {
				return err
			}
		}
	}
	return nil
}

func makeCerts(cfg Config) error {
	caDir := filepath.Join(Root, "ca")
	if err := transfer.InitCA(caDir); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	for i := 0; i < cfg.Nodes; i++ {
		node := NodeName(i)
		if err := os.MkdirAll(NodeDir(node), 0o700); err != nil {
			return err
		}
		if err := transfer.IssueNode(caDir, node, NodeDir(node), 30*24*time.Hour, nil); err != nil {
			return fmt.Errorf("certificate for %s: %w", node, err)
		}
	}
	return nil
}

// startAgent starts node i's agent inside the node's network namespace only:
// it stays in the root mount namespace, so the container namespaces it
// bind-mounts under /run/netns are visible to the whole host.
func startAgent(ctx context.Context, cfg Config, i int) error {
	node := NodeName(i)
	dir := NodeDir(node)
	args := []string{
		"--net=/run/netns/" + NodeNetns(node), "--",
		filepath.Join(cfg.BinDir, "capsec-agent"),
		"--node", node,
		"--state-dir", filepath.Join(dir, "state"),
		"--socket", client.LabSocket(node),
		"--listen", fmt.Sprintf("%s:%d", NodeIP(i), AgentPort),
		"--cert", filepath.Join(dir, node+".pem"),
		"--key", filepath.Join(dir, node+".key"),
		"--ca", filepath.Join(Root, "ca", "ca.pem"),
		"--bridge", NodeBridge,
		"--tmpfs-mib", "3072",
	}
	for j := 0; j < cfg.Nodes; j++ {
		if j != i {
			args = append(args, "--peer", fmt.Sprintf("%s=%s:%d", NodeName(j), NodeIP(j), AgentPort))
		}
	}
	ents, _ := os.ReadDir(cfg.Images)
	for _, e := range ents {
		if e.IsDir() && (cfg.ImageNodes == 0 || i < cfg.ImageNodes) {
			args = append(args, "--import", e.Name()+"="+filepath.Join(cfg.Images, e.Name()))
		}
	}
	args = append(args, cfg.AgentArgs[node]...)
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent of %s: %w", node, err)
	}
	pid := cmd.Process.Pid
	// Reap the agent if it exits while this process lives (a test or the
	// benchmark), so that it leaves no zombie; it outlives a short-lived
	// capsec-lab, which then simply exits.
	go cmd.Wait()
	return os.WriteFile(filepath.Join(dir, "agent.pid"), []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errNotUp = errors.New("the lab is not up (run `capsec-lab up`)")

// KillAgent kills node's agent with SIGKILL, as a crash would, and waits
// until it is gone. Its containers keep running.
func KillAgent(node string) error {
	b, err := os.ReadFile(filepath.Join(NodeDir(node), "agent.pid"))
	if err != nil {
		return fmt.Errorf("%s: %w", node, errNotUp)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill agent of %s: %w", node, err)
	}
	for i := 0; i < 200 && isAgent(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// StartAgent starts node's agent again (after KillAgent) and waits until it
// answers.
func StartAgent(ctx context.Context, cfg Config, node string) error {
	i := int(node[len(node)-1] - 'a')
	if err := startAgent(ctx, cfg, i); err != nil {
		return err
	}
	c := &client.Client{Socket: client.LabSocket(node)}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return c.WaitReady(wctx)
}
