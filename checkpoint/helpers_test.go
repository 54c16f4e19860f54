package checkpoint

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// libcontainer re-executes /proc/self/exe init to become the container's
	// init; nsenter's C constructor has already joined the namespaces.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	if os.Getenv("CAPSEC_TEST_ROOT") == "1" {
		// As the agent does: orphans of our descendants come to us.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// needRoot skips unless CAPSEC_TEST_ROOT=1 (and we are root).
func needRoot(t testing.TB) {
	t.Helper()
	if os.Getenv("CAPSEC_TEST_ROOT") != "1" {
		t.Skip("needs root, netns, cgroups and CRIU: set CAPSEC_TEST_ROOT=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("CAPSEC_TEST_ROOT=1 but not running as root")
	}
}

// needCRIU finds CRIU the way the agent does, skipping if it is not installed.
func needCRIU(t testing.TB) *CRIU {
	t.Helper()
	c, err := FindCRIU(t.Context(), "")
	if err != nil {
		t.Skipf("no usable CRIU (run `make deps`): %v", err)
	}
	t.Logf("CRIU %s at %s: %+v", c.VersionString, c.Path, *c)
	return c
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildRootfs compiles testdata/echoserver statically into a fresh rootfs
// holding only /echoserver and empty mount points.
func buildRootfs(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", filepath.Join(root, "echoserver"), "./testdata/echoserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build echoserver: %v\n%s", err, out)
	}
	return root
}

// copyRootfs copies a flat test rootfs to another path (a "destination node").
func copyRootfs(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "rootfs-copy")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v: %s", err, out)
	}
	return dst
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns makes a named netns with lo up; removed at cleanup.
func newNetns(t testing.TB) (name, path string) {
	t.Helper()
	name = "capsec-ck-" + randHex(t, 4)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/run/netns/" + name
}

// newVethNetns makes a netns joined to ours by a veth: hostIP/30 here,
// nsIP/30 on eth0 inside.
func newVethNetns(t testing.TB, hostIP, nsIP string) (path string) {
	t.Helper()
	name, path := newNetns(t)
	host := "ckv" + randHex(t, 4)
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "addr", "add", hostIP+"/30", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "-n", name, "addr", "add", nsIP+"/30", "dev", "eth0")
	run(t, "ip", "-n", name, "link", "set", "eth0", "up")
	return path
}

// cgroupPrefix returns a unique cgroup prefix whose directories in every v1
// hierarchy are removed at cleanup.
func cgroupPrefix(t testing.TB) string {
	t.Helper()
	prefix := "/capsec-test-" + randHex(t, 4)
	t.Cleanup(func() {
		ctrls, _ := os.ReadDir("/sys/fs/cgroup")
		for _, c := range ctrls {
			base := filepath.Join("/sys/fs/cgroup", c.Name(), prefix)
			var dirs []string
			_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = os.Remove(dirs[i]) // rmdir; cgroup files vanish with it
			}
		}
	})
	return prefix
}

// mountTmpfs mounts a tmpfs (like the agent's image dir); unmounted at cleanup.
func mountTmpfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "images")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// cleanupContainer stops and deletes name if a test left it behind.
func cleanupContainer(t testing.TB, r *Runtime, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if info, err := r.Get(name); err == nil {
			if info.Pid != 0 {
				_ = r.Stop(ctx, name)
			}
			if err := r.Delete(ctx, name); err != nil {
				t.Errorf("cleanup delete %s: %v", name, err)
			}
		}
	})
}

// lineReader reads lines from a container's output in the background.
type lineReader struct{ lines chan string }

func readLines(t testing.TB, r io.ReadCloser) *lineReader {
	lr := &lineReader{lines: make(chan string, 100)}
	t.Cleanup(func() { r.Close() })
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
	}()
	return lr
}

// waitFor returns the first line containing want, or fails after timeout.
func (lr *lineReader) waitFor(t testing.TB, want string, timeout time.Duration) string {
	t.Helper()
	tm := time.After(timeout)
	for {
		select {
		case l, ok := <-lr.lines:
			if !ok {
				t.Fatalf("output ended before a line with %q", want)
			}
			if strings.Contains(l, want) {
				return l
			}
		case <-tm:
			t.Fatalf("no output line with %q within %v", want, timeout)
		}
	}
}

// zombieChildren lists our children that are zombies.
func zombieChildren() []int {
	var out []int
	for _, pid := range ourChildren() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// state is the field after "(comm)".
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// assertNoZombies fails if a child of ours stays a zombie for a second.
func assertNoZombies(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		z := zombieChildren()
		if len(z) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("zombie children left: %v", z)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) (int, error) { return strconv.Atoi(s) }
