package netmove

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

const (
	arpRequest = 1
	arpReply   = 2
	// ethMinFrame is the shortest Ethernet frame without FCS; real NICs pad
	// shorter ones, veth does not, and some switches drop runts.
	ethMinFrame = 60
	arpFrameLen = 14 + 28
)

var (
	ethBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// arpPacket is an Ethernet/IPv4 ARP frame.
type arpPacket struct {
	EthDst    net.HardwareAddr
	EthSrc    net.HardwareAddr
	Op        uint16
	SenderMAC net.HardwareAddr
	SenderIP  netip.Addr
	TargetMAC net.HardwareAddr
	TargetIP  netip.Addr
}

// marshal builds the frame, padded to the Ethernet minimum.
func (p arpPacket) marshal() ([]byte, error) {
	for _, m := range []net.HardwareAddr{p.EthDst, p.EthSrc, p.SenderMAC, p.TargetMAC} {
		if len(m) != 6 {
			return nil, fmt.Errorf("arp: MAC %q is not 6 bytes", m.String())
		}
	}
	if !p.SenderIP.Is4() || !p.TargetIP.Is4() {
		return nil, fmt.Errorf("arp: %s/%s: addresses must be IPv4", p.SenderIP, p.TargetIP)
	}
	b := make([]byte, ethMinFrame)
	copy(b[0:6], p.EthDst)
	copy(b[6:12], p.EthSrc)
	binary.BigEndian.PutUint16(b[12:14], 0x0806) // EtherType ARP
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // hardware type Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // protocol IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.Op)
	spa, tpa := p.SenderIP.As4(), p.TargetIP.As4()
	copy(a[8:14], p.SenderMAC)
	copy(a[14:18], spa[:])
	copy(a[18:24], p.TargetMAC)
	copy(a[24:28], tpa[:])
	return b, nil
}

// parseARP decodes an Ethernet/IPv4 ARP frame.
func parseARP(b []byte) (arpPacket, error) {
	var p arpPacket
	if len(b) < arpFrameLen {
		return p, errors.New("arp: short frame")
	}
	if binary.BigEndian.Uint16(b[12:14]) != 0x0806 {
		return p, errors.New("arp: not an ARP EtherType")
	}
	a := b[14:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		return p, errors.New("arp: not Ethernet/IPv4")
	}
	p.EthDst = net.HardwareAddr(append([]byte(nil), b[0:6]...))
	p.EthSrc = net.HardwareAddr(append([]byte(nil), b[6:12]...))
	p.Op = binary.BigEndian.Uint16(a[6:8])
	p.SenderMAC = net.HardwareAddr(append([]byte(nil), a[8:14]...))
	p.SenderIP = netip.AddrFrom4([4]byte(a[14:18]))
	p.TargetMAC = net.HardwareAddr(append([]byte(nil), a[18:24]...))
	p.TargetIP = netip.AddrFrom4([4]byte(a[24:28]))
	return p, nil
}

// garpFrames returns the two gratuitous ARP forms, broadcast: a request
// (sender = target = ip, which updates hosts that ignore replies) and a
// reply (which updates hosts that ignore gratuitous requests). Both make
// every bridge on the path learn mac's new port.
func garpFrames(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	req, err := arpPacket{EthDst: ethBroadcast, EthSrc: mac, Op: arpRequest,
		SenderMAC: mac, SenderIP: ip, TargetMAC: zeroMAC, TargetIP: ip}.marshal()
	if err != nil {
		return nil, err
	}
	rep, err := arpPacket{EthDst: ethBroadcast, EthSrc: mac, Op: arpReply,
		SenderMAC: mac, SenderIP: ip, TargetMAC: mac, TargetIP: ip}.marshal()
	if err != nil {
		return nil, err
	}
	return [][]byte{req, rep}, nil
}

// probeFrame is an RFC 5227 ARP probe for ip from mac: sender IP 0.0.0.0,
// so no peer's ARP cache is changed by asking.
func probeFrame(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	return arpPacket{EthDst: ethBroadcast, EthSrc: mac, Op: arpRequest,
		SenderMAC: mac, SenderIP: netip.IPv4Unspecified(), TargetMAC: zeroMAC, TargetIP: ip}.marshal()
}
