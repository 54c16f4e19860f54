package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/capsec/capsec/plcsim"
	"github.com/capsec/capsec/probe"
)

func buildProbe(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "mbprobe")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func servePLC(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := plcsim.New(plcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := plcsim.Serve(ctx, p, plcsim.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-done
	})
	return srv.Addr()
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestExitCodes(t *testing.T) {
	bin := buildProbe(t)
	plc := servePLC(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"clean strict run", []string{"--target", plc, "--duration", "300ms", "--strict"}, 0, "session kept: yes"},
		{"never connected", []string{"--target", closed, "--duration", "100ms"}, 1, "session kept: no"},
		{"missing target", []string{"--duration", "100ms"}, 2, ""},
		{"marker too big", []string{"--target", plc, "--marker", "70000"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(bin, tt.args...)
			cmd.Stdout = &out
			if code := exitCode(cmd.Run()); code != tt.code {
				t.Fatalf("exit code %d, want %d; stdout:\n%s", code, tt.code, out.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Fatalf("stdout lacks %q:\n%s", tt.stdout, out.String())
			}
		})
	}
}

// TestSIGINTPrintsReport runs "until signalled" and checks the report so
// far comes out as JSON on stdout.
func TestSIGINTPrintsReport(t *testing.T) {
	bin := buildProbe(t)
	plc := servePLC(t)
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "--target", plc, "--duration", "0", "--json", "-", "--marker", "4242")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, errOut.String())
		}
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("mbprobe did not stop on SIGINT")
	}
	var r probe.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, out.String())
	}
	if r.Marker != 4242 || r.Successes == 0 || len(r.LocalPorts) != 1 || !r.MarkerIntact {
		t.Fatalf("report %+v", r)
	}
	if !strings.Contains(errOut.String(), "session kept: yes") {
		t.Fatalf("table not on stderr:\n%s", errOut.String())
	}
}
