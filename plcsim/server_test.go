package plcsim

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/goburrow/modbus"
)

// startPLC serves a fresh PLC on a free loopback port, with the scan loop
// running, and stops both when the test ends.
func startPLC(t *testing.T) (*PLC, *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Serve(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("scan loop: %v", err)
		}
	})
	return p, srv
}

func client(t *testing.T, addr string, unit byte) modbus.Client {
	t.Helper()
	h := modbus.NewTCPClientHandler(addr)
	h.Timeout = 2 * time.Second
	h.SlaveId = unit
	if err := h.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return modbus.NewClient(h)
}

func exceptionCode(err error) byte {
	var me *modbus.ModbusError
	if errors.As(err, &me) {
		return me.ExceptionCode
	}
	return 0
}

func TestServerRegisterAccess(t *testing.T) {
	_, srv := startPLC(t)
	c := client(t, srv.Addr(), 7)
	tests := []struct {
		name    string
		op      func() error
		wantExc byte // 0 = success
	}{
		{"write marker", func() error { _, err := c.WriteSingleRegister(RegMarker, 0xbeef); return err }, 0},
		{"write scan hi", func() error { _, err := c.WriteSingleRegister(RegScanHi, 1); return err }, modbus.ExceptionCodeIllegalDataAddress},
		{"write scan lo", func() error { _, err := c.WriteSingleRegister(RegScanLo, 1); return err }, modbus.ExceptionCodeIllegalDataAddress},
		{"multi write over scan", func() error {
			_, err := c.WriteMultipleRegisters(RegScanLo, 2, []byte{0, 1, 0, 2})
			return err
		}, modbus.ExceptionCodeIllegalDataAddress},
		{"multi write free", func() error {
			_, err := c.WriteMultipleRegisters(20, 2, []byte{0, 1, 0, 2})
			return err
		}, 0},
		{"read past end", func() error { _, err := c.ReadHoldingRegisters(NumHoldingRegisters-1, 2); return err }, modbus.ExceptionCodeIllegalDataAddress},
		{"write coil", func() error { _, err := c.WriteSingleCoil(5, 0xff00); return err }, 0},
		{"coil past end", func() error { _, err := c.ReadCoils(NumCoils, 1); return err }, modbus.ExceptionCodeIllegalDataAddress},
		{"input past end", func() error { _, err := c.ReadInputRegisters(NumInputRegisters-1, 2); return err }, modbus.ExceptionCodeIllegalDataAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if got := exceptionCode(err); got != tt.wantExc || (tt.wantExc == 0 && err != nil) {
				t.Fatalf("err = %v (exception %d), want exception %d", err, got, tt.wantExc)
			}
		})
	}

	// What was written is kept, and a rejected write changed nothing.
	regs, err := c.ReadHoldingRegisters(0, 22)
	if err != nil {
		t.Fatal(err)
	}
	word := func(i int) uint16 { return uint16(regs[2*i])<<8 | uint16(regs[2*i+1]) }
	if word(RegMarker) != 0xbeef || word(20) != 1 || word(21) != 2 {
		t.Fatalf("registers 10, 20, 21 = %#x, %d, %d; want 0xbeef, 1, 2", word(RegMarker), word(20), word(21))
	}
	coils, err := client(t, srv.Addr(), 0).ReadCoils(0, 8)
	if err != nil {
		t.Fatal(err)
	}
	if want := byte(1<<CoilAuto | 1<<5); coils[0] != want {
		t.Fatalf("coils 0..7 = %08b, want %08b", coils[0], want)
	}
}

func TestServerScanCounterAdvances(t *testing.T) {
	_, srv := startPLC(t)
	// A different unit id on each client: all address the same PLC.
	read := func(unit byte) uint32 {
		regs, err := client(t, srv.Addr(), unit).ReadHoldingRegisters(RegScanHi, 2)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(regs[0])<<24 | uint32(regs[1])<<16 | uint32(regs[2])<<8 | uint32(regs[3])
	}
	first := read(1)
	time.Sleep(300 * time.Millisecond)
	second := read(255)
	if d := second - first; d < 15 || d > 45 {
		t.Fatalf("scan counter %d -> %d in 300ms, want about +30", first, second)
	}
}

func TestServerCloseAndRestartSamePort(t *testing.T) {
	p, srv := startPLC(t)
	c := client(t, srv.Addr(), 0)
	if _, err := c.WriteSingleRegister(RegMarker, 42); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	// A new server over the same PLC keeps its state.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv2, err := Serve(ctx, p, Config{Listen: srv.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	regs, err := client(t, srv2.Addr(), 0).ReadHoldingRegisters(RegMarker, 1)
	if err != nil {
		t.Fatal(err)
	}
	if regs[1] != 42 {
		t.Fatalf("marker after restart = %v, want 42", regs)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Listen: "127.0.0.1:0"}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := Run(context.Background(), Config{Listen: "no-port"}); err == nil {
		t.Fatal("Run with a bad address succeeded")
	}
}
