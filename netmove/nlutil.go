package netmove

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
)

const netFlagUp = net.FlagUp

func notFoundLink(err error) error {
	var lnf netlink.LinkNotFoundError
	if errors.As(err, &lnf) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// ignoreNoIPv6 treats a missing IPv6 sysctl as success: a kernel booted
// with ipv6.disable=1 has nothing to quiet.
func ignoreNoIPv6(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
