// Package lab is capsec's one-machine testbed: a bridge in the root network
// namespace plays the plant network, each node is a network namespace with
// its own agent, and an HMI namespace runs the probe. It drives capsec the way
// a user would: through the binaries, the ip tool and the agents' sockets.
package lab

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The lab's fixed names and addresses. Every name starts with "capsec-" so
// that Down can find what an earlier, crashed run left.
const (
	Fabric     = "capsec-fabric"
	FabricIP   = "10.77.0.1/24"
	HMINetns   = "capsec-hmi"
	HMIIP      = "10.77.0.10"
	NodeBridge = "capsec-br"
	Root       = "/run/capsec/lab"
	AgentPort  = 7443
	prefixLen  = 24
)

// Config says what to build and where the binaries are.
type Config struct {
	Nodes  int    // number of nodes, named node-a, node-b, ...
	BinDir string // holds capsec-agent, migrate, mbprobe
	Images string // holds image bundles; each subdirectory is imported by name
	// ImageNodes limits the image import to the first N nodes (0: all), so
	// that a move must carry the image to the others.
	ImageNodes int
	// AgentArgs adds flags to one node's agent, e.g. a small --tmpfs-mib or
	// a --test-fault.
	AgentArgs map[string][]string
	Log       *slog.Logger
}

// NodeName is the name of node i (0-based).
func NodeName(i int) string { return "node-" + string(rune('a'+i)) }

// NodeNetns is the network namespace of a node.
func NodeNetns(node string) string { return "capsec-" + node }

// NodeIP is the address of node i on the fabric.
func NodeIP(i int) string { return fmt.Sprintf("10.77.0.%d", 11+i) }

// NodeDir is where a node's agent keeps its state, socket and log.
func NodeDir(node string) string { return filepath.Join(Root, node) }

// run runs a command and returns its error with the command's output in it.
func run(ctx context.Context, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func ip(ctx context.Context, args ...string) error { return run(ctx, "ip", args...) }

// netnsExists reports whether /run/netns/name exists.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// uplink joins namespace ns to the fabric with a veth: the root end
// (rootIf) on the fabric bridge, the other end named inner inside ns.
func uplink(ctx context.Context, ns, rootIf, inner string) error {
	steps := [][]string{
		{"link", "add", rootIf, "type", "veth", "peer", "name", inner, "netns", ns},
		{"link", "set", rootIf, "master", Fabric},
		{"link", "set", rootIf, "up"},
		{"-n", ns, "link", "set", inner, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

func sysctl(key, value string) error {
	p := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	return os.WriteFile(p, []byte(value), 0o644)
}
