package netmove

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		name, ip, mac, gw string
		wantErr           string // substring; empty means success
		wantMAC           string
	}{
		{name: "ok default mac", ip: "10.77.0.50/24", wantMAC: "02:ca:0a:4d:00:32"},
		{name: "ok explicit mac and gw", ip: "10.77.0.50/24", mac: "02:00:00:00:00:01", gw: "10.77.0.1", wantMAC: "02:00:00:00:00:01"},
		{name: "ok /32", ip: "10.77.0.50/32", wantMAC: "02:ca:0a:4d:00:32"},
		{name: "bad cidr no prefix", ip: "10.77.0.50", wantErr: "--ip must be CIDR like 10.77.0.50/24"},
		{name: "bad cidr garbage", ip: "plc", wantErr: "--ip must be CIDR"},
		{name: "empty ip", ip: "", wantErr: "--ip must be CIDR"},
		{name: "ipv6", ip: "fd00::5/64", wantErr: "only IPv4"},
		{name: "network address", ip: "10.77.0.0/24", wantErr: "network address"},
		{name: "broadcast address", ip: "10.77.0.255/24", wantErr: "broadcast address"},
		{name: "loopback", ip: "127.0.0.5/8", wantErr: "not a unicast host address"},
		{name: "bad mac", ip: "10.77.0.50/24", mac: "02:ca:zz", wantErr: "--mac must look like"},
		{name: "long mac", ip: "10.77.0.50/24", mac: "02:00:5e:10:00:00:00:01", wantErr: "6-byte"},
		{name: "multicast mac", ip: "10.77.0.50/24", mac: "01:00:5e:00:00:01", wantErr: "multicast"},
		{name: "broadcast mac", ip: "10.77.0.50/24", mac: "ff:ff:ff:ff:ff:ff", wantErr: "multicast"},
		{name: "zero mac", ip: "10.77.0.50/24", mac: "00:00:00:00:00:00", wantErr: "all zeros"},
		{name: "gw outside prefix", ip: "10.77.0.50/24", gw: "10.78.0.1", wantErr: "outside 10.77.0.0/24"},
		{name: "gw is self", ip: "10.77.0.50/24", gw: "10.77.0.50", wantErr: "own address"},
		{name: "gw garbage", ip: "10.77.0.50/24", gw: "gateway", wantErr: "--gw must be an address"},
		{name: "gw ipv6", ip: "10.77.0.50/24", gw: "fe80::1", wantErr: "must be IPv4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseIdentity(tc.ip, tc.mac, tc.gw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseIdentity(%q,%q,%q) err = %v, want containing %q", tc.ip, tc.mac, tc.gw, err, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("err %v is not ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseIdentity: %v", err)
			}
			if got := id.MAC.String(); got != tc.wantMAC {
				t.Errorf("MAC = %s, want %s", got, tc.wantMAC)
			}
			if id.IP.String() != tc.ip {
				t.Errorf("IP = %s, want %s (address bits kept)", id.IP, tc.ip)
			}
		})
	}
}

func TestMACFor(t *testing.T) {
	tests := []struct {
		ip, want string
	}{
		{"10.77.0.50", "02:ca:0a:4d:00:32"},
		{"192.168.1.1", "02:ca:c0:a8:01:01"},
		{"::ffff:10.77.0.50", "02:ca:0a:4d:00:32"},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			if got := MACFor(netip.MustParseAddr(tc.ip)).String(); got != tc.want {
				t.Errorf("MACFor(%s) = %s, want %s", tc.ip, got, tc.want)
			}
		})
	}
	m := MACFor(netip.MustParseAddr("fd00::50"))
	if len(m) != 6 || m[0] != 0x02 || m[0]&1 != 0 {
		t.Errorf("MACFor(v6) = %s: want 6-byte locally administered unicast", m)
	}
}

func TestNames(t *testing.T) {
	h := Host{Bridge: "capsec-br", NSPrefix: "capsec-c-node-a-"}
	ep, err := h.endpoint("plc1")
	if err != nil {
		t.Fatal(err)
	}
	if ep.NetNS != "/run/netns/capsec-c-node-a-plc1" {
		t.Errorf("NetNS = %s", ep.NetNS)
	}
	if len(ep.HostIf) != 12 || !strings.HasPrefix(ep.HostIf, "cs") || ep.HostIf != HostIfName("capsec-c-node-a-plc1") {
		t.Errorf("HostIf = %q: want deterministic cs+10 hex", ep.HostIf)
	}
	if HostIfName("capsec-c-node-b-plc1") == ep.HostIf {
		t.Error("host veth name is the same on two nodes")
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "-x", "a b", strings.Repeat("x", 201)} {
		t.Run("bad "+bad, func(t *testing.T) {
			if _, err := h.endpoint(bad); !errors.Is(err, ErrInvalid) {
				t.Errorf("endpoint(%q) err = %v, want ErrInvalid", bad, err)
			}
		})
	}
}
