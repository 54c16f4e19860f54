package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// Spec describes a container. The same Spec (with node-local paths changed) is
// used to Run it and to Restore it elsewhere.
type Spec struct {
	Name       string   // container id, [a-z0-9][a-z0-9_.-]*
	Rootfs     string   // absolute path of the root filesystem (may differ between nodes, same content)
	Args       []string // argv of the init process; Args[0] is a path inside Rootfs
	Env        []string // KEY=value; PATH is added if missing
	NetNS      string   // path of an existing netns bind mount to join (required)
	Hostname   string   // UTS hostname; defaults to Name
	CgroupPath string   // e.g. "/capsec/node-a/plc1", unique per node
}

// Info is a container's state as libcontainer sees it right now.
type Info struct {
	Name    string
	Pid     int    // init's pid in our pid namespace; 0 when stopped
	Status  string // libcontainer status: "created", "running", "paused", "stopped"
	Created time.Time
	Rootfs  string
	NetNS   string
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

func (s Spec) validate() error {
	switch {
	case !nameRE.MatchString(s.Name) || len(s.Name) > 128:
		return fmt.Errorf("container name %q: must match [a-z0-9][a-z0-9_.-]* (max 128)", s.Name)
	case !filepath.IsAbs(s.Rootfs):
		return fmt.Errorf("container %s: rootfs %q is not an absolute path", s.Name, s.Rootfs)
	case len(s.Args) == 0:
		return fmt.Errorf("container %s: no Args", s.Name)
	case !filepath.IsAbs(s.NetNS):
		return fmt.Errorf("container %s: netns %q is not an absolute path (a netns is required)", s.Name, s.NetNS)
	case !filepath.IsAbs(s.CgroupPath) || filepath.Clean(s.CgroupPath) == "/":
		return fmt.Errorf("container %s: cgroup path %q must be absolute and not /", s.Name, s.CgroupPath)
	}
	if fi, err := os.Stat(s.Rootfs); err != nil {
		return fmt.Errorf("container %s: rootfs: %w", s.Name, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("container %s: rootfs %s is not a directory", s.Name, s.Rootfs)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.NetNS, &st); err != nil {
		return fmt.Errorf("container %s: netns %s: %w", s.Name, s.NetNS, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("container %s: netns %s is not a namespace bind mount", s.Name, s.NetNS)
	}
	return nil
}

// capabilities plcsim-like workloads need: bind :502, plus the small
// docker-like set a well-behaved server may use. No CAP_SYS_ADMIN, no NET_ADMIN.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
}

// libcontainerConfig maps a Spec to libcontainer's config. criuConfig is the
// CRIU config file libcontainer passes to CRIU on dump and restore (the label
// org.criu.config) — the only way to set options CriuOpts lacks.
func libcontainerConfig(s Spec, criuConfig string) *configs.Config {
	const defaultMountFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	var devRules []*config.Rule
	var devs []*config.Device
	for _, d := range specconv.AllowedDevices {
		dd := *d
		devs = append(devs, &dd)
		devRules = append(devRules, &dd.Rule)
	}
	hostname := s.Hostname
	if hostname == "" {
		hostname = s.Name
	}
	caps := append([]string(nil), defaultCaps...)
	return &configs.Config{
		Rootfs: s.Rootfs,
		// Not read-only: CRIU's restore makes a temporary directory in the
		// container's root to pivot into ("mnt: Can't create a temporary
		// directory: Read-only file system").
		Readonlyfs: false,
		Hostname:   hostname,
		// No user namespace: CRIU restores as root into the same uid space.
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS},
			{Type: configs.NEWUTS},
			{Type: configs.NEWIPC},
			{Type: configs.NEWPID},
			{Type: configs.NEWNET, Path: s.NetNS},
		},
		Capabilities: &configs.Capabilities{
			Bounding:  caps,
			Effective: caps,
			Permitted: caps,
		},
		NoNewPrivileges: true,
		Cgroups: &configs.Cgroup{
			Path:      s.CgroupPath,
			Resources: &configs.Resources{Devices: devRules},
		},
		Devices: devs,
		MaskPaths: []string{
			"/proc/kcore", "/proc/keys", "/proc/timer_list",
		},
		ReadonlyPaths: []string{
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
		},
		// Only what a PLC needs: no /sys, /dev/shm or /dev/pts. Every tmpfs
		// is one more archive CRIU writes while the container is frozen
		// (about 8 ms each here), and every mount more for an image to see.
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: defaultMountFlags},
			{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		},
		Rlimits: []configs.Rlimit{
			{Type: unix.RLIMIT_NOFILE, Hard: 4096, Soft: 4096},
		},
		Labels: []string{"org.criu.config=" + criuConfig},
	}
}

// processEnv adds PATH if missing, and turns off MPTCP for Go workloads:
// since Go 1.24 net.Listen uses MPTCP (IPPROTO_MPTCP, proto 262) when the kernel
// has it, and CRIU 4.2 cannot dump such sockets ("inet: Unsupported proto 262").
// Setting net.mptcp.enabled=0 in the container's netns does the same for any
// language.
func processEnv(env []string) []string {
	out := append([]string(nil), env...)
	hasPath, hasGODEBUG := false, false
	for i, e := range out {
		switch {
		case strings.HasPrefix(e, "PATH="):
			hasPath = true
		case strings.HasPrefix(e, "GODEBUG="):
			hasGODEBUG = true
			if !strings.Contains(e, "multipathtcp=") {
				out[i] = e + ",multipathtcp=0"
			}
		}
	}
	if !hasPath {
		out = append(out, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	if !hasGODEBUG {
		out = append(out, "GODEBUG=multipathtcp=0")
	}
	return out
}
