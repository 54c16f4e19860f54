package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/capsec/capsec/api/client"
)

// Status writes what of the lab is up: namespaces, agents and containers.
func Status(ctx context.Context, w io.Writer) error {
	nss := labNetns()
	if len(nss) == 0 {
		fmt.Fprintln(w, "lab is down")
		return nil
	}
	fmt.Fprintf(w, "fabric %s: %v\n", Fabric, linkExists(Fabric))
	fmt.Fprintf(w, "namespaces: %s\n", strings.Join(nss, " "))
	nodes, _ := filepath.Glob(filepath.Join(Root, "node-*"))
	for _, d := range nodes {
		node := filepath.Base(d)
		b, _ := os.ReadFile(filepath.Join(d, "agent.pid"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		c := &client.Client{Socket: client.LabSocket(node)}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(sctx)
		cs, _ := c.Containers(sctx)
		cancel()
		if err != nil {
			fmt.Fprintf(w, "%s: agent pid %d NOT ANSWERING: %v\n", node, pid, err)
			continue
		}
		fmt.Fprintf(w, "%s: agent pid %d, %s, CRIU %s, %d container(s)\n", node, pid, st.Listen, st.CRIU, len(cs))
		for _, c := range cs {
			fmt.Fprintf(w, "  %s %s %s pid %d\n", c.Name, c.Status, c.IP, c.Pid)
		}
	}
	return nil
}
