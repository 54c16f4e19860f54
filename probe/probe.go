// Package probe is the lab's HMI: it polls a plcsim PLC over one Modbus TCP
// session (github.com/goburrow/modbus) and reports whether that session and
// the PLC's state survived whatever happened meanwhile, such as a live
// migration: errors, reconnects, the local port of every TCP session, the
// largest gap between replies, latency, and continuity violations (the
// marker it wrote changed, or the scan counter went backwards or jumped).
package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/goburrow/modbus"
)

// Config configures a probe run.
type Config struct {
	// Target is the PLC's host:port.
	Target string
	// Interval between polls (default DefaultInterval).
	Interval time.Duration
	// Duration of the run; 0 runs until ctx ends.
	Duration time.Duration
	// Timeout for one request, connect included (default DefaultTimeout).
	// Keep it above the longest freeze expected, or a migration shows up
	// as an error and a reconnect.
	Timeout time.Duration
	// Marker is written to the marker register at start; 0 picks a random
	// non-zero value.
	Marker uint16
	// UnitID is the Modbus unit id sent (plcsim accepts any).
	UnitID byte
	// ScanPeriod is the PLC's scan cycle (default DefaultScanPeriod).
	ScanPeriod time.Duration
	// Logger receives session and outage lines (default: discard).
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultInterval   = 10 * time.Millisecond
	DefaultTimeout    = 5 * time.Second
	DefaultScanPeriod = 10 * time.Millisecond
)

// The part of plcsim's register map the probe relies on. It is repeated
// here rather than imported so that the HMI does not link the server
// library; a test checks the two agree.
const (
	regScanHi      = 0
	regScanLo      = 1
	regMarker      = 10
	inRegTankLevel = 0
	numInRegs      = 4
	tankMax        = 1000
	// inputEvery: one poll in this many reads the input registers instead,
	// so the session also carries a second function code.
	inputEvery = 100
)

// Run polls cfg.Target until cfg.Duration has passed or ctx ends, and
// returns what it saw. Ending by ctx is not an error. The error is
// ErrNeverConnected (wrapped) when no TCP session could be opened at all,
// with the report still filled in.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return Report{}, err
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	marker := cfg.Marker
	if marker == 0 {
		marker = uint16(rand.N(0xffff)) + 1
	}

	rec := newRecorder(cfg, marker, time.Now())
	sess := &session{ctx: ctx, target: cfg.Target, timeout: cfg.Timeout, onDial: rec.sessionOpened}
	defer sess.drop()
	defer context.AfterFunc(ctx, sess.interrupt)()

	packager := modbus.NewTCPClientHandler(cfg.Target)
	packager.SlaveId = cfg.UnitID
	client := modbus.NewClient2(packager, sess)

	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	markerWritten := false
	for n := 0; ctx.Err() == nil; n++ {
		sent := time.Now()
		var h holding
		var level uint16
		var err error
		switch {
		case !markerWritten:
			_, err = client.WriteSingleRegister(regMarker, marker)
			markerWritten = err == nil
		case n%inputEvery == 0:
			level, err = readLevel(client)
		default:
			h, err = readHolding(client)
		}
		recv := time.Now()
		switch {
		case err != nil && ctx.Err() != nil:
			// The run ended under this request: not the PLC's fault.
		case err != nil:
			rec.failure(recv, err)
			if sess.drop() {
				rec.reconnect()
			}
		default:
			rec.success(sent, recv)
			switch {
			case h.ok:
				rec.observe(sent, recv, h.scan, h.marker)
			case level > tankMax:
				rec.violation(fmt.Sprintf("tank level %d out of range 0..%d", level, tankMax))
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	r := rec.report(time.Now())
	if len(r.LocalPorts) == 0 {
		return r, fmt.Errorf("probe %s: %w", cfg.Target, ErrNeverConnected)
	}
	return r, nil
}

func withDefaults(cfg Config) (Config, error) {
	if cfg.Target == "" {
		return cfg, errors.New("probe: no target address")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ScanPeriod == 0 {
		cfg.ScanPeriod = DefaultScanPeriod
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.Duration < 0 || cfg.ScanPeriod < 0 {
		return cfg, errors.New("probe: interval, timeout, duration and scan period must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// holding is one reading of registers 0..regMarker.
type holding struct {
	ok     bool
	scan   uint32
	marker uint16
}

func readHolding(c modbus.Client) (holding, error) {
	const n = regMarker + 1
	b, err := c.ReadHoldingRegisters(regScanHi, n)
	if err != nil {
		return holding{}, fmt.Errorf("read holding registers 0..%d: %w", n-1, err)
	}
	if len(b) != 2*n {
		return holding{}, fmt.Errorf("read holding registers 0..%d: got %d bytes, want %d", n-1, len(b), 2*n)
	}
	return holding{
		ok:     true,
		scan:   uint32(binary.BigEndian.Uint16(b[2*regScanHi:]))<<16 | uint32(binary.BigEndian.Uint16(b[2*regScanLo:])),
		marker: binary.BigEndian.Uint16(b[2*regMarker:]),
	}, nil
}

func readLevel(c modbus.Client) (uint16, error) {
	b, err := c.ReadInputRegisters(0, numInRegs)
	if err != nil {
		return 0, fmt.Errorf("read input registers 0..%d: %w", numInRegs-1, err)
	}
	if len(b) != 2*numInRegs {
		return 0, fmt.Errorf("read input registers 0..%d: got %d bytes, want %d", numInRegs-1, len(b), 2*numInRegs)
	}
	return binary.BigEndian.Uint16(b[2*inRegTankLevel:]), nil
}
