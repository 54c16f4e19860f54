package netmove

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// announceCount GARP rounds, announceGap apart: one lost frame (a port
	// still coming up) does not leave the fabric pointing at the old node.
	announceCount = 3
	announceGap   = 20 * time.Millisecond
	// probeCount ARP probes, probeWait apart, for InUse.
	probeCount = 3
	probeWait  = 100 * time.Millisecond
)

// rawARP is an AF_PACKET socket for ARP frames bound to one interface.
type rawARP struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
}

// openARP opens the socket inside ns; the socket stays in that netns after
// the thread leaves it.
func openARP(ns netns.NsHandle, ifname string) (*rawARP, error) {
	r := &rawARP{fd: -1}
	err := inNS(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("find %s: %w", ifname, err)
		}
		r.ifindex, r.mac = ifi.Index, ifi.HardwareAddr
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		r.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rawARP) close() { unix.Close(r.fd) }

func (r *rawARP) send(frame []byte) error {
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: r.ifindex, Halen: 6}
	copy(to.Addr[:], frame[0:6])
	return unix.Sendto(r.fd, frame, 0, to)
}

// Announce sends gratuitous ARP (request and reply form) for the endpoint's
// IP and MAC from eth0 inside its netns, announceCount times. Call it after
// Plug: before that the peer is down and the frames go nowhere.
func Announce(ctx context.Context, ep *Endpoint) error {
	frames, err := garpFrames(ep.Identity.MAC, ep.Identity.IP.Addr())
	if err != nil {
		return fmt.Errorf("announce %s: %w", ep.Name, err)
	}
	ns, err := netns.GetFromPath(ep.NetNS)
	if err != nil {
		return fmt.Errorf("announce %s: open netns %s: %w", ep.Name, ep.NetNS, notFound(err))
	}
	defer ns.Close()
	r, err := openARP(ns, ContainerIf)
	if err != nil {
		return fmt.Errorf("announce %s: %w", ep.Name, err)
	}
	defer r.close()
	t := time.NewTicker(announceGap)
	defer t.Stop()
	for i := range announceCount {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("announce %s: %w", ep.Name, ctx.Err())
			case <-t.C:
			}
		}
		for _, f := range frames {
			if err := r.send(f); err != nil {
				return fmt.Errorf("announce %s: send gratuitous ARP on %s: %w", ep.Name, ContainerIf, err)
			}
		}
	}
	return nil
}

// InUse asks the plant network, from the node's bridge, whether anyone
// answers ARP for ip (RFC 5227 probe, so no cache is disturbed). It returns
// the answering MAC, or nil if nobody answered within probeCount*probeWait.
// If ctx ends first the answer is unknown and ctx's error is returned. A
// plugged endpoint of this node answers too.
func (h Host) InUse(ctx context.Context, ip netip.Addr) (net.HardwareAddr, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("in use %s: only IPv4: %w", ip, ErrInvalid)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("in use %s: get node netns: %w", ip, err)
	}
	defer ns.Close()
	r, err := openARP(ns, h.Bridge)
	if err != nil {
		return nil, fmt.Errorf("in use %s: %w", ip, err)
	}
	defer r.close()
	probe, err := probeFrame(r.mac, ip)
	if err != nil {
		return nil, fmt.Errorf("in use %s: %w", ip, err)
	}
	buf := make([]byte, 1514)
	for range probeCount {
		if err := r.send(probe); err != nil {
			return nil, fmt.Errorf("in use %s: send ARP probe on %s: %w", ip, h.Bridge, err)
		}
		deadline := time.Now().Add(probeWait)
		for {
			wait := time.Until(deadline)
			if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
				wait = time.Until(d)
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("in use %s: %w", ip, err)
			}
			if wait <= 0 {
				break
			}
			fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("in use %s: poll: %w", ip, err)
			}
			if n == 0 {
				continue
			}
			m, _, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				continue
			}
			p, err := parseARP(buf[:m])
			if err == nil && p.Op == arpReply && p.SenderIP == ip {
				return p.SenderMAC, nil
			}
		}
	}
	return nil, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
