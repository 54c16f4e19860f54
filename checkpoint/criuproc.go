package checkpoint

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// criuConfigText is the CRIU config file libcontainer hands to CRIU (label
// org.criu.config). libcontainer's CriuOpts cannot choose the network lock, and
// this host has no iptables, so it goes here. Precedence: CRIU 4.2 applies
// this file OVER libcontainer's RPC options (dump.log: "Would overwrite RPC
// settings with values from ..."), so put nothing here that libcontainer sets.
// The lock itself is silent in the logs: it is an nftables table
// "inet CRIU-<run id>" in the container's netns from dump until a restore
// into that netns (verified by the tests).
const criuConfigText = `# written by capsec's checkpoint runtime; do not edit
# there is no iptables here: lock TCP connections with nftables
network-lock nftables
`

func writeCRIUConfig(path string) error {
	if cur, err := os.ReadFile(path); err == nil && string(cur) == criuConfigText {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(criuConfigText), 0o600); err != nil {
		return fmt.Errorf("write CRIU config %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write CRIU config %s: %w", path, err)
	}
	return nil
}

// criuError adds the log's path and its first real error line to a failed
// CRIU call's error.
func criuError(op string, err error, logPath string) error {
	line, lerr := firstCRIUError(logPath)
	switch {
	case lerr != nil:
		return fmt.Errorf("%s: %w (no CRIU log: %v)", op, err, lerr)
	case line == "":
		return fmt.Errorf("%s: %w (no error line in %s)", op, err, logPath)
	default:
		return fmt.Errorf("%s: %w (%s: %s)", op, err, logPath, line)
	}
}

// firstCRIUError returns the first line of a CRIU log that says "Error",
// skipping the RLIMIT_NOFILE complaint CRIU prints on every run.
func firstCRIUError(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "Error") && !strings.Contains(l, "RLIMIT_NOFILE") {
			return strings.TrimSpace(l), nil
		}
	}
	return "", sc.Err()
}

// runCRIU runs f (a libcontainer Checkpoint or Restore, which take no context)
// and kills its CRIU if ctx ends first. libcontainer starts CRIU as our child
// ("criu swrk 3"); the one that is ours holds files in imageDir or workDir.
func (r *Runtime) runCRIU(ctx context.Context, imageDir, workDir string, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dirs := []string{imageDir, workDir}
	for i, d := range dirs {
		if abs, err := filepath.Abs(d); err == nil {
			dirs[i] = abs
		}
		if real, err := filepath.EvalSymlinks(dirs[i]); err == nil {
			dirs[i] = real
		}
	}
	done := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		// Keep killing until f returns: CRIU may not have opened its dirs yet.
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			for _, pid := range criuChildren(dirs) {
				r.log.Warn("context ended, killing CRIU", "pid", pid, "err", ctx.Err())
				_ = killPid(pid)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err := f()
	close(done)
	<-watcher
	if err != nil && ctx.Err() != nil {
		// A killed CRIU leaves its cgroup yard (a tmpfs with every cgroup
		// hierarchy mounted, .criu.cgyard.*) in the work dir.
		if cerr := unmountCRIUYards(r.log, dirs); cerr != nil {
			r.log.Warn("cleaning up after killed CRIU", "err", cerr)
		}
		return fmt.Errorf("%w (CRIU killed: %w)", err, ctx.Err())
	}
	return err
}

// unmountCRIUYards lazily unmounts and removes the .criu.* mount points CRIU
// made directly in dirs.
func unmountCRIUYards(log *slog.Logger, dirs []string) error {
	// Read this thread's mount table, not /proc/self's: libcontainer leaves a
	// locked thread in a container's mount namespace, and when that is the
	// main thread, /proc/self/mountinfo shows the container's mounts. Stay on
	// one thread for the read and the unmounts.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := f[4]
		if !slices.Contains(dirs, filepath.Dir(mp)) || !strings.HasPrefix(filepath.Base(mp), ".criu.") {
			continue
		}
		log.Info("unmounting what a killed CRIU left", "mount", mp)
		// MNT_DETACH takes the cgroup mounts below it along.
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			continue
		}
		if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// criuChildren lists our child processes that run `criu swrk` and have a file
// or their cwd under one of dirs.
func criuChildren(dirs []string) []int {
	var out []int
	for _, pid := range ourChildren() {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !slices.Contains(strings.Split(string(cmdline), "\x00"), "swrk") {
			continue
		}
		if usesDirs(pid, dirs) {
			out = append(out, pid)
		}
	}
	return out
}

func usesDirs(pid int, dirs []string) bool {
	under := func(p string) bool {
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && under(cwd) {
		return true
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && under(t) {
			return true
		}
	}
	return false
}

// ourChildren lists the children of every thread of this process.
func ourChildren() []int {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

func killPid(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return nil
}

// reapZombiesIn waits for our children that were in cgroupPath (a zombie keeps
// its cgroup in /proc/<pid>/cgroup): what a failed restore left behind. Only
// those: the agent's other children belong to their own waiters.
func reapZombiesIn(cgroupPath string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for _, pid := range ourChildren() {
			if !inCgroup(pid, cgroupPath) {
				continue
			}
			var ws unix.WaitStatus
			if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err != nil || got != pid {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inCgroup(pid int, cgroupPath string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		// hierarchy-ID:controllers:path
		if parts := strings.SplitN(l, ":", 3); len(parts) == 3 && parts[2] == cgroupPath {
			return true
		}
	}
	return false
}

// mntnsDirRE matches the temporary root CRIU makes for restoring mount
// namespaces; a killed CRIU leaves it (empty) in /tmp.
var mntnsDirRE = regexp.MustCompile(`/tmp/\.criu\.mntns\.[A-Za-z0-9]{6}`)

// removeCRIUMntnsDir removes the (empty) mntns dir named in a restore log.
func removeCRIUMntnsDir(logPath string) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	if dir := mntnsDirRE.Find(b); dir != nil {
		_ = os.Remove(string(dir)) // rmdir: only if empty, as it should be
	}
}
