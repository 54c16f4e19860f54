package netmove

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

const plcAddr = "10.199.5.50:5020"

func TestMove(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l := newLab(t)
	ha, hb := l.hostA(), l.hostB()
	id, err := ParseIdentity("10.199.5.50/24", "", "10.199.5.1")
	must(t, err, "identity")

	// 1. Prepare and plug on A: the client reaches it.
	epA, err := on(t, l.nodeA, func() (*Endpoint, error) { return ha.Prepare(ctx, "plc1", id) })
	must(t, err, "prepare A")
	t.Cleanup(func() { _, _ = on(t, l.nodeA, func() (any, error) { return nil, ha.Destroy(epA) }) })
	if plugged, err := on(t, l.nodeA, func() (bool, error) { return ha.Plugged(epA) }); err != nil || plugged {
		t.Fatalf("after Prepare: plugged=%v err=%v, want host end down and off the bridge", plugged, err)
	}
	serve(t, epA.NetNS, plcAddr, "A")
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Plug(epA) })
	must(t, err, "plug A")
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Plug(epA) })
	must(t, err, "plug A again (idempotent)")
	must(t, Announce(ctx, epA), "announce A")
	if tag, err := l.dial(t, plcAddr, 2*time.Second); err != nil || tag != "A" {
		t.Fatalf("client -> A: tag %q err %v", tag, err)
	}
	// 4. The connection just opened is counted in A's netns.
	if n, err := EstablishedTCP(epA.NetNS); err != nil || n != 1 {
		t.Errorf("EstablishedTCP(A) = %d, %v; want 1", n, err)
	}

	// InUse from node B sees A's MAC, and nothing for a free address.
	mac, err := on(t, l.nodeB, func() ([]byte, error) { return hb.InUse(ctx, netip.MustParseAddr("10.199.5.50")) })
	if err != nil || string(mac) != string(id.MAC) {
		t.Errorf("InUse(.50) from B = %x, %v; want %s", mac, err, id.MAC)
	}
	start := time.Now()
	mac, err = on(t, l.nodeB, func() ([]byte, error) { return hb.InUse(ctx, netip.MustParseAddr("10.199.5.77")) })
	if err != nil || mac != nil {
		t.Errorf("InUse(.77) = %x, %v; want nil, nil", mac, err)
	}
	t.Logf("InUse of a free address took %v", time.Since(start).Round(time.Millisecond))

	// 2. Prepare the same identity on B: host end down, A still answers.
	epB, err := on(t, l.nodeB, func() (*Endpoint, error) { return hb.Prepare(ctx, "plc1", id) })
	must(t, err, "prepare B")
	t.Cleanup(func() { _, _ = on(t, l.nodeB, func() (any, error) { return nil, hb.Destroy(epB) }) })
	serve(t, epB.NetNS, plcAddr, "B")
	if tag, err := l.dial(t, plcAddr, 2*time.Second); err != nil || tag != "A" {
		t.Fatalf("with B prepared, client -> %q err %v; want A", tag, err)
	}
	if n, err := EstablishedTCP(epB.NetNS); err != nil || n != 0 {
		t.Errorf("EstablishedTCP(B) = %d, %v; want 0", n, err)
	}

	// The move.
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Unplug(epA) })
	must(t, err, "unplug A")
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Unplug(epA) })
	must(t, err, "unplug A again (idempotent)")
	plugAt := time.Now()
	_, err = on(t, l.nodeB, func() (any, error) { return nil, hb.Plug(epB) })
	must(t, err, "plug B")
	must(t, Announce(ctx, epB), "announce B")
	announced := time.Since(plugAt)
	var reached time.Duration
	for time.Since(plugAt) < 3*time.Second {
		tag, err := l.dial(t, plcAddr, 100*time.Millisecond)
		if err == nil && tag == "B" {
			reached = time.Since(plugAt)
			break
		}
		if err == nil {
			t.Fatalf("after move, client reached %q", tag)
		}
	}
	if reached == 0 {
		t.Fatal("client never reached B within 3s of Plug")
	}
	t.Logf("move: Plug+Announce took %v; first TCP connect to B %v after Plug", announced.Round(time.Microsecond), reached.Round(time.Microsecond))
	if reached > time.Second {
		t.Errorf("client reached B after %v; want within 1s", reached)
	}
	for range 3 {
		if tag, err := l.dial(t, plcAddr, time.Second); err != nil || tag != "B" {
			t.Fatalf("after move, client -> %q err %v; want B", tag, err)
		}
	}
	if p, err := on(t, l.nodeA, func() (bool, error) { return ha.Plugged(epA) }); err != nil || p {
		t.Errorf("A plugged=%v err=%v after Unplug", p, err)
	}

	// 3. Lookup rebuilds the same Endpoint; List finds it; Prepare twice fails.
	for _, c := range []struct {
		name string
		h    Host
		node func() (*Endpoint, error)
		want *Endpoint
	}{
		{"A", ha, func() (*Endpoint, error) { return ha.Lookup("plc1") }, epA},
		{"B", hb, func() (*Endpoint, error) { return hb.Lookup("plc1") }, epB},
	} {
		t.Run("lookup "+c.name, func(t *testing.T) {
			got, err := c.node()
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("Lookup = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	list, err := hb.List()
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], epB) {
		t.Errorf("List(B) = %+v, %v; want [%+v]", list, err, epB)
	}
	if _, err := on(t, l.nodeB, func() (*Endpoint, error) { return hb.Prepare(ctx, "plc1", id) }); !errors.Is(err, ErrExists) {
		t.Errorf("second Prepare err = %v, want ErrExists", err)
	}
	if _, err := os.Lstat(epB.NetNS); err != nil {
		t.Errorf("failed second Prepare removed the existing netns: %v", err)
	}
}

func TestDestroy(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	l := newLab(t)
	h := l.hostA()
	id, err := ParseIdentity("10.199.5.60/24", "", "")
	must(t, err, "identity")

	tests := []struct {
		name  string
		setup func(t *testing.T) // makes (partial) state for "plc"
	}{
		{"prepared and plugged", func(t *testing.T) {
			ep, err := on(t, l.nodeA, func() (*Endpoint, error) { return h.Prepare(ctx, "plc", id) })
			must(t, err, "prepare")
			_, err = on(t, l.nodeA, func() (any, error) { return nil, h.Plug(ep) })
			must(t, err, "plug")
		}},
		{"netns only (half-made)", func(t *testing.T) {
			ep, _ := h.endpoint("plc")
			ns, err := newNamedNS(ep.NetNS)
			must(t, err, "netns")
			ns.Close()
			if _, err := h.Lookup("plc"); !errors.Is(err, ErrIncomplete) {
				t.Errorf("Lookup of half-made = %v, want ErrIncomplete", err)
			}
			if list, err := h.List(); err != nil || len(list) != 1 || list[0].Identity.IP.IsValid() {
				t.Errorf("List = %+v, %v; want one endpoint with zero identity", list, err)
			}
		}},
		{"mount point only (half-made)", func(t *testing.T) {
			ep, _ := h.endpoint("plc")
			must(t, os.WriteFile(ep.NetNS, nil, 0o444), "mount point")
			if _, err := h.Lookup("plc"); !errors.Is(err, ErrIncomplete) {
				t.Errorf("Lookup of bare mount point = %v, want ErrIncomplete", err)
			}
		}},
		{"nothing", func(*testing.T) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep := &Endpoint{Name: "plc"} // Destroy needs only the name
			full, _ := h.endpoint("plc")
			t.Cleanup(func() { _, _ = on(t, l.nodeA, func() (any, error) { return nil, h.Destroy(ep) }) })
			tc.setup(t)
			for i := range 2 {
				if _, err := on(t, l.nodeA, func() (any, error) { return nil, h.Destroy(ep) }); err != nil {
					t.Fatalf("Destroy #%d: %v", i+1, err)
				}
			}
			assertGone(t, l.nodeA, full)
			if _, err := h.Lookup("plc"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup after Destroy = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestPrepareFails(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	l := newLab(t)
	id, err := ParseIdentity("10.199.5.70/24", "", "")
	must(t, err, "identity")
	tests := []struct {
		name string
		h    Host
		want error
	}{
		{"no bridge", Host{Bridge: "capsec-nobr", NSPrefix: l.prefix + "-c-a-"}, ErrNotFound},
		{"bridge is not a bridge", Host{Bridge: "lo", NSPrefix: l.prefix + "-c-a-"}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ep, _ := tc.h.endpoint("plc")
			_, err := on(t, l.nodeA, func() (*Endpoint, error) { return tc.h.Prepare(ctx, "plc", id) })
			if !errors.Is(err, tc.want) {
				t.Errorf("Prepare err = %v, want %v", err, tc.want)
			}
			assertGone(t, l.nodeA, ep)
		})
	}
	// A cancelled context stops Prepare before it makes anything.
	h := l.hostA()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ep, _ := h.endpoint("plc")
	if _, err := on(t, l.nodeA, func() (*Endpoint, error) { return h.Prepare(cctx, "plc", id) }); !errors.Is(err, context.Canceled) {
		t.Errorf("Prepare with cancelled ctx err = %v", err)
	}
	assertGone(t, l.nodeA, ep)
}

// TestMoveNeedsAnnounce proves it is the gratuitous ARP, not some incidental
// frame, that moves the fabric's FDB entry to node B.
func TestMoveNeedsAnnounce(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	l := newLab(t)
	ha, hb := l.hostA(), l.hostB()
	id, err := ParseIdentity("10.199.5.51/24", "", "")
	must(t, err, "identity")
	const addr = "10.199.5.51:5020"
	nodes := []struct {
		h   Host
		ns  netns.NsHandle
		tag string
	}{{ha, l.nodeA, "A"}, {hb, l.nodeB, "B"}}
	eps := make([]*Endpoint, len(nodes))
	for i, n := range nodes {
		ep, err := on(t, n.ns, func() (*Endpoint, error) { return n.h.Prepare(ctx, "plc2", id) })
		must(t, err, "prepare "+n.tag)
		t.Cleanup(func() { _, _ = on(t, n.ns, func() (any, error) { return nil, n.h.Destroy(ep) }) })
		serve(t, ep.NetNS, addr, n.tag)
		eps[i] = ep
	}
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Plug(eps[0]) })
	must(t, err, "plug A")
	must(t, Announce(ctx, eps[0]), "announce A")
	if tag, err := l.dial(t, addr, 2*time.Second); err != nil || tag != "A" {
		t.Fatalf("client -> %q, %v; want A", tag, err)
	}
	_, err = on(t, l.nodeA, func() (any, error) { return nil, ha.Unplug(eps[0]) })
	must(t, err, "unplug A")
	_, err = on(t, l.nodeB, func() (any, error) { return nil, hb.Plug(eps[1]) })
	must(t, err, "plug B")
	if tag, err := l.dial(t, addr, 500*time.Millisecond); err == nil {
		t.Fatalf("without Announce the client reached %q; want the fabric still pointing at A", tag)
	}
	must(t, Announce(ctx, eps[1]), "announce B")
	if tag, err := l.dial(t, addr, 2*time.Second); err != nil || tag != "B" {
		t.Fatalf("after Announce client -> %q, %v; want B", tag, err)
	}
}
