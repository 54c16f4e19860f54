package checkpoint

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// nftTables lists the nftables tables ("family name") of the netns at path,
// by raw nfnetlink (there is no nft binary here). It runs on a thread that
// enters the netns and is then thrown away.
func nftTables(t *testing.T, netnsPath string) []string {
	t.Helper()
	type result struct {
		tables []string
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its netns
		tables, err := func() ([]string, error) {
			f, err := os.Open(netnsPath)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("setns %s: %w", netnsPath, err)
			}
			return listNftTables()
		}()
		ch <- result{tables, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("list nftables tables in %s: %v", netnsPath, r.err)
	}
	return r.tables
}

func listNftTables() ([]string, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETTABLE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // seq
	req[16] = unix.AF_UNSPEC                  // nfgenmsg: family, version, res_id
	req[17] = unix.NFNETLINK_V0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	families := map[byte]string{unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6", unix.NFPROTO_ARP: "arp", unix.NFPROTO_BRIDGE: "bridge", unix.NFPROTO_NETDEV: "netdev"}
	var tables []string
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return tables, nil
			case unix.NLMSG_ERROR:
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return nil, fmt.Errorf("nfnetlink: %w", syscall.Errno(-errno))
				}
				continue
			}
			if len(m.Data) < 4 {
				continue
			}
			fam := families[m.Data[0]]
			for attrs := m.Data[4:]; len(attrs) >= 4; {
				l := int(binary.NativeEndian.Uint16(attrs[0:]))
				typ := binary.NativeEndian.Uint16(attrs[2:]) & 0x3fff
				if l < 4 || l > len(attrs) {
					break
				}
				if typ == unix.NFTA_TABLE_NAME {
					tables = append(tables, fam+" "+strings.TrimRight(string(attrs[4:l]), "\x00"))
				}
				step := (l + 3) &^ 3 // attributes are 4-byte aligned
				if step > len(attrs) {
					break
				}
				attrs = attrs[step:]
			}
		}
	}
}
