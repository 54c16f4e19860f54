package plcsim

import (
	"testing"
	"time"
)

func TestProcessAutoHysteresis(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	scansPerSec := int(time.Second / ScanPeriod)
	// Empty tank, pump off: fills until AutoStartLevel.
	fillScans := AutoStartLevel * scansPerSec / FillRate
	for range fillScans - 1 {
		p.step()
	}
	if s := p.Snapshot(); s.PumpRunning || s.TankLevel >= AutoStartLevel {
		t.Fatalf("after %d scans: %+v, want pump off below %d", fillScans-1, s, AutoStartLevel)
	}
	p.step()
	p.step()
	if s := p.Snapshot(); !s.PumpRunning || s.PumpStarts != 1 {
		t.Fatalf("at start level: %+v, want pump running, 1 start", s)
	}
	// Drains down to AutoStopLevel, then the pump stops and it fills again.
	drainScans := (AutoStartLevel - AutoStopLevel) * scansPerSec / DrainRate
	for range drainScans + 2 {
		p.step()
	}
	s := p.Snapshot()
	if s.PumpRunning || s.TankLevel > AutoStopLevel+5 {
		t.Fatalf("after draining: %+v, want pump off near %d", s, AutoStopLevel)
	}
	if want := uint32(fillScans + 1 + drainScans + 2); s.Scan != want {
		t.Fatalf("scan counter %d, want %d (one per step)", s.Scan, want)
	}
}

func TestProcessHandMode(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	p.coils[CoilAuto] = false
	p.coils[CoilPumpCmd] = true
	p.levelMilli = 500 * 1000
	p.step()
	if s := p.Snapshot(); !s.PumpRunning || s.TankLevel >= 500 || s.Auto {
		t.Fatalf("hand mode, pump commanded on: %+v", s)
	}
	p.coils[CoilPumpCmd] = false
	for range 1000 {
		p.step()
	}
	if s := p.Snapshot(); s.PumpRunning || s.TankLevel <= 500 {
		t.Fatalf("hand mode, pump commanded off: %+v", s)
	}
	p.levelMilli = TankMax * 1000
	p.step()
	if s := p.Snapshot(); s.TankLevel != TankMax {
		t.Fatalf("level %d, want clamped at %d", s.TankLevel, TankMax)
	}
}

func TestBallast(t *testing.T) {
	tests := []struct {
		name    string
		mib     int
		rate    float64
		wantNil bool
		wantErr bool
	}{
		{name: "none", mib: 0, wantNil: true},
		{name: "static", mib: 1},
		{name: "dirtying", mib: 1, rate: 4},
		{name: "negative size", mib: -1, wantErr: true},
		{name: "negative rate", mib: 1, rate: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newBallast(tt.mib, tt.rate)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr || tt.wantNil {
				if b != nil {
					t.Fatalf("got a ballast, want none")
				}
				return
			}
			if len(b.buf) != tt.mib<<20 {
				t.Fatalf("ballast %d bytes, want %d", len(b.buf), tt.mib<<20)
			}
			for off := 0; off < len(b.buf); off += b.page {
				if b.buf[off] == 0 && b.buf[off+1] == 0 && b.buf[off+2] == 0 {
					t.Fatalf("page at %d looks untouched", off)
				}
			}
			// 100 ms at the rate dirties rate/10 MiB worth of pages.
			before := append([]byte(nil), b.buf...)
			b.dirty(time.Second) // capped to maxDirtyStep
			changed := 0
			for off := 0; off < len(b.buf); off += b.page {
				if string(before[off:off+8]) != string(b.buf[off:off+8]) {
					changed++
				}
			}
			want := int(tt.rate * float64(1<<20) / float64(b.page) * maxDirtyStep.Seconds())
			if changed != want {
				t.Fatalf("dirtied %d pages, want %d", changed, want)
			}
		})
	}
}
