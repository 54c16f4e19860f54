package netmove

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
)

func TestGARPFrames(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0xca, 0x0a, 0x4d, 0x00, 0x32}
	ip := netip.MustParseAddr("10.77.0.50")
	frames, err := garpFrames(mac, ip)
	if err != nil {
		t.Fatal(err)
	}
	pad := hex.EncodeToString(make([]byte, ethMinFrame-arpFrameLen))
	want := []string{
		// dst bcast | src | 0806 | htype 1, ptype 0800, 6, 4, op 1 | sha | spa | tha 0 | tpa
		"ffffffffffff" + "02ca0a4d0032" + "0806" + "0001080006040001" + "02ca0a4d0032" + "0a4d0032" + "000000000000" + "0a4d0032" + pad,
		"ffffffffffff" + "02ca0a4d0032" + "0806" + "0001080006040002" + "02ca0a4d0032" + "0a4d0032" + "02ca0a4d0032" + "0a4d0032" + pad,
	}
	if len(frames) != len(want) {
		t.Fatalf("got %d frames, want %d", len(frames), len(want))
	}
	for i, w := range want {
		t.Run([]string{"request", "reply"}[i], func(t *testing.T) {
			if got := hex.EncodeToString(frames[i]); got != w {
				t.Errorf("frame\n got %s\nwant %s", got, w)
			}
		})
	}
}

func TestARPRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		p    arpPacket
	}{
		{"probe", arpPacket{EthDst: ethBroadcast, EthSrc: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Op: arpRequest,
			SenderMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SenderIP: netip.IPv4Unspecified(),
			TargetMAC: zeroMAC, TargetIP: netip.MustParseAddr("10.199.5.50")}},
		{"reply", arpPacket{EthDst: net.HardwareAddr{2, 0, 0, 0, 0, 1}, EthSrc: net.HardwareAddr{2, 0xca, 1, 2, 3, 4}, Op: arpReply,
			SenderMAC: net.HardwareAddr{2, 0xca, 1, 2, 3, 4}, SenderIP: netip.MustParseAddr("10.199.5.50"),
			TargetMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, TargetIP: netip.IPv4Unspecified()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.p.marshal()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != ethMinFrame {
				t.Errorf("len = %d, want %d", len(b), ethMinFrame)
			}
			got, err := parseARP(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Op != tc.p.Op || got.SenderIP != tc.p.SenderIP || got.TargetIP != tc.p.TargetIP ||
				!bytes.Equal(got.SenderMAC, tc.p.SenderMAC) || !bytes.Equal(got.TargetMAC, tc.p.TargetMAC) ||
				!bytes.Equal(got.EthDst, tc.p.EthDst) || !bytes.Equal(got.EthSrc, tc.p.EthSrc) {
				t.Errorf("round trip: got %+v, want %+v", got, tc.p)
			}
		})
	}
}

func TestARPErrors(t *testing.T) {
	good, _ := probeFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.1"))
	ipv4 := append([]byte(nil), good...)
	ipv4[12], ipv4[13] = 0x08, 0x00
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:20]},
		{"not arp", ipv4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseARP(tc.b); err == nil {
				t.Error("parseARP succeeded, want error")
			}
		})
	}
	if _, err := (arpPacket{EthDst: ethBroadcast, EthSrc: net.HardwareAddr{1}, SenderMAC: zeroMAC, TargetMAC: zeroMAC,
		SenderIP: netip.IPv4Unspecified(), TargetIP: netip.IPv4Unspecified()}).marshal(); err == nil {
		t.Error("marshal with a 1-byte MAC succeeded")
	}
	if _, err := garpFrames(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("garpFrames with IPv6 succeeded")
	}
}
