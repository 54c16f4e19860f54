// Package checkpoint runs containers with runc's libcontainer and checkpoints
// and restores them with CRIU (libcontainer drives CRIU's swrk RPC).
//
// Who waits for what (no zombies):
//   - Run and Restore start a goroutine that waits for the container's init.
//     After Run, init is our direct child (runc's nsexec clones it with
//     CLONE_PARENT); after Restore, libcontainer asks CRIU for --restore-sibling,
//     so the restored init is also our direct child. That goroutine reaps it
//     when it exits: stopped, crashed, or killed by CRIU after a dump.
//   - libcontainer waits for CRIU and for runc init's intermediate processes.
//   - After a failed or cancelled restore, zombies left in the container's cgroup
//     that are our children are reaped here.
//   - A container found after an agent restart (Attach) is not our child: it was
//     reparented to the nearest subreaper (the agent sets PR_SET_CHILD_SUBREAPER)
//     or to pid 1, which reaps it. This package does not need the subreaper for
//     its own processes.
//
// Concurrency: calls on different containers may run in parallel; the caller
// (the agent's state machine) must not run two calls on the same container at once.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	// libcontainer's cgroup manager needs this to apply the devices allow-list.
	_ "github.com/opencontainers/cgroups/devices"
)

// Error classes; each is wrapped with the container's name.
var (
	ErrNotFound   = errors.New("container not found")
	ErrExists     = errors.New("container already exists")
	ErrRunning    = errors.New("container is running")
	ErrNotRunning = errors.New("container is not running")
)

// StopTimeout is how long Stop waits after SIGTERM before SIGKILL, unless the
// context ends first.
const StopTimeout = 10 * time.Second

// criuConfigName is the CRIU config file in the runtime root; see writeCRIUConfig.
const criuConfigName = "criu.conf"

// Runtime manages the containers whose libcontainer state lives under one root.
// Two agents on one host use two roots (and two cgroup path prefixes).
type Runtime struct {
	root       string
	criu       *CRIU // nil: Run/Stop/Delete work, Dump/Restore refuse
	log        *slog.Logger
	criuConfig string

	mu       sync.Mutex
	children map[string]*child // containers whose init we are waiting for
}

// child is a container init this process is the parent of.
type child struct {
	pid  int
	done chan struct{} // closed once reaped
}

// NewRuntime makes (mode 0700) and uses root as libcontainer's state directory.
// criu may be nil when checkpointing is not needed; otherwise NewRuntime puts
// it on PATH (see CRIU.UsePath) and writes the CRIU config file.
func NewRuntime(root string, criu *CRIU, log *slog.Logger) (*Runtime, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("runtime root %q is not absolute", root)
	}
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runtime root %s: %w", root, err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("runtime root %s: %w", root, err)
	}
	r := &Runtime{
		root:       root,
		criu:       criu,
		log:        log,
		criuConfig: filepath.Join(root, criuConfigName),
		children:   map[string]*child{},
	}
	if criu != nil {
		if err := criu.UsePath(filepath.Join(root, "criu-bin")); err != nil {
			return nil, err
		}
		if err := writeCRIUConfig(r.criuConfig); err != nil {
			return nil, err
		}
		// Only an optimisation (~35 ms off every dump and restore).
		if err := criu.EnsureKdatCache(context.Background()); err != nil {
			log.Warn("CRIU will probe the kernel on every run", "err", err)
		}
	}
	return r, nil
}

// Run creates and starts a container. The reader is its stdout and stderr
// (one pipe); the caller must keep draining it and close it when done.
func (r *Runtime) Run(ctx context.Context, s Spec) (Info, io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, nil, fmt.Errorf("run %s: %w", s.Name, err)
	}
	if err := s.validate(); err != nil {
		return Info{}, nil, err
	}
	c, err := libcontainer.Create(r.root, s.Name, libcontainerConfig(s, r.criuConfig))
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return Info{}, nil, fmt.Errorf("container %s: %w", s.Name, ErrExists)
		}
		return Info{}, nil, fmt.Errorf("create container %s: %w", s.Name, err)
	}
	st, err := newStdio()
	if err != nil {
		_ = c.Destroy()
		return Info{}, nil, fmt.Errorf("container %s: %w", s.Name, err)
	}
	p := &libcontainer.Process{
		Args:   s.Args,
		Env:    processEnv(s.Env),
		Cwd:    "/",
		Stdin:  st.inR,
		Stdout: st.outW,
		Stderr: st.outW,
		Init:   true,
	}
	if err := c.Run(p); err != nil {
		st.closeAll()
		_ = c.Destroy()
		return Info{}, nil, fmt.Errorf("start container %s: %w", s.Name, err)
	}
	out := st.started()
	pid, _ := p.Pid()
	r.reap(s.Name, pid, p)
	info, err := infoOf(c)
	if err != nil {
		return Info{}, out, fmt.Errorf("container %s started: %w", s.Name, err)
	}
	r.log.Info("container started", "name", s.Name, "pid", info.Pid, "cgroup", s.CgroupPath)
	return info, out, nil
}

// reap waits for a container init that is our child, so it never stays a zombie.
func (r *Runtime) reap(name string, pid int, p *libcontainer.Process) {
	ch := &child{pid: pid, done: make(chan struct{})}
	r.mu.Lock()
	r.children[name] = ch
	r.mu.Unlock()
	go func() {
		defer close(ch.done)
		ps, err := p.Wait()
		if err != nil && ps == nil {
			r.log.Warn("wait for container init", "name", name, "pid", pid, "err", err)
			return
		}
		r.log.Info("container init exited", "name", name, "pid", pid, "status", ps.String())
	}()
}

// waitReaped waits until our reaper goroutine for name's init (pid) is done, if
// we are its parent. It returns at once for processes we did not start.
func (r *Runtime) waitReaped(ctx context.Context, name string, pid int) error {
	r.mu.Lock()
	ch := r.children[name]
	r.mu.Unlock()
	if ch == nil || ch.pid != pid {
		return nil
	}
	select {
	case <-ch.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("container %s: waiting for init %d to exit: %w", name, pid, ctx.Err())
	}
}

// Attach reopens a running container's output pipe (its fd 1), e.g. after an
// agent restart. Output written while nobody held the pipe's read end is lost,
// and the workload must ignore SIGPIPE to survive that gap.
func (r *Runtime) Attach(name string) (io.ReadCloser, error) {
	c, err := r.load(name)
	if err != nil {
		return nil, err
	}
	info, err := infoOf(c)
	if err != nil {
		return nil, err
	}
	if info.Pid == 0 {
		return nil, fmt.Errorf("attach %s: %w", name, ErrNotRunning)
	}
	fd1 := fmt.Sprintf("/proc/%d/fd/1", info.Pid)
	if target, err := os.Readlink(fd1); err != nil || !strings.HasPrefix(target, "pipe:") {
		return nil, fmt.Errorf("attach %s: stdout %s is %q, not a pipe (%v)", name, fd1, target, err)
	}
	// Opening a pipe through /proc gives a new file description on the same
	// pipe; O_RDONLY makes it a read end even though fd 1 is the write end.
	f, err := os.OpenFile(fd1, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", name, err)
	}
	return f, nil
}

// Get loads the container's state from disk each time.
func (r *Runtime) Get(name string) (Info, error) {
	c, err := r.load(name)
	if err != nil {
		return Info{}, err
	}
	return infoOf(c)
}

// List returns every container under the runtime root, sorted by name.
func (r *Runtime) List() ([]Info, error) {
	ents, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", r.root, err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() || !nameRE.MatchString(e.Name()) {
			continue
		}
		if _, err := os.Stat(filepath.Join(r.root, e.Name(), "state.json")); err != nil {
			continue // not a container (e.g. criu-bin) or half-created
		}
		info, err := r.Get(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stop sends SIGTERM to init, waits up to StopTimeout (or until ctx ends), then
// SIGKILLs it (which kills the whole pid namespace). It returns when init is
// gone; stopping a stopped container is ErrNotRunning.
func (r *Runtime) Stop(ctx context.Context, name string) error {
	c, err := r.load(name)
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	switch status {
	case libcontainer.Stopped:
		return fmt.Errorf("stop %s: %w", name, ErrNotRunning)
	case libcontainer.Paused:
		// A frozen task cannot act on SIGTERM.
		if err := c.Resume(); err != nil {
			return fmt.Errorf("stop %s: thaw: %w", name, err)
		}
	}
	st, err := c.State()
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	pid := st.InitProcessPid
	if err := c.Signal(unix.SIGTERM); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("stop %s: SIGTERM: %w", name, err)
	}
	graceCtx, cancel := context.WithTimeout(ctx, StopTimeout)
	gone := r.waitGone(graceCtx, name)
	cancel()
	if !gone {
		r.log.Warn("container ignored SIGTERM, killing", "name", name, "pid", pid)
		if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("stop %s: SIGKILL: %w", name, err)
		}
		// SIGKILL cannot be ignored; give the kernel a moment even if ctx has ended.
		killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if !r.waitGone(killCtx, name) {
			return fmt.Errorf("stop %s: init %d still alive after SIGKILL", name, pid)
		}
	}
	// Don't return before our reaper has collected it: the caller may Delete or
	// Restore next.
	if err := r.waitReaped(context.WithoutCancel(ctx), name, pid); err != nil {
		return err
	}
	r.log.Info("container stopped", "name", name, "pid", pid)
	return nil
}

// waitGone polls until name's init is gone (exited or a zombie).
func (r *Runtime) waitGone(ctx context.Context, name string) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		info, err := r.Get(name)
		if err != nil || info.Pid == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// Delete removes a stopped container's state and cgroups. A running container
// is ErrRunning: Stop it first.
func (r *Runtime) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	c, err := r.load(name)
	if err != nil {
		return err
	}
	status, err := c.Status()
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if status != libcontainer.Stopped {
		return fmt.Errorf("delete %s (%s): %w", name, status, ErrRunning)
	}
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	r.mu.Lock()
	delete(r.children, name)
	r.mu.Unlock()
	r.log.Info("container deleted", "name", name)
	return nil
}

func (r *Runtime) load(name string) (*libcontainer.Container, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("container %q: %w", name, ErrNotFound)
	}
	c, err := libcontainer.Load(r.root, name)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load container %s: %w", name, err)
	}
	return c, nil
}

func infoOf(c *libcontainer.Container) (Info, error) {
	status, err := c.Status()
	if err != nil {
		return Info{}, fmt.Errorf("container %s status: %w", c.ID(), err)
	}
	st, err := c.State()
	if err != nil {
		return Info{}, fmt.Errorf("container %s state: %w", c.ID(), err)
	}
	cfg := c.Config()
	info := Info{
		Name:    c.ID(),
		Status:  status.String(),
		Created: st.Created,
		Rootfs:  cfg.Rootfs,
		NetNS:   cfg.Namespaces.PathOf(configs.NEWNET),
	}
	if status != libcontainer.Stopped {
		info.Pid = st.InitProcessPid
	}
	return info, nil
}

// stdio holds the pipes of a container's init. The container gets the read end
// of stdin (whose write end we close: it reads EOF) and the write end of one
// output pipe for both stdout and stderr. Never host files: CRIU cannot dump an
// fd that points to a file outside the container.
type stdio struct {
	inR, inW, outR, outW *os.File
}

func newStdio() (*stdio, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	return &stdio{inR: inR, inW: inW, outR: outR, outW: outW}, nil
}

// started closes our copies of the container's ends, so the reader sees EOF
// when the container exits, and returns the reader.
func (s *stdio) started() io.ReadCloser {
	s.inR.Close()
	s.inW.Close()
	s.outW.Close()
	return s.outR
}

func (s *stdio) closeAll() {
	s.inR.Close()
	s.inW.Close()
	s.outR.Close()
	s.outW.Close()
}
