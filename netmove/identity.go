package netmove

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Identity is what the plant network knows a container by. It must be the same
// on the source and the destination of a move.
type Identity struct {
	IP      netip.Prefix     // address and on-link prefix, e.g. 10.77.0.50/24 (IPv4 only)
	MAC     net.HardwareAddr // required; MACFor gives a stable default
	Gateway netip.Addr       // optional default route; zero means none
}

// MACFor derives a stable, locally administered, unicast MAC from an IP, so
// that every node computes the same MAC for a container without coordination
// and a moved container never changes MAC (peers' ARP caches stay valid).
// IPv4 gives 02:ca:a:b:c:d; other addresses use 4 bytes of their SHA-256.
func MACFor(ip netip.Addr) net.HardwareAddr {
	var tail []byte
	if ip.Is4() || ip.Is4In6() {
		b := ip.Unmap().As4()
		tail = b[:]
	} else {
		sum := sha256.Sum256(ip.AsSlice())
		tail = sum[:4]
	}
	return append(net.HardwareAddr{0x02, 0xca}, tail...)
}

// ParseIdentity validates user input (the --ip, --mac and --gw flags).
// mac and gw may be empty; an empty mac becomes MACFor(ip).
func ParseIdentity(ip, mac, gw string) (Identity, error) {
	var id Identity
	p, err := netip.ParsePrefix(strings.TrimSpace(ip))
	if err != nil {
		return id, fmt.Errorf("--ip must be CIDR like 10.77.0.50/24, got %q: %w", ip, ErrInvalid)
	}
	id.IP = p
	if mac = strings.TrimSpace(mac); mac == "" {
		id.MAC = MACFor(p.Addr())
	} else {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return Identity{}, fmt.Errorf("--mac must look like 02:ca:0a:4d:00:32, got %q: %w", mac, ErrInvalid)
		}
		id.MAC = hw
	}
	if gw = strings.TrimSpace(gw); gw != "" {
		a, err := netip.ParseAddr(gw)
		if err != nil {
			return Identity{}, fmt.Errorf("--gw must be an address like 10.77.0.1, got %q: %w", gw, ErrInvalid)
		}
		id.Gateway = a
	}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// Validate reports why an Identity cannot be given to a container.
func (id Identity) Validate() error {
	p := id.IP
	switch {
	case !p.IsValid():
		return fmt.Errorf("--ip must be CIDR like 10.77.0.50/24: %w", ErrInvalid)
	case !p.Addr().Is4():
		// Gratuitous ARP is IPv4 only; an IPv6 move would need unsolicited NA.
		return fmt.Errorf("--ip %s: only IPv4 is supported: %w", p, ErrInvalid)
	case p.Bits() == 0:
		return fmt.Errorf("--ip %s: prefix /0 is not a subnet: %w", p, ErrInvalid)
	case !p.Addr().IsGlobalUnicast():
		return fmt.Errorf("--ip %s: not a unicast host address: %w", p, ErrInvalid)
	}
	if p.Bits() <= 30 {
		if p.Addr() == p.Masked().Addr() {
			return fmt.Errorf("--ip %s is the network address of its prefix: %w", p, ErrInvalid)
		}
		if p.Addr() == lastAddr(p) {
			return fmt.Errorf("--ip %s is the broadcast address of its prefix: %w", p, ErrInvalid)
		}
	}
	switch m := id.MAC; {
	case len(m) != 6:
		return fmt.Errorf("--mac %q must be a 6-byte Ethernet address: %w", m.String(), ErrInvalid)
	case m[0]&0x01 != 0:
		return fmt.Errorf("--mac %s is multicast (low bit of first byte set); use a unicast MAC: %w", m, ErrInvalid)
	case m.String() == "00:00:00:00:00:00":
		return fmt.Errorf("--mac %s is all zeros: %w", m, ErrInvalid)
	}
	if g := id.Gateway; g.IsValid() {
		switch {
		case !g.Is4():
			return fmt.Errorf("--gw %s must be IPv4 like --ip: %w", g, ErrInvalid)
		case !p.Contains(g):
			return fmt.Errorf("--gw %s is outside %s; the gateway must be on-link: %w", g, p.Masked(), ErrInvalid)
		case g == p.Addr():
			return fmt.Errorf("--gw %s is the container's own address: %w", g, ErrInvalid)
		}
	}
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
