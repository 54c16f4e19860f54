package plcsim

import (
	"log/slog"
	"sync"
	"time"
)

// clientTracker logs client sessions starting and ending. simonvetter/modbus
// v1.6.4 offers no connection hooks (it owns the listener and the accept
// loop), so a session is inferred from requests: its first request from a
// new address (ip:port, hence one per TCP session) logs "client connected",
// and a session that has been quiet for the idle timeout is logged gone at
// the moment the library itself closes it. A client that closes cleanly is
// therefore reported gone only after the idle timeout.
type clientTracker struct {
	log  *slog.Logger
	idle time.Duration

	mu   sync.Mutex
	seen map[string]*clientSession
}

type clientSession struct {
	since    time.Time
	last     time.Time
	requests uint64
}

func newClientTracker(log *slog.Logger, idle time.Duration) *clientTracker {
	return &clientTracker{log: log, idle: idle, seen: make(map[string]*clientSession)}
}

func (t *clientTracker) touch(addr string) {
	now := time.Now()
	t.mu.Lock()
	s, ok := t.seen[addr]
	if !ok {
		s = &clientSession{since: now}
		t.seen[addr] = s
	}
	s.last = now
	s.requests++
	n := len(t.seen)
	t.mu.Unlock()
	if !ok {
		t.log.Info("client connected", "client", addr, "sessions", n)
	}
}

// sweep forgets sessions quiet for longer than the idle timeout.
func (t *clientTracker) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, s := range t.seen {
		if quiet := now.Sub(s.last); quiet >= t.idle {
			delete(t.seen, addr)
			t.log.Info("client disconnected", "client", addr, "reason", "idle timeout",
				"quiet", quiet.Round(time.Millisecond), "requests", s.requests,
				"session", s.last.Sub(s.since).Round(time.Millisecond))
		}
	}
}

// closeAll forgets every session, when the server stops and closes them.
func (t *clientTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, s := range t.seen {
		delete(t.seen, addr)
		t.log.Info("client disconnected", "client", addr, "reason", "server stopped",
			"requests", s.requests, "session", s.last.Sub(s.since).Round(time.Millisecond))
	}
}
