package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Why Dump talks to CRIU itself instead of calling libcontainer's Checkpoint:
// libcontainer always hands CRIU the container's freezer cgroup, and this
// host's cgroup v1 freezer (v2 alike) usually reports FREEZING right after the
// write, upon which CRIU sleeps 100 ms before it looks again (criu/seize.c).
// That sleep was half of all dumps' frozen time here. Without a freezer
// cgroup CRIU stops the tree with ptrace (PTRACE_SEIZE + INTERRUPT on every
// thread), which takes well under a millisecond for a small tree. It also
// spares the extra `criu swrk` libcontainer runs to ask CRIU's version on
// every freshly loaded container. Restore still goes through libcontainer,
// which needs to own the restored process; this file writes the same
// images (descriptors.json included) that libcontainer's Restore expects.

// descriptorsFile is libcontainer's record of the init's stdio in the images;
// its Restore reads it to hand the new pipes to CRIU.
const descriptorsFile = "descriptors.json"

// extNetNSKey is the key libcontainer's Restore uses for the external netns.
const extNetNSKey = "extRootNetNS"

// criuDump dumps container c (whose init is pid) with CRIU's RPC, with the
// options libcontainer's Checkpoint would pass (runc 1.4 criu_linux.go),
// minus the freezer cgroup.
func (r *Runtime) criuDump(ctx context.Context, c *libcontainer.Container, pid int, o DumpOpts) error {
	// Start CRIU first: its exec and dynamic loading overlap our preparation.
	w, err := startSwrk(ctx, r.criu.Path)
	if err != nil {
		return err
	}
	defer func() {
		// After a failed request CRIU exits non-zero; the request's
		// error says more.
		if err := w.close(); err != nil {
			r.log.Debug("CRIU worker exit", "container", c.ID(), "err", err)
		}
	}()
	req, files, err := r.dumpRequest(c, pid, o)
	for _, f := range files {
		defer f.Close() // CRIU opens them through /proc/<our pid>/fd
	}
	if err != nil {
		return fmt.Errorf("prepare dump: %w", err)
	}
	// Notifications need no action: the container has no libcontainer
	// networks to detach, and nothing reads libcontainer's checkpoint mark.
	_, err = w.do(req, nil)
	return err
}

// dumpRequest builds the DUMP request and writes descriptors.json. files must
// stay open until CRIU is done.
func (r *Runtime) dumpRequest(c *libcontainer.Container, pid int, o DumpOpts) (*rpc.CriuReq, []*os.File, error) {
	cfg := c.Config()
	st, err := c.State()
	if err != nil {
		return nil, nil, fmt.Errorf("container %s state: %w", c.ID(), err)
	}
	var files []*os.File
	openDir := func(dir string) (int32, error) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return 0, err
		}
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return 0, err
		}
		files = append(files, f)
		return int32(f.Fd()), nil
	}
	imgFd, err := openDir(o.ImageDir)
	if err != nil {
		return nil, files, fmt.Errorf("image dir: %w", err)
	}
	workFd, err := openDir(o.WorkDir)
	if err != nil {
		return nil, files, fmt.Errorf("work dir: %w", err)
	}
	cgMode := rpc.CriuCgMode_IGNORE // see criuCgroupMode
	opts := &rpc.CriuOpts{
		ImagesDirFd:       proto.Int32(imgFd),
		WorkDirFd:         proto.Int32(workFd),
		LogLevel:          proto.Int32(4),
		LogFile:           proto.String("dump.log"),
		Root:              proto.String(cfg.Rootfs),
		ManageCgroups:     proto.Bool(true), // obsoleted by the mode, as libcontainer sends it
		ManageCgroupsMode: &cgMode,
		NotifyScripts:     proto.Bool(true),
		Pid:               proto.Int32(int32(pid)),
		LeaveRunning:      proto.Bool(o.LeaveRunning),
		TcpEstablished:    proto.Bool(true),
		// A connection still in the listen backlog cannot be dumped; the
		// client retries it like a lost SYN.
		TcpSkipInFlight: proto.Bool(true),
		OrphanPtsMaster: proto.Bool(true),
		ConfigFile:      proto.String(r.criuConfig),
		// No FreezeCgroup: see the top of this file.
	}
	netns := cfg.Namespaces.PathOf(configs.NEWNET)
	if netns == "" {
		return nil, files, fmt.Errorf("container %s has no netns path", c.ID())
	}
	var ns unix.Stat_t
	if err := unix.Stat(netns, &ns); err != nil {
		return nil, files, fmt.Errorf("netns %s: %w", netns, err)
	}
	opts.External = append(opts.External, fmt.Sprintf("net[%d]:%s", ns.Ino, extNetNSKey))

	addExtMnt := func(key, val string) error {
		// As libcontainer: CRIU < 4.3.1 does not escape "]:" in keys, and
		// an empty key asks CRIU to guess.
		if key == "" || strings.Contains(key, "]:") {
			return fmt.Errorf("invalid external mount destination %q", key)
		}
		opts.ExtMnt = append(opts.ExtMnt, &rpc.ExtMountMap{Key: proto.String(key), Val: proto.String(val)})
		return nil
	}
	for _, m := range cfg.Mounts {
		if m.Device == "bind" || m.Device == "cgroup" {
			// Spec makes neither; libcontainer's handling of them is
			// not reproduced here.
			return nil, files, fmt.Errorf("container %s: %s mount at %s is not supported by Dump", c.ID(), m.Device, m.Destination)
		}
	}
	// Masked files are /dev/null bind mounts (masked directories are
	// read-only tmpfs mounts, dumped as such).
	for _, p := range cfg.MaskPaths {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/root/%s", pid, p))
		if errors.Is(err, os.ErrNotExist) || (err == nil && fi.IsDir()) {
			continue
		}
		if err != nil {
			return nil, files, fmt.Errorf("mask path %s: %w", p, err)
		}
		if err := addExtMnt(p, "/dev/null"); err != nil {
			return nil, files, err
		}
	}
	// Device nodes are bind mounts of the host's.
	for _, d := range cfg.Devices {
		if d.Path == "" {
			continue // only a cgroup rule
		}
		if err := addExtMnt(d.Path, d.Path); err != nil {
			return nil, files, err
		}
	}

	fds, err := json.Marshal(st.ExternalDescriptors)
	if err != nil {
		return nil, files, err
	}
	if err := os.WriteFile(filepath.Join(o.ImageDir, descriptorsFile), fds, 0o600); err != nil {
		return nil, files, fmt.Errorf("write %s: %w", descriptorsFile, err)
	}
	return &rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: opts}, files, nil
}
