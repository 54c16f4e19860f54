package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Down removes everything Up made, and whatever a crashed or killed run
// left: agents, containers, probes, mounts, cgroups, namespaces, links and
// state. It works from what it finds on the host, not from a record of what
// was made, so it is idempotent and safe after a kill -9 of anything.
func Down(ctx context.Context, log *slog.Logger) error {
	var errs []error
	killAgents(log)
	// Everything still running in a capsec namespace belongs to the lab:
	// containers in their netns, probes in the HMI's.
	for _, ns := range labNetns() {
		for _, pid := range netnsPids(ns) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	killCgroups()
	waitGone(2 * time.Second)
	removeCgroups()
	for _, m := range mountsUnder(Root) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	for _, ns := range labNetns() {
		if err := ip(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range labLinks() {
		if err := ip(ctx, "link", "delete", l); err != nil && linkExists(l) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(Root); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		log.Info("lab down")
	}
	return errors.Join(errs...)
}

// agentPids finds lab agents by pid file and by command line, so that an
// agent whose pid file was lost is found too.
func agentPids() []int {
	seen := map[int]bool{}
	files, _ := filepath.Glob(filepath.Join(Root, "*", "agent.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isAgent(pid) {
			seen[pid] = true
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if isAgent(pid) {
			seen[pid] = true
		}
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

func isAgent(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 0 && filepath.Base(args[0]) == "capsec-agent" && strings.Contains(string(b), Root+"/")
}

func killAgents(log *slog.Logger) {
	pids := agentPids()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for time.Now().Before(deadline) && syscall.Kill(p, 0) == nil && isAgent(p) {
			time.Sleep(50 * time.Millisecond)
		}
		if isAgent(p) {
			log.Warn("agent ignored SIGTERM; killing", "pid", p)
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

func labNetns() []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if isLabName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// isLabName says whether a namespace or link name is one the lab (or an
// agent it started) makes. Other capsec- names, such as a package's own
// test namespaces, are not the lab's to remove.
func isLabName(n string) bool {
	for _, p := range []string{HMINetns, Fabric, "capsec-node-", "capsec-c-node-", "capsec-up-"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// netnsPids lists the processes whose network namespace is ns.
func netnsPids(ns string) []int {
	var st unix.Stat_t
	if unix.Stat(filepath.Join("/run/netns", ns), &st) != nil {
		return nil
	}
	var out []int
	links, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, l := range links {
		var ps unix.Stat_t
		if unix.Stat(l, &ps) == nil && ps.Ino == st.Ino && ps.Dev == st.Dev {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(l))))
			out = append(out, pid)
		}
	}
	return out
}

// cgroupDirs lists the lab's cgroup directories, deepest first.
func cgroupDirs() []string {
	var out []string
	// Agents put containers in /capsec/<node>/<name>.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/capsec/node-*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/capsec/node-*")
	roots = append(roots, v2...)
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func killCgroups() {
	for _, d := range cgroupDirs() {
		// A frozen container ignores SIGKILL until thawed.
		os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0o644)
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func removeCgroups() {
	// A killed task leaves its cgroup a moment after the signal; retry
	// until the directories go or the deadline passes.
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := 0
		for _, d := range cgroupDirs() {
			if os.Remove(d) != nil {
				left++
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
		killCgroups()
		time.Sleep(50 * time.Millisecond)
	}
	// The shared parent goes too once no one else uses it.
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/capsec")
	for _, p := range append(parents, "/sys/fs/cgroup/capsec") {
		os.Remove(p)
	}
}

func waitGone(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		busy := false
		for _, ns := range labNetns() {
			if len(netnsPids(ns)) > 0 {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func labLinks() []string {
	ents, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range ents {
		if isLabName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	// Veth ends first; deleting one end removes its peer.
	sort.Slice(out, func(i, j int) bool { return out[i] != Fabric && out[j] == Fabric })
	return out
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// Leftovers lists what of the lab still exists on the host; empty after a
// clean Down.
func Leftovers() []string {
	var out []string
	for _, ns := range labNetns() {
		out = append(out, "netns "+ns)
	}
	for _, l := range labLinks() {
		out = append(out, "link "+l)
	}
	for _, p := range agentPids() {
		out = append(out, fmt.Sprintf("agent pid %d", p))
	}
	for _, d := range cgroupDirs() {
		out = append(out, "cgroup "+d)
	}
	for _, m := range mountsUnder(Root) {
		out = append(out, "mount "+m)
	}
	if _, err := os.Stat(Root); err == nil {
		out = append(out, "dir "+Root)
	}
	return out
}
