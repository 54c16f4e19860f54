package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/capsec/capsec/probe"
)

// requireRoot skips unless the environment opts in to tests that need root,
// network namespaces and CRIU.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("CAPSEC_TEST_ROOT") != "1" {
		t.Skip("needs root, netns and CRIU: set CAPSEC_TEST_ROOT=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("CAPSEC_TEST_ROOT=1 but not running as root")
	}
}

// criuPath is the project's CRIU wrapper unless CAPSEC_CRIU names another.
func criuPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CAPSEC_CRIU")
	if p == "" {
		p = "/opt/capsec/criu/bin/criu"
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("CRIU not installed at %s (set CAPSEC_CRIU): %v", p, err)
	}
	return p
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// TestCRIUKeepsProbeSession checkpoints and restores a running plcsim with
// its established Modbus session, using the real CRIU, while mbprobe polls
// it from a second namespace; the probe must see one session, no error and
// continuous state. It is what makes the binary fit for live migration.
func TestCRIUKeepsProbeSession(t *testing.T) {
	requireRoot(t)
	criu := criuPath(t)
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	plcBin := buildStatic(t)
	dir := t.TempDir()
	probeBin := filepath.Join(dir, "mbprobe")
	mustRun(t, "go", "build", "-o", probeBin, "../mbprobe")

	// Two namespaces joined by a veth pair, so that no 10.77 address appears
	// outside namespaces this test owns.
	id := strconv.Itoa(os.Getpid())
	plcNS, hmiNS := "capsec-plcsim-"+id, "capsec-hmi-"+id
	vethPLC, vethHMI := "cps"+id+"p", "cps"+id+"h"
	mustRun(t, "ip", "netns", "add", plcNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", plcNS).Run() })
	mustRun(t, "ip", "netns", "add", hmiNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", hmiNS).Run() })
	mustRun(t, "ip", "link", "add", vethPLC, "netns", plcNS, "type", "veth", "peer", "name", vethHMI, "netns", hmiNS)
	mustRun(t, "ip", "-n", plcNS, "addr", "add", "10.77.251.2/30", "dev", vethPLC)
	mustRun(t, "ip", "-n", hmiNS, "addr", "add", "10.77.251.1/30", "dev", vethHMI)
	for _, ns := range []struct{ ns, dev string }{{plcNS, vethPLC}, {plcNS, "lo"}, {hmiNS, vethHMI}, {hmiNS, "lo"}} {
		mustRun(t, "ip", "-n", ns.ns, "link", "set", ns.dev, "up")
	}
	inNS := func(ns string, args ...string) *exec.Cmd {
		// nsenter switches only the network namespace: CRIU and plcsim
		// must share every other namespace, or CRIU tries to dump it too.
		return exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, args...)...)
	}

	logFile, err := os.Create(filepath.Join(dir, "plc.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	plc := inNS(plcNS, plcBin, "--listen", "10.77.251.2:5020", "--ballast", "32", "--dirty-rate", "8")
	plc.Stdout, plc.Stderr = logFile, logFile
	plc.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling tty for CRIU to worry about
	if err := plc.Start(); err != nil {
		t.Fatal(err)
	}
	pid := plc.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- plc.Wait() }()
	// The restored process is not our child: end it by pid, whatever happened.
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	time.Sleep(500 * time.Millisecond)

	reportPath := filepath.Join(dir, "report.json")
	prb := inNS(hmiNS, probeBin, "--target", "10.77.251.2:5020", "--duration", "4s", "--json", reportPath, "--strict")
	var prbOut bytes.Buffer
	prb.Stdout, prb.Stderr = &prbOut, &prbOut
	if err := prb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prb.Process.Kill() })
	time.Sleep(time.Second)

	img := filepath.Join(dir, "img")
	if err := os.Mkdir(img, 0o700); err != nil {
		t.Fatal(err)
	}
	criuCmd := func(action string, extra ...string) {
		args := append([]string{criu, action, "-D", img, "--tcp-established", "--network-lock", "nftables",
			"-o", action + ".log", "-v4"}, extra...)
		if out, err := inNS(plcNS, args...).CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(img, action+".log"))
			t.Fatalf("criu %s: %v\n%s\n%s", action, err, out, tailLines(log, 30))
		}
	}
	start := time.Now()
	criuCmd("dump", "-t", strconv.Itoa(pid))
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("plcsim still running after criu dump")
	}
	time.Sleep(300 * time.Millisecond) // a freeze the probe must ride out
	criuCmd("restore", "-d")
	t.Logf("dump + pause + restore took %v", time.Since(start).Round(time.Millisecond))

	if err := prb.Wait(); err != nil {
		t.Fatalf("mbprobe --strict: %v\n%s", err, prbOut.String())
	}
	b, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	var r probe.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	t.Logf("probe:\n%s", prbOut.String())
	if !r.SessionKept() || r.Violations != 0 || !r.MarkerIntact || r.LargestGapMs < 300 || r.ScanDeficitMs < 250 {
		t.Fatalf("report %+v: want one kept session, continuous state, a gap and scan deficit of at least ~300 ms", r)
	}

	// The restored PLC still stops cleanly on SIGTERM.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM restored plcsim: %v", err)
	}
	if err := waitGone(context.Background(), pid, 3*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitGone waits for pid to exit; it is not our child, so poll /proc.
func waitGone(ctx context.Context, pid int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || bytes.Contains(stat, []byte(") Z ")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pid %d still running %v after SIGTERM", pid, limit)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tailLines(b []byte, n int) []byte {
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
