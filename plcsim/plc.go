package plcsim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Config configures a PLC and its Modbus server. The zero value is usable
// apart from Listen, which Serve and Run need.
type Config struct {
	// Listen is the Modbus TCP address, host:port ("127.0.0.1:0" picks a free port).
	Listen string
	// BallastMiB is extra memory the process allocates and keeps resident,
	// so that migrations can be measured against a memory size.
	BallastMiB int
	// DirtyRateMiBps is how much of the ballast is rewritten per second
	// (0 = written once at start, never again).
	DirtyRateMiBps float64
	// IdleTimeout closes a client session that sends nothing for this long
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxClients caps concurrent client sessions (default DefaultMaxClients).
	MaxClients uint
	// Logger receives start, session and ballast lines (default: discard).
	Logger *slog.Logger
}

// Defaults for Config.
const (
	// DefaultIdleTimeout is long compared with any expected migration freeze,
	// so that a session is never closed for being quiet while the PLC was frozen.
	DefaultIdleTimeout = 2 * time.Minute
	DefaultMaxClients  = 16
)

// PLC is the simulated controller: its memory image and its scan loop. It
// is separate from the Modbus server so that a server can be stopped and
// started again around the same state.
type PLC struct {
	log     *slog.Logger
	ballast *ballast

	mu         sync.Mutex
	scan       uint32
	holding    [NumHoldingRegisters]uint16
	coils      [NumCoils]bool
	levelMilli int32 // tank level in thousandths of a level unit
	pump       bool
	pumpStarts uint16
}

// State is a consistent copy of the PLC's process values.
type State struct {
	Scan        uint32
	TankLevel   int
	PumpRunning bool
	PumpStarts  uint16
	Auto        bool
}

// New builds a PLC with an empty tank, auto mode on, and the configured
// ballast allocated and resident.
func New(cfg Config) (*PLC, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := newBallast(cfg.BallastMiB, cfg.DirtyRateMiBps)
	if err != nil {
		return nil, fmt.Errorf("plc ballast of %d MiB: %w", cfg.BallastMiB, err)
	}
	if b != nil {
		log.Info("ballast resident", "mib", cfg.BallastMiB, "dirty_mib_per_s", cfg.DirtyRateMiBps)
	}
	p := &PLC{log: log, ballast: b}
	p.coils[CoilAuto] = true
	return p, nil
}

// Run executes a scan cycle every ScanPeriod until ctx ends. It returns nil
// when ctx ends: stopping is the normal way out.
func (p *PLC) Run(ctx context.Context) error {
	t := time.NewTicker(ScanPeriod)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			p.step()
			if p.ballast != nil {
				p.ballast.dirty(now.Sub(last))
			}
			last = now
		}
	}
}

// step is one scan cycle: read inputs, run the logic, write outputs.
func (p *PLC) step() {
	const (
		fillPerScan  = int32(FillRate * 1000 * ScanPeriod / time.Second)
		drainPerScan = int32(DrainRate * 1000 * ScanPeriod / time.Second)
	)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.scan++

	level := p.levelMilli / 1000
	want := p.coils[CoilPumpCmd]
	if p.coils[CoilAuto] {
		// Hysteresis between the two set points; in between, keep running state.
		switch {
		case level >= AutoStartLevel:
			want = true
		case level <= AutoStopLevel:
			want = false
		default:
			want = p.pump
		}
	}
	if want && !p.pump {
		p.pumpStarts++
	}
	p.pump = want

	if p.pump {
		p.levelMilli -= drainPerScan
	} else {
		p.levelMilli += fillPerScan
	}
	p.levelMilli = min(max(p.levelMilli, 0), TankMax*1000)
}

// Snapshot returns the current process values.
func (p *PLC) Snapshot() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{
		Scan:        p.scan,
		TankLevel:   int(p.levelMilli / 1000),
		PumpRunning: p.pump,
		PumpStarts:  p.pumpStarts,
		Auto:        p.coils[CoilAuto],
	}
}
