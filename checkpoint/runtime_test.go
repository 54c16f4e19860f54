package checkpoint

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpecValidate(t *testing.T) {
	rootfs := t.TempDir()
	good := Spec{Name: "plc1", Rootfs: rootfs, Args: []string{"/x"}, NetNS: "/proc/self/ns/net", CgroupPath: "/capsec/a/plc1"}
	tests := []struct {
		name    string
		mutate  func(*Spec)
		wantErr string
	}{
		{"ok", func(*Spec) {}, ""},
		{"bad name", func(s *Spec) { s.Name = "Plc/1" }, "must match"},
		{"empty name", func(s *Spec) { s.Name = "" }, "must match"},
		{"relative rootfs", func(s *Spec) { s.Rootfs = "rootfs" }, "not an absolute path"},
		{"missing rootfs", func(s *Spec) { s.Rootfs = filepath.Join(rootfs, "nope") }, "no such file"},
		{"no args", func(s *Spec) { s.Args = nil }, "no Args"},
		{"no netns", func(s *Spec) { s.NetNS = "" }, "netns is required"},
		{"netns not nsfs", func(s *Spec) { s.NetNS = rootfs }, "not a namespace"},
		{"root cgroup", func(s *Spec) { s.CgroupPath = "/" }, "cgroup path"},
		{"relative cgroup", func(s *Spec) { s.CgroupPath = "capsec/x" }, "cgroup path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.mutate(&s)
			err := s.validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestLifecycle: Run → Get/List → output → Attach → Stop → Delete → gone.
func TestLifecycle(t *testing.T) {
	needRoot(t)
	ctx := t.Context()
	rootfs := buildRootfs(t)
	_, netns := newNetns(t)
	cg := cgroupPrefix(t)
	rt, err := NewRuntime(filepath.Join(t.TempDir(), "state"), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Name: "echo1", Rootfs: rootfs, Args: []string{"/echoserver"}, NetNS: netns,
		CgroupPath: cg + "/node-a/echo1", Env: []string{"FOO=bar"},
	}
	cleanupContainer(t, rt, spec.Name)

	info, out, err := rt.Run(ctx, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	lines := readLines(t, out)
	if info.Status != "running" || info.Pid <= 0 || info.NetNS != netns || info.Rootfs != rootfs {
		t.Fatalf("Run info = %+v", info)
	}
	lines.waitFor(t, "echoserver listening on", 5*time.Second)

	if _, _, err := rt.Run(ctx, spec); !errors.Is(err, ErrExists) {
		t.Fatalf("second Run: %v, want ErrExists", err)
	}
	got, err := rt.Get(spec.Name)
	if err != nil || got.Pid != info.Pid || got.Status != "running" {
		t.Fatalf("Get = %+v, %v; want running pid %d", got, err, info.Pid)
	}
	list, err := rt.List()
	if err != nil || len(list) != 1 || list[0].Name != spec.Name {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if ppid := parentOf(t, info.Pid); ppid != os.Getpid() {
		t.Errorf("container init's parent is %d, want us (%d)", ppid, os.Getpid())
	}
	if cg := readFile(t, "/proc/"+itoa(info.Pid)+"/cgroup"); !strings.Contains(cg, spec.CgroupPath) {
		t.Errorf("init not in cgroup %s:\n%s", spec.CgroupPath, cg)
	}

	att, err := rt.Attach(spec.Name)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	att.Close()

	if err := rt.Delete(ctx, spec.Name); !errors.Is(err, ErrRunning) {
		t.Fatalf("Delete while running: %v, want ErrRunning", err)
	}
	start := time.Now()
	if err := rt.Stop(ctx, spec.Name); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %v", time.Since(start))
	lines.waitFor(t, "exiting", 2*time.Second)
	if _, err := io.ReadAll(out); err != nil {
		t.Logf("read after stop: %v", err)
	}
	if got, err := rt.Get(spec.Name); err != nil || got.Status != "stopped" || got.Pid != 0 {
		t.Fatalf("Get after Stop = %+v, %v", got, err)
	}
	if _, err := os.Stat("/proc/" + itoa(info.Pid)); err == nil {
		t.Errorf("pid %d still exists after Stop (zombie?)", info.Pid)
	}
	if err := rt.Stop(ctx, spec.Name); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("second Stop: %v, want ErrNotRunning", err)
	}
	if _, err := rt.Attach(spec.Name); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Attach to stopped: %v, want ErrNotRunning", err)
	}
	if err := rt.Delete(ctx, spec.Name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := rt.Get(spec.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if list, err := rt.List(); err != nil || len(list) != 0 {
		t.Fatalf("List after Delete = %+v, %v", list, err)
	}
	if err := rt.Delete(ctx, spec.Name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/pids", spec.CgroupPath)); err == nil {
		t.Errorf("cgroup %s left behind", spec.CgroupPath)
	}
	assertNoZombies(t)
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	for _, l := range strings.Split(readFile(t, "/proc/"+itoa(pid)+"/status"), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			n, _ := atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no PPid for %d", pid)
	return 0
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
