package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// criuCgroupMode keeps CRIU away from cgroups. Dumping them means mounting
// every hierarchy in a yard and reading each controller's properties while
// the container is frozen (~25 ms here), and restoring them mounts the yard
// again (~15 ms). Nothing is lost: libcontainer moves the restoring CRIU into
// the new container's cgroups and applies the Spec's resources before CRIU
// forks the tree, and the restored tasks inherit those cgroups.
const criuCgroupMode = "ignore"

// DumpOpts says where a dump goes.
type DumpOpts struct {
	ImageDir     string // CRIU images (the agent mounts a tmpfs here); created 0700 if missing
	WorkDir      string // dump.log goes here; created 0700 if missing
	LeaveRunning bool   // keep the container running after the dump (else CRIU kills it)
}

// DumpResult describes a finished dump.
type DumpResult struct {
	Duration   time.Duration // the CRIU call, freeze to images written
	ImageBytes int64         // total size of the files in ImageDir
	Log        string        // path of dump.log

	// Frozen is how long the container's tasks were stopped by the dump, by
	// CRIU's own clock (stats-dump): from the start of the freeze until CRIU
	// killed them (or let them run on, with LeaveRunning). It is the dump's
	// share of a move's downtime. Zero if CRIU wrote no stats.
	Frozen time.Duration
	// Freezing is the part of Frozen spent stopping the tasks.
	Freezing time.Duration
}

// RestoreOpts says where a restore comes from.
type RestoreOpts struct {
	ImageDir string // images made by Dump (copied from the source node)
	WorkDir  string // restore.log goes here; created 0700 if missing
	// NetnsReady runs from CRIU's "setup-namespaces" notification: the
	// container's root task exists and has joined the netns; no socket is
	// restored yet (that follows "post-setup-namespaces", ~20 ms later here).
	// An error aborts the restore.
	//
	// CAUTION: CRIU 4.2.1 does NOT lock an external netns on restore (it only
	// locks on dump, and removes that dump's lock table at the end of a
	// restore into the same netns). Making the IP reachable here lets peers'
	// segments hit a netns without the sockets, and the kernel answers RST.
	// Make the address reachable after Restore returns (peers retransmit), or
	// install your own drop rules first.
	NetnsReady func() error
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Duration time.Duration // the CRIU call, start to restored tree running
	Log      string        // path of restore.log
}

// Dump checkpoints a running container with its established TCP connections.
// Its netns is external (it has a path), so CRIU leaves it alone; its TCP
// connections are locked with nftables (see writeCRIUConfig). Without
// LeaveRunning the container's processes are gone when Dump returns and its
// state stays (Status "stopped") until Delete.
func (r *Runtime) Dump(ctx context.Context, name string, o DumpOpts) (DumpResult, error) {
	if r.criu == nil {
		return DumpResult{}, fmt.Errorf("dump %s: %w", name, errNoCRIU)
	}
	if o.ImageDir == "" || o.WorkDir == "" {
		return DumpResult{}, fmt.Errorf("dump %s: ImageDir and WorkDir are required", name)
	}
	c, err := r.load(name)
	if err != nil {
		return DumpResult{}, err
	}
	info, err := infoOf(c)
	if err != nil {
		return DumpResult{}, err
	}
	if info.Pid == 0 {
		return DumpResult{}, fmt.Errorf("dump %s: %w", name, ErrNotRunning)
	}
	res := DumpResult{Log: filepath.Join(o.WorkDir, "dump.log")}
	start := time.Now()
	err = r.runCRIU(ctx, o.ImageDir, o.WorkDir, func() error { return r.criuDump(ctx, c, info.Pid, o) })
	res.Duration = time.Since(start)
	if err != nil {
		err = criuError("dump "+name, err, res.Log)
		if ctx.Err() != nil {
			// CRIU stops the tasks with ptrace, and they run on when it
			// dies; a cgroup-frozen container (Pause) is thawed here too.
			if tc, lerr := r.load(name); lerr == nil {
				if st, _ := tc.Status(); st == libcontainer.Paused {
					if rerr := tc.Resume(); rerr != nil {
						err = fmt.Errorf("%w; thawing it failed too: %w", err, rerr)
					}
				}
			}
		}
		return res, err
	}
	res.ImageBytes = dirSize(o.ImageDir)
	if freezing, frozen, err := dumpTimes(o.WorkDir, o.ImageDir); err != nil {
		r.log.Warn("no CRIU dump times", "name", name, "err", err)
	} else {
		res.Freezing, res.Frozen = freezing, freezing+frozen
	}
	if !o.LeaveRunning {
		// CRIU killed the tree; wait until our reaper has collected init so
		// nothing of it remains when the caller restores.
		if err := r.waitReaped(ctx, name, info.Pid); err != nil {
			return res, fmt.Errorf("dump %s: %w", name, err)
		}
	}
	r.log.Info("container dumped", "name", name, "duration", res.Duration, "frozen", res.Frozen, "bytes", res.ImageBytes, "leave_running", o.LeaveRunning)
	return res, nil
}

// Restore creates container s.Name from images and resumes it, with its TCP
// connections, in s.NetNS (which must already have the dumped container's IP
// and MAC). Runtime root, CgroupPath, Rootfs path and NetNS path may all
// differ from the dumped container's. The reader is the new output pipe. On
// failure nothing of s.Name is left behind.
func (r *Runtime) Restore(ctx context.Context, s Spec, o RestoreOpts) (Info, io.ReadCloser, RestoreResult, error) {
	res := RestoreResult{Log: filepath.Join(o.WorkDir, "restore.log")}
	if r.criu == nil {
		return Info{}, nil, res, fmt.Errorf("restore %s: %w", s.Name, errNoCRIU)
	}
	if o.ImageDir == "" || o.WorkDir == "" {
		return Info{}, nil, res, fmt.Errorf("restore %s: ImageDir and WorkDir are required", s.Name)
	}
	if err := s.validate(); err != nil {
		return Info{}, nil, res, err
	}
	if fi, err := os.Stat(o.ImageDir); err != nil {
		return Info{}, nil, res, fmt.Errorf("restore %s: images: %w", s.Name, err)
	} else if !fi.IsDir() {
		return Info{}, nil, res, fmt.Errorf("restore %s: images %s is not a directory", s.Name, o.ImageDir)
	}
	cfg := libcontainerConfig(s, r.criuConfig)
	netnsReadyCalled := false
	if o.NetnsReady != nil {
		// libcontainer runs CreateRuntime hooks at CRIU's "setup-namespaces"
		// notification. This hook exists only on the config used for this
		// restore (and is not saved in state.json), so Run never fires it.
		cfg.Hooks = configs.Hooks{configs.CreateRuntime: {configs.NewFunctionHook(func(*specs.State) error {
			netnsReadyCalled = true
			if err := o.NetnsReady(); err != nil {
				return fmt.Errorf("NetnsReady: %w", err)
			}
			return nil
		})}}
	}
	c, err := libcontainer.Create(r.root, s.Name, cfg)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return Info{}, nil, res, fmt.Errorf("container %s: %w", s.Name, ErrExists)
		}
		return Info{}, nil, res, fmt.Errorf("create container %s for restore: %w", s.Name, err)
	}
	st, err := newStdio()
	if err != nil {
		_ = c.Destroy()
		return Info{}, nil, res, fmt.Errorf("restore %s: %w", s.Name, err)
	}
	p := &libcontainer.Process{
		Args:   s.Args,
		Env:    processEnv(s.Env),
		Stdin:  st.inR,
		Stdout: st.outW,
		Stderr: st.outW,
		Init:   true,
	}
	opts := &libcontainer.CriuOpts{
		ImagesDirectory:   o.ImageDir,
		WorkDirectory:     o.WorkDir,
		TcpEstablished:    true,
		StatusFd:          -1,
		ManageCgroupsMode: criuCgroupMode,
	}
	start := time.Now()
	err = r.runCRIU(ctx, o.ImageDir, o.WorkDir, func() error { return c.Restore(p, opts) })
	res.Duration = time.Since(start)
	if err == nil && o.NetnsReady != nil && !netnsReadyCalled {
		// libcontainer swallows errors from preparing the hook's state and then
		// skips the hooks; the agent relies on this call, so treat it as failure.
		err = errors.New("NetnsReady was not called during restore (libcontainer skipped the setup-namespaces hook)")
	}
	if err != nil {
		err = criuError("restore "+s.Name, err, res.Log)
		st.closeAll()
		removeCRIUMntnsDir(res.Log)
		if cerr := r.cleanupFailedRestore(c, s); cerr != nil {
			err = fmt.Errorf("%w; cleanup: %w", err, cerr)
		}
		return Info{}, nil, res, err
	}
	out := st.started()
	pid, _ := p.Pid()
	r.reap(s.Name, pid, p)
	info, err := infoOf(c)
	if err != nil {
		return Info{}, out, res, fmt.Errorf("container %s restored: %w", s.Name, err)
	}
	r.log.Info("container restored", "name", s.Name, "pid", info.Pid, "duration", res.Duration, "cgroup", s.CgroupPath)
	return info, out, res, nil
}

// cleanupFailedRestore kills whatever CRIU left in the container's cgroup,
// reaps those of them that are our children, and removes the state and cgroups.
func (r *Runtime) cleanupFailedRestore(c *libcontainer.Container, s Spec) error {
	if pids, err := c.Processes(); err == nil {
		for _, pid := range pids {
			_ = killPid(pid)
		}
	}
	reapZombiesIn(s.CgroupPath, 2*time.Second)
	var errs []error
	if err := c.Destroy(); err != nil {
		errs = append(errs, fmt.Errorf("destroy %s: %w", s.Name, err))
	}
	// Destroy keeps a state dir it never finished; make sure none is left.
	if err := os.RemoveAll(filepath.Join(r.root, s.Name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
