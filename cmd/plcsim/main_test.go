package main

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// buildStatic builds this command the way the container image is built.
func buildStatic(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "plcsim")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBinaryIsStatic checks what a one-file container rootfs and CRIU need:
// no dynamic loader or libraries, and MPTCP off by default (see main.go).
func TestBinaryIsStatic(t *testing.T) {
	bin := buildStatic(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("binary needs shared libraries %v", libs)
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "DefaultGODEBUG" && strings.Contains(s.Value, "multipathtcp=0") {
			return
		}
	}
	t.Fatalf("binary's DefaultGODEBUG lacks multipathtcp=0: CRIU cannot dump MPTCP listeners")
}

// TestSurvivesClosedStdoutAndStopsOnSIGTERM checks the two things main
// exists for: a stdout whose reader went away must not kill the PLC (an
// agent reading the pipe may restart), and SIGTERM ends it cleanly.
func TestSurvivesClosedStdoutAndStopsOnSIGTERM(t *testing.T) {
	bin := buildStatic(t)
	addr := freePort(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", addr, "--ballast", "4", "--dirty-rate", "1")
	cmd.Stdout, cmd.Stderr = pw, pw
	// An empty environment and working directory "/": the binary must not
	// need anything from its surroundings.
	cmd.Env, cmd.Dir = []string{}, "/"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "plcsim listening") {
			break
		}
	}
	pr.Close() // from now on every log line hits a pipe without a reader

	read := func() error {
		h := modbus.NewTCPClientHandler(addr)
		h.Timeout = 2 * time.Second
		defer h.Close()
		_, err := modbus.NewClient(h).ReadHoldingRegisters(0, 2)
		return err
	}
	for i := range 3 { // each new session logs a line
		if err := read(); err != nil {
			t.Fatalf("read %d after stdout closed: %v", i, err)
		}
	}
	select {
	case err := <-exited:
		t.Fatalf("plcsim exited after its stdout reader went away: %v", err)
	case <-time.After(100 * time.Millisecond):
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("plcsim did not exit after SIGTERM")
	}
}
