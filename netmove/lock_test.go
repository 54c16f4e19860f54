package netmove

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestLockDropsInsteadOfReset checks what the lock is for: a plugged,
// locked endpoint with no listener must drop a SYN (the client times out)
// where an unlocked one answers with a reset (connection refused).
func TestLockDropsInsteadOfReset(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newLab(t)
	ha := l.hostA()
	id, err := ParseIdentity("10.199.5.50/24", "", "")
	must(t, err, "identity")
	ep, err := on(t, l.nodeA, func() (*Endpoint, error) { return ha.Prepare(ctx, "plc1", id) })
	must(t, err, "prepare")
	t.Cleanup(func() { _, _ = on(t, l.nodeA, func() (any, error) { return nil, ha.Destroy(ep) }) })

	must(t, Lock(ctx, ep), "lock")
	if ok, err := Locked(ctx, ep); err != nil || !ok {
		t.Fatalf("Locked after Lock = %v, %v", ok, err)
	}
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Plug(ep) })
	must(t, err, "plug")
	must(t, Announce(ctx, ep), "announce")

	_, err = l.dial(t, "10.199.5.50:7777", 300*time.Millisecond)
	if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("locked: dial err %v; want a timeout (dropped), not a reset", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("locked: dial err %v; want a timeout", err)
	}

	must(t, Unlock(ctx, ep), "unlock")
	must(t, Unlock(ctx, ep), "unlock again (idempotent)")
	if ok, err := Locked(ctx, ep); err != nil || ok {
		t.Fatalf("Locked after Unlock = %v, %v", ok, err)
	}
	_, err = l.dial(t, "10.199.5.50:7777", time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("unlocked: dial err %v; want connection refused", err)
	}
}
