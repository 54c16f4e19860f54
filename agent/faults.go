package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Faults injects failures so that tests can prove a move survives them.
// Only tests set it (capsec-agent --test-fault); it is plain data in the
// agent's Config, never process-wide state.
type Faults struct {
	// Pause holds the agent this long at a named point of a move:
	// "send-checkpoint" (source, before the images go out),
	// "receive-checkpoint" (destination, before it takes them),
	// "restore" (destination, inside CRIU's restore, before the plug),
	// "cleanup" (source, after the destination committed, before the
	// source forgets the container).
	Pause map[string]time.Duration
	// CorruptCheckpoint flips one byte of the checkpoint in transit.
	CorruptCheckpoint bool
}

// ParseFault reads one --test-fault value: "pause:POINT=DURATION" or
// "corrupt-checkpoint".
func (f *Faults) Parse(v string) error {
	switch {
	case v == "corrupt-checkpoint":
		f.CorruptCheckpoint = true
		return nil
	case strings.HasPrefix(v, "pause:"):
		point, d, ok := strings.Cut(strings.TrimPrefix(v, "pause:"), "=")
		dur, err := time.ParseDuration(d)
		if !ok || err != nil {
			return fmt.Errorf("fault %q: want pause:POINT=DURATION", v)
		}
		switch point {
		case "send-checkpoint", "receive-checkpoint", "restore", "cleanup":
		default:
			return fmt.Errorf("fault %q: unknown point %q", v, point)
		}
		if f.Pause == nil {
			f.Pause = map[string]time.Duration{}
		}
		f.Pause[point] = dur
		return nil
	}
	return fmt.Errorf("unknown fault %q (pause:POINT=DURATION or corrupt-checkpoint)", v)
}

func (a *Agent) pauseAt(ctx context.Context, point string) {
	d := a.cfg.Faults.Pause[point]
	if d == 0 {
		return
	}
	a.log.Warn("test fault: pausing", "point", point, "for", d)
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// corrupter returns the transfer hook that flips one byte of the first
// memory pages file, or nil.
func (a *Agent) corrupter() func(string, int64, []byte) {
	if !a.cfg.Faults.CorruptCheckpoint {
		return nil
	}
	var once sync.Once
	return func(path string, off int64, b []byte) {
		if strings.HasPrefix(path, "pages-") && len(b) > 0 {
			once.Do(func() {
				b[0] ^= 0xff
				a.log.Warn("test fault: flipped a byte in transit", "file", path, "offset", off)
			})
		}
	}
}
