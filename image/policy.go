package image

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Policy is what a node lets an image ask for. An image is code from
// elsewhere, and so is a checkpoint: the node refuses any image whose config
// asks for more than its policy allows, before anything of it runs (the
// lesson of CRI-O's CVE-2024-8676, where a restored container brought its
// own host mounts).
type Policy struct {
	// Capabilities an image may ask for, beyond which it is refused.
	Capabilities []string
	// MountDestinations an image may declare (in-container paths); host
	// bind mounts are never allowed.
	MountDestinations []string
}

// DefaultPolicy allows what plcsim needs and nothing more: to bind the
// Modbus port, and the runtime's own /proc, /dev and /sys.
func DefaultPolicy() Policy {
	return Policy{
		Capabilities:      []string{"CAP_NET_BIND_SERVICE"},
		MountDestinations: []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"},
	}
}

// Check reads a bundle's config.json and returns an error naming every
// thing it asks for that the policy does not allow.
func (p Policy) Check(bundle string) error {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("policy: config.json: %w", err)
	}
	return p.CheckSpec(&s)
}

// CheckSpec is Check on a parsed config.
func (p Policy) CheckSpec(s *specs.Spec) error {
	var bad []string
	for _, m := range s.Mounts {
		host := m.Type == "bind" || m.Type == "rbind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
		switch {
		case host:
			bad = append(bad, fmt.Sprintf("host mount %s -> %s", m.Source, m.Destination))
		case !slices.Contains(p.MountDestinations, m.Destination):
			bad = append(bad, "mount at "+m.Destination)
		}
	}
	if s.Process != nil && s.Process.Capabilities != nil {
		c := s.Process.Capabilities
		for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
			for _, cp := range set {
				if !slices.Contains(p.Capabilities, cp) && !slices.Contains(bad, "capability "+cp) {
					bad = append(bad, "capability "+cp)
				}
			}
		}
	}
	if l := s.Linux; l != nil {
		for _, d := range l.Devices {
			bad = append(bad, "device "+d.Path)
		}
		for _, ns := range l.Namespaces {
			if ns.Path != "" {
				bad = append(bad, fmt.Sprintf("joining the host's %s namespace %s", ns.Type, ns.Path))
			}
		}
		if l.Resources != nil {
			for _, d := range l.Resources.Devices {
				if d.Allow {
					bad = append(bad, "device access "+d.Access)
				}
			}
		}
	}
	if s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0 || len(s.Hooks.Poststart) > 0) {
		bad = append(bad, "runtime hooks")
	}
	if len(bad) > 0 {
		return fmt.Errorf("image asks for what this node's policy does not allow: %s", strings.Join(bad, ", "))
	}
	return nil
}
