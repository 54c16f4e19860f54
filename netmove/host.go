package netmove

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ContainerIf is the container-side interface name inside its netns.
const ContainerIf = "eth0"

// Endpoint is one container's network attachment on one node.
type Endpoint struct {
	Name     string   // container name
	NetNS    string   // path of the netns bind mount, /run/netns/<NSPrefix+Name>
	HostIf   string   // host-side veth in the node netns
	Identity Identity // IP, MAC and gateway inside the netns
}

// Host manages container endpoints on one node. The node netns is the
// calling OS thread's netns (see the package doc).
type Host struct {
	Bridge   string // bridge in the node netns, e.g. "capsec-br"
	NSPrefix string // netns name prefix, e.g. "capsec-c-node-a-"
}

// endpoint fills in the deterministic names for a container.
func (h Host) endpoint(name string) (*Endpoint, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	ns := h.NSPrefix + name
	return &Endpoint{Name: name, NetNS: filepath.Join(netnsDir, ns), HostIf: HostIfName(ns)}, nil
}

// HostIfName is the host-side veth name for a netns name: "cs" plus 10 hex
// digits of its SHA-256, so it fits IFNAMSIZ and is stable across restarts.
func HostIfName(nsName string) string {
	sum := sha256.Sum256([]byte(nsName))
	return "cs" + hex.EncodeToString(sum[:5])
}

func validName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("container name %q: must be 1-200 chars, not starting with '.' or '-': %w", name, ErrInvalid)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("container name %q: only letters, digits, '-', '_' and '.': %w", name, ErrInvalid)
		}
	}
	return nil
}

// nodeHandle opens a netlink handle in the calling thread's netns.
func nodeHandle() (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, netns.None(), fmt.Errorf("get node netns: %w", err)
	}
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, netns.None(), fmt.Errorf("netlink handle in node netns: %w", err)
	}
	return nh, ns, nil
}

// Prepare creates the container's netns and veth: inside, lo and eth0 are up
// with the identity's MAC, address and default route; the host end is left
// DOWN and off the bridge so the address is not live until Plug. On failure
// everything made is removed. ErrExists if the netns or host veth exists.
func (h Host) Prepare(ctx context.Context, name string, id Identity) (*Endpoint, error) {
	ep, err := h.endpoint(name)
	if err != nil {
		return nil, err
	}
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", name, err)
	}
	ep.Identity = id
	nh, nodeNS, err := nodeHandle()
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", name, err)
	}
	defer nodeNS.Close()
	defer nh.Close()

	// Check the bridge now: finding it missing at Plug time would be mid-move.
	br, err := nh.LinkByName(h.Bridge)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: bridge %q in node netns: %w", name, h.Bridge, notFoundLink(err))
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("prepare %s: %q is a %s, not a bridge: %w", name, h.Bridge, br.Type(), ErrInvalid)
	}
	if _, err := nh.LinkByName(ep.HostIf); err == nil {
		return nil, fmt.Errorf("prepare %s: host veth %s: %w (Destroy the leftover first)", name, ep.HostIf, ErrExists)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", name, err)
	}

	cns, err := newNamedNS(ep.NetNS)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", name, err)
	}
	defer cns.Close()
	if err := h.prepareIn(ctx, nh, nodeNS, cns, br.Attrs().MTU, ep); err != nil {
		if derr := h.destroy(nh, ep); derr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", derr))
		}
		return nil, fmt.Errorf("prepare %s: %w", name, err)
	}
	return ep, nil
}

func (h Host) prepareIn(ctx context.Context, nh *netlink.Handle, nodeNS, cns netns.NsHandle, mtu int, ep *Endpoint) error {
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: ep.HostIf, MTU: mtu},
		PeerName:         ContainerIf,
		PeerHardwareAddr: ep.Identity.MAC,
		PeerNamespace:    netlink.NsFd(int(cns)),
		PeerMTU:          uint32(mtu),
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", ep.HostIf, ContainerIf, err)
	}
	// A bridge port needs no addresses; without this it would send IPv6
	// link-local noise (MLD, RS) onto the plant network at every Plug.
	if err := inNS(nodeNS, func() error {
		return ignoreNoIPv6(writeSysctl("net/ipv6/conf/"+ep.HostIf+"/disable_ipv6", "1"))
	}); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", ep.NetNS, err)
	}
	defer ch.Close()
	lo, err := ch.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", ep.NetNS, err)
	}
	if err := ch.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", ep.NetNS, err)
	}
	eth, err := ch.LinkByName(ContainerIf)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ContainerIf, ep.NetNS, err)
	}
	// Identity is IPv4 only. With IPv6 on, eth0 would carry the same
	// link-local address on source and destination and emit MLD/RS frames at
	// carrier-up, which also teach bridges the MAC's port behind Announce's
	// back. Off, the only frames at a move are the GARPs we send.
	if err := inNS(cns, func() error {
		return ignoreNoIPv6(writeSysctl("net/ipv6/conf/"+ContainerIf+"/disable_ipv6", "1"))
	}); err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: prefixToIPNet(ep.Identity.IP)}
	if err := ch.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("add %s to %s: %w", ep.Identity.IP, ContainerIf, err)
	}
	if err := ch.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up: %w", ContainerIf, err)
	}
	if gw := ep.Identity.Gateway; gw.IsValid() {
		// ONLINK: the peer is down so the prefix route is "linkdown" until Plug.
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
		if err := ch.RouteAdd(r); err != nil {
			return fmt.Errorf("add default route via %s: %w", gw, err)
		}
	}
	return nil
}

// Plug enslaves the host end to the bridge and sets it up. Idempotent.
func (h Host) Plug(ep *Endpoint) error {
	nh, ns, err := nodeHandle()
	if err != nil {
		return fmt.Errorf("plug %s: %w", ep.Name, err)
	}
	defer ns.Close()
	defer nh.Close()
	link, err := nh.LinkByName(ep.HostIf)
	if err != nil {
		return fmt.Errorf("plug %s: host veth %s: %w", ep.Name, ep.HostIf, notFoundLink(err))
	}
	br, err := nh.LinkByName(h.Bridge)
	if err != nil {
		return fmt.Errorf("plug %s: bridge %q: %w", ep.Name, h.Bridge, notFoundLink(err))
	}
	if link.Attrs().MasterIndex != br.Attrs().Index {
		if err := nh.LinkSetMasterByIndex(link, br.Attrs().Index); err != nil {
			return fmt.Errorf("plug %s: enslave %s to %s: %w", ep.Name, ep.HostIf, h.Bridge, err)
		}
	}
	// Learning and flooding are the bridge defaults; set them explicitly so a
	// tuned bridge cannot keep the moved MAC pinned to a stale port.
	if err := nh.LinkSetLearning(link, true); err != nil {
		return fmt.Errorf("plug %s: learning on %s: %w", ep.Name, ep.HostIf, err)
	}
	if err := nh.LinkSetFlood(link, true); err != nil {
		return fmt.Errorf("plug %s: flooding on %s: %w", ep.Name, ep.HostIf, err)
	}
	if err := nh.LinkSetUp(link); err != nil {
		return fmt.Errorf("plug %s: set %s up: %w", ep.Name, ep.HostIf, err)
	}
	return nil
}

// Unplug sets the host end down and releases it from the bridge, so the
// address stops answering on this node. Idempotent; an absent veth is fine.
func (h Host) Unplug(ep *Endpoint) error {
	nh, ns, err := nodeHandle()
	if err != nil {
		return fmt.Errorf("unplug %s: %w", ep.Name, err)
	}
	defer ns.Close()
	defer nh.Close()
	link, err := nh.LinkByName(ep.HostIf)
	if err != nil {
		if errors.Is(notFoundLink(err), ErrNotFound) {
			return nil
		}
		return fmt.Errorf("unplug %s: host veth %s: %w", ep.Name, ep.HostIf, err)
	}
	// Down first: that cuts traffic at once and flushes the bridge's FDB
	// entries for this port.
	if err := nh.LinkSetDown(link); err != nil {
		return fmt.Errorf("unplug %s: set %s down: %w", ep.Name, ep.HostIf, err)
	}
	if link.Attrs().MasterIndex != 0 {
		if err := nh.LinkSetNoMaster(link); err != nil {
			return fmt.Errorf("unplug %s: release %s from bridge: %w", ep.Name, ep.HostIf, err)
		}
	}
	return nil
}

// Plugged reports whether the host end is up and enslaved to the bridge.
func (h Host) Plugged(ep *Endpoint) (bool, error) {
	nh, ns, err := nodeHandle()
	if err != nil {
		return false, fmt.Errorf("plugged %s: %w", ep.Name, err)
	}
	defer ns.Close()
	defer nh.Close()
	link, err := nh.LinkByName(ep.HostIf)
	if err != nil {
		return false, fmt.Errorf("plugged %s: host veth %s: %w", ep.Name, ep.HostIf, notFoundLink(err))
	}
	br, err := nh.LinkByName(h.Bridge)
	if err != nil {
		return false, fmt.Errorf("plugged %s: bridge %q: %w", ep.Name, h.Bridge, notFoundLink(err))
	}
	a := link.Attrs()
	return a.Flags&netFlagUp != 0 && a.MasterIndex == br.Attrs().Index, nil
}

// Destroy deletes the veth and the netns. Idempotent, and it cleans
// half-made state; only ep.Name is needed.
func (h Host) Destroy(ep *Endpoint) error {
	nh, ns, err := nodeHandle()
	if err != nil {
		return fmt.Errorf("destroy %s: %w", ep.Name, err)
	}
	defer ns.Close()
	defer nh.Close()
	if err := h.destroy(nh, ep); err != nil {
		return fmt.Errorf("destroy %s: %w", ep.Name, err)
	}
	return nil
}

func (h Host) destroy(nh *netlink.Handle, ep *Endpoint) error {
	// Recompute the names: the caller may pass only a Name (agent restart).
	want, err := h.endpoint(ep.Name)
	if err != nil {
		return err
	}
	var errs []error
	if link, err := nh.LinkByName(want.HostIf); err == nil {
		// Deleting one end of a veth deletes both.
		if err := nh.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", want.HostIf, err))
		}
	} else if !errors.Is(notFoundLink(err), ErrNotFound) {
		errs = append(errs, fmt.Errorf("find veth %s: %w", want.HostIf, err))
	}
	if err := removeNamedNS(want.NetNS); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
