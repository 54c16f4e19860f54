package netmove

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot skips tests that need root, netns and a real kernel unless
// CAPSEC_TEST_ROOT=1.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getenv("CAPSEC_TEST_ROOT") != "1" {
		t.Skip("needs root and network namespaces; set CAPSEC_TEST_ROOT=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("CAPSEC_TEST_ROOT=1 but not running as root")
	}
}

// lab is a fabric bridge with two node netns (each with bridge capsec-br
// uplinked to the fabric) and a client netns at 10.199.5.10/24.
type lab struct {
	prefix       string // "capsec-t" + 4 hex digits; every name starts with it
	nodeA, nodeB netns.NsHandle
	client       netns.NsHandle
}

const (
	labBridge = "capsec-br"
	clientIP  = "10.199.5.10/24"
)

func newLab(t *testing.T) *lab {
	t.Helper()
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	l := &lab{prefix: "capsec-t" + hex.EncodeToString(rnd[:])}
	fabric := l.netns(t, "fab")
	fh := handleAt(t, fabric)
	fabBr := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.prefix + "f"}}
	must(t, fh.LinkAdd(fabBr), "add fabric bridge")
	must(t, fh.LinkSetUp(fabBr), "fabric bridge up")

	l.nodeA, l.nodeB = l.netns(t, "na"), l.netns(t, "nb")
	for i, node := range []netns.NsHandle{l.nodeA, l.nodeB} {
		nh := handleAt(t, node)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: labBridge}}
		must(t, nh.LinkAdd(br), "add node bridge")
		must(t, nh.LinkSetUp(br), "node bridge up")
		up := l.prefix + string(rune('a'+i))
		peer := l.cable(t, fh, fabBr, up, node)
		must(t, nh.LinkSetMaster(peer(nh), br), "enslave uplink")
		must(t, nh.LinkSetUp(peer(nh)), "uplink up")
	}

	l.client = l.netns(t, "cl")
	ch := handleAt(t, l.client)
	peer := l.cable(t, fh, fabBr, l.prefix+"c", l.client)
	addr, err := netlink.ParseAddr(clientIP)
	must(t, err, "parse client addr")
	must(t, ch.AddrAdd(peer(ch), addr), "client addr")
	must(t, ch.LinkSetUp(peer(ch)), "client link up")
	lo, err := ch.LinkByName("lo")
	must(t, err, "client lo")
	must(t, ch.LinkSetUp(lo), "client lo up")
	return l
}

// cable makes a veth from the fabric bridge (end name) into ns (end
// name+"p") and returns a lookup for the far end.
func (l *lab) cable(t *testing.T, fh *netlink.Handle, fabBr netlink.Link, name string, ns netns.NsHandle) func(*netlink.Handle) netlink.Link {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p", PeerNamespace: netlink.NsFd(int(ns))}
	must(t, fh.LinkAdd(v), "add veth "+name)
	must(t, fh.LinkSetMaster(v, fabBr), "enslave "+name)
	must(t, fh.LinkSetUp(v), "up "+name)
	return func(h *netlink.Handle) netlink.Link {
		link, err := h.LinkByName(name + "p")
		must(t, err, "find "+name+"p")
		return link
	}
}

// netns creates prefix-suffix and removes it (and so everything in it) at
// cleanup.
func (l *lab) netns(t *testing.T, suffix string) netns.NsHandle {
	t.Helper()
	path := filepath.Join(netnsDir, l.prefix+"-"+suffix)
	ns, err := newNamedNS(path)
	must(t, err, "create netns")
	t.Cleanup(func() {
		ns.Close()
		if err := removeNamedNS(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

func (l *lab) hostA() Host { return Host{Bridge: labBridge, NSPrefix: l.prefix + "-c-a-"} }
func (l *lab) hostB() Host { return Host{Bridge: labBridge, NSPrefix: l.prefix + "-c-b-"} }

func handleAt(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	must(t, err, "netlink handle")
	t.Cleanup(h.Close)
	return h
}

// on runs fn on a thread inside node, as an agent in that node would.
func on[T any](t *testing.T, node netns.NsHandle, fn func() (T, error)) (T, error) {
	t.Helper()
	var v T
	err := inNS(node, func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// serve listens on addr inside the netns at nsPath and greets each
// connection with tag, keeping it open until cleanup.
func serve(t *testing.T, nsPath, addr, tag string) {
	t.Helper()
	var ln net.Listener
	must(t, inNSPath(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}), "listen in "+nsPath)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			_, _ = c.Write([]byte(tag))
		}
	}()
	// Sockets pin their netns; close them before the netns cleanups run.
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
}

// dial connects from the client netns and returns the server's tag and the
// open connection (closed at cleanup).
func (l *lab) dial(t *testing.T, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	var c net.Conn
	if err := inNS(l.client, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	return string(buf), nil
}

// assertGone checks that neither the netns mount nor the host veth remains.
func assertGone(t *testing.T, node netns.NsHandle, ep *Endpoint) {
	t.Helper()
	if _, err := os.Lstat(ep.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still present (lstat err %v)", ep.NetNS, err)
	}
	if _, err := handleAt(t, node).LinkByName(ep.HostIf); err == nil {
		t.Errorf("host veth %s still present", ep.HostIf)
	}
}
