package netmove

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lookup rebuilds an Endpoint from the kernel's state, e.g. after an agent
// restart. ErrNotFound if there is no netns; ErrIncomplete if the netns lacks
// eth0 or an IPv4 address (Destroy it).
func (h Host) Lookup(name string) (*Endpoint, error) {
	ep, err := h.endpoint(name)
	if err != nil {
		return nil, err
	}
	id, err := readIdentity(ep.NetNS)
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", name, err)
	}
	ep.Identity = id
	return ep, nil
}

// List returns an Endpoint for every netns named NSPrefix+…, sorted by name.
// A half-made one is included with a zero Identity (IP.IsValid() is false),
// so the caller can Destroy it.
func (h Host) List() ([]*Endpoint, error) {
	if h.NSPrefix == "" {
		// An empty prefix would claim every netns on the machine.
		return nil, fmt.Errorf("list: NSPrefix is empty: %w", ErrInvalid)
	}
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var eps []*Endpoint
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), h.NSPrefix)
		if !ok || validName(name) != nil {
			continue
		}
		ep, err := h.Lookup(name)
		switch {
		case err == nil:
		case errors.Is(err, ErrIncomplete) || errors.Is(err, ErrNotFound):
			ep, _ = h.endpoint(name)
		default:
			return nil, fmt.Errorf("list: %w", err)
		}
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b *Endpoint) int { return strings.Compare(a.Name, b.Name) })
	return eps, nil
}

// readIdentity reads eth0's MAC, first global IPv4 address and IPv4 default
// route from the netns at path.
func readIdentity(path string) (Identity, error) {
	var id Identity
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return id, fmt.Errorf("open netns %s: %w", path, notFound(err))
	}
	defer ns.Close()
	// A mount point that was never bind-mounted opens fine but is no netns.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(ns), &st); err != nil {
		return id, fmt.Errorf("statfs netns %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		return id, fmt.Errorf("%s is not a mounted netns: %w", path, ErrIncomplete)
	}
	ch, err := netlink.NewHandleAt(ns)
	if err != nil {
		return id, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	defer ch.Close()
	eth, err := ch.LinkByName(ContainerIf)
	if err != nil {
		if errors.Is(notFoundLink(err), ErrNotFound) {
			return id, fmt.Errorf("no %s in %s: %w", ContainerIf, path, ErrIncomplete)
		}
		return id, fmt.Errorf("find %s in %s: %w", ContainerIf, path, err)
	}
	id.MAC = eth.Attrs().HardwareAddr
	addrs, err := ch.AddrList(eth, unix.AF_INET)
	if err != nil {
		return id, fmt.Errorf("list addresses of %s in %s: %w", ContainerIf, path, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok || !ip.IsGlobalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		id.IP = netip.PrefixFrom(ip, ones)
		break
	}
	if !id.IP.IsValid() {
		return id, fmt.Errorf("no IPv4 address on %s in %s: %w", ContainerIf, path, ErrIncomplete)
	}
	routes, err := ch.RouteList(eth, unix.AF_INET)
	if err != nil {
		return id, fmt.Errorf("list routes in %s: %w", path, err)
	}
	for _, r := range routes {
		if isDefault(r) && r.Gw != nil {
			id.Gateway, _ = netip.AddrFromSlice(r.Gw.To4())
			break
		}
	}
	return id, nil
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && r.Dst.IP.IsUnspecified()
}
