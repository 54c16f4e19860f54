package probe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capsec/capsec/plcsim"
)

// plcHarness runs a real plcsim PLC and server in-process. The server can
// be stopped and started again on the same port around the same PLC state.
type plcHarness struct {
	t    *testing.T
	ctx  context.Context
	plc  *plcsim.PLC
	addr string

	mu  sync.Mutex
	srv *plcsim.Server
}

func startPLC(t *testing.T) *plcHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := plcsim.New(plcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := &plcHarness{t: t, ctx: ctx, plc: p, addr: "127.0.0.1:0"}
	h.serve()
	h.addr = h.srv.Addr()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		h.stop()
		if err := <-done; err != nil {
			t.Errorf("scan loop: %v", err)
		}
	})
	return h
}

func (h *plcHarness) serve() {
	h.t.Helper()
	srv, err := plcsim.Serve(h.ctx, h.plc, plcsim.Config{Listen: h.addr, Logger: testLogger(h.t)})
	if err != nil {
		h.t.Error(err) // Error, not Fatal: also called from helper goroutines
		return
	}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
}

func (h *plcHarness) stop() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Close(); err != nil {
		h.t.Errorf("close server: %v", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// relay forwards TCP between the probe and the PLC and can hold back the
// PLC's replies, which looks to the probe like a frozen PLC.
type relay struct {
	ln     net.Listener
	target string
	hold   sync.RWMutex // write-locked while replies are held

	mu    sync.Mutex
	conns []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	go r.accept()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Close()
		}
	})
	return r
}

func (r *relay) accept() {
	for {
		down, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", r.target)
		if err != nil {
			down.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, down, up)
		r.mu.Unlock()
		go r.pipe(up, down, down, false)
		go r.pipe(down, up, up, true)
	}
}

// pipe copies src to dst; replies (held) wait while the relay is held.
func (r *relay) pipe(dst io.Writer, src io.Reader, closeDst net.Conn, held bool) {
	defer closeDst.Close()
	buf := make([]byte, 512)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if held {
			r.hold.RLock()
			r.hold.RUnlock()
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (r *relay) holdFor(d time.Duration) {
	r.hold.Lock()
	time.Sleep(d)
	r.hold.Unlock()
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func TestRegisterMapMatchesPLC(t *testing.T) {
	pairs := []struct {
		name        string
		probe, plcs int
	}{
		{"scan hi", regScanHi, plcsim.RegScanHi},
		{"scan lo", regScanLo, plcsim.RegScanLo},
		{"marker", regMarker, plcsim.RegMarker},
		{"tank level", inRegTankLevel, plcsim.InRegTankLevel},
		{"tank max", tankMax, plcsim.TankMax},
		{"scan period", int(DefaultScanPeriod), int(plcsim.ScanPeriod)},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if p.probe != p.plcs {
				t.Fatalf("probe uses %d, plcsim defines %d", p.probe, p.plcs)
			}
		})
	}
	if numInRegs > plcsim.NumInputRegisters {
		t.Fatalf("probe reads %d input registers, plcsim has %d", numInRegs, plcsim.NumInputRegisters)
	}
}

func TestRunSteady(t *testing.T) {
	t.Parallel()
	h := startPLC(t)
	r, err := Run(context.Background(), Config{Target: h.addr, Duration: time.Second, Marker: 0xabcd, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Reconnects != 0 || len(r.LocalPorts) != 1 || r.Violations != 0 || !r.MarkerIntact {
		t.Fatalf("report %+v: want 0 errors, 0 reconnects, 1 port, 0 violations, marker intact", r)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if r.Requests < 50 || r.Successes != r.Requests {
		t.Fatalf("%d requests, %d successes: want about 100, all successful", r.Requests, r.Successes)
	}
	// About 100 scans per second of wall time.
	rate := float64(r.LastScan-r.FirstScan) / (r.DurationMs / 1000)
	if rate < 60 || rate > 130 {
		t.Fatalf("scan counter %d -> %d in %.0f ms: %.0f/s, want about 100/s", r.FirstScan, r.LastScan, r.DurationMs, rate)
	}
	if r.Marker != 0xabcd || r.LatencyP50Ms <= 0 || r.LatencyMaxMs < r.LatencyP99Ms || r.LargestGapMs <= 0 {
		t.Fatalf("report %+v: marker, latency or gap figures implausible", r)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"session kept: yes (1 TCP session, 0 errors, 0 reconnects)", "state continuous: yes", "marker intact"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestRunServerRestartCountsReconnect(t *testing.T) {
	t.Parallel()
	h := startPLC(t)
	go func() {
		time.Sleep(300 * time.Millisecond)
		h.stop()
		time.Sleep(200 * time.Millisecond)
		h.serve()
	}()
	r, err := Run(context.Background(), Config{Target: h.addr, Duration: 1200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors < 1 || r.Reconnects < 1 || len(r.LocalPorts) < 2 || r.LocalPorts[0] == r.LocalPorts[1] {
		t.Fatalf("report %+v: want errors, a reconnect and a second local port", r)
	}
	// The PLC itself kept running: its state is continuous across sessions.
	if r.Violations != 0 || !r.MarkerIntact || r.LargestGapMs < 150 {
		t.Fatalf("report %+v: want no violations, marker intact, a gap of about 200 ms", r)
	}
	if err := r.Check(); err == nil || !strings.Contains(err.Error(), "reconnects") {
		t.Fatalf("Check = %v, want it to name the reconnects", err)
	}
}

func TestRunFreezeKeepsSession(t *testing.T) {
	t.Parallel()
	h := startPLC(t)
	rl := startRelay(t, h.addr)
	go func() {
		time.Sleep(300 * time.Millisecond)
		rl.holdFor(400 * time.Millisecond)
	}()
	r, err := Run(context.Background(), Config{Target: rl.addr(), Duration: 1200 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(); err != nil {
		t.Fatalf("Check: %v (report %+v)", err, r)
	}
	if r.LargestGapMs < 380 || r.LatencyMaxMs < 380 {
		t.Fatalf("largest gap %.0f ms, max latency %.0f ms: want about 400", r.LargestGapMs, r.LatencyMaxMs)
	}
}

func TestRunTimeoutReconnects(t *testing.T) {
	t.Parallel()
	h := startPLC(t)
	rl := startRelay(t, h.addr)
	go func() {
		time.Sleep(300 * time.Millisecond)
		rl.holdFor(500 * time.Millisecond)
	}()
	r, err := Run(context.Background(), Config{Target: rl.addr(), Duration: 1300 * time.Millisecond,
		Timeout: 150 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors < 1 || r.Reconnects < 1 || len(r.LocalPorts) < 2 {
		t.Fatalf("report %+v: want a timeout, a reconnect, a second session", r)
	}
	// After the drop the probe must be in step again: replies succeed and
	// nothing stale is taken for a reading.
	if r.Violations != 0 || !r.MarkerIntact || r.Successes < 30 {
		t.Fatalf("report %+v: want no violations and polling resumed", r)
	}
	if !strings.Contains(strings.Join(r.FirstErrors, "\n"), "timeout") {
		t.Fatalf("first errors %q: want a timeout", r.FirstErrors)
	}
}

func TestRunNeverConnected(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := Run(context.Background(), Config{Target: addr, Duration: 200 * time.Millisecond, Interval: 20 * time.Millisecond})
	if !errors.Is(err, ErrNeverConnected) {
		t.Fatalf("err = %v, want ErrNeverConnected", err)
	}
	if r.Requests == 0 || r.Errors != r.Requests || r.Reconnects != 0 || len(r.LocalPorts) != 0 {
		t.Fatalf("report %+v: want only failed connects", r)
	}
	if err := r.Check(); err == nil || !strings.Contains(err.Error(), "never connected") {
		t.Fatalf("Check = %v, want never connected", err)
	}
}

func TestRunUntilCancelled(t *testing.T) {
	t.Parallel()
	h := startPLC(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	r, err := Run(ctx, Config{Target: h.addr, Duration: 0})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Run took %v after cancel at 300ms", took)
	}
	if r.Successes == 0 || r.Errors != 0 {
		t.Fatalf("report %+v: want successes and no errors from the cancel", r)
	}
}

func TestConfigRejected(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no target", Config{}},
		{"negative interval", Config{Target: "127.0.0.1:1", Interval: -1}},
		{"negative timeout", Config{Target: "127.0.0.1:1", Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.cfg); err == nil || errors.Is(err, ErrNeverConnected) {
				t.Fatalf("err = %v, want a config error", err)
			}
		})
	}
}

func TestReportCheck(t *testing.T) {
	good := Report{Target: "t", LocalPorts: []int{1000}, Requests: 10, Successes: 10, MarkerIntact: true}
	tests := []struct {
		name   string
		edit   func(*Report)
		want   string // "" = passes
		verdic string
	}{
		{"clean", func(*Report) {}, "", "session kept: yes (1 TCP session, 0 errors, 0 reconnects)"},
		{"errors", func(r *Report) { r.Errors = 2 }, "2 errors", "session kept: no"},
		{"reconnect", func(r *Report) { r.Reconnects, r.LocalPorts = 1, []int{1000, 1001} }, "2 TCP sessions", "session kept: no (2 TCP sessions"},
		{"violation", func(r *Report) { r.Violations = 1 }, "1 state violations", "state continuous: no"},
		{"never connected", func(r *Report) { r.LocalPorts, r.Successes, r.MarkerIntact = []int{}, 0, false }, "never connected", "session kept: no (0 TCP sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.edit(&r)
			err := r.Check()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
			var b strings.Builder
			if err := r.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tt.verdic) {
				t.Fatalf("table lacks %q:\n%s", tt.verdic, b.String())
			}
		})
	}
}
