package netmove

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// lockTable is the nftables table that holds a prepared endpoint's TCP lock.
const lockTable = "capsec_lock"

// The lock drops incoming TCP at a priority ahead of everything else. Only
// incoming: a reset answers an incoming segment, and a restored socket must
// be free to send what its send queue holds the moment it exists (dropping
// that output was seen to stall a session for seconds). ARP and ICMP pass,
// so the address can be announced while locked.
const lockRuleset = `table inet ` + lockTable + ` {
	chain in {
		type filter hook input priority -400; policy accept;
		meta l4proto tcp drop
	}
}
`

// Lock makes ep's namespace drop every TCP segment until Unlock.
//
// CRIU 4.2 locks an external network namespace only while dumping, not while
// restoring into a new one. The destination plugs its endpoint in before
// CRIU has recreated the sockets, so without a lock a peer's retransmit
// could reach a namespace with no socket for it and be answered with a
// reset, ending the session. Dropped, it is simply sent again.
func Lock(ctx context.Context, ep *Endpoint) error {
	return nft(ctx, ep.NetNS, lockRuleset, "-f", "-")
}

// Unlock removes the lock; it is a no-op on an unlocked namespace.
func Unlock(ctx context.Context, ep *Endpoint) error {
	err := nft(ctx, ep.NetNS, "", "delete", "table", "inet", lockTable)
	if err != nil && strings.Contains(err.Error(), "No such file or directory") {
		return nil
	}
	return err
}

// Locked reports whether ep's namespace holds the lock table.
func Locked(ctx context.Context, ep *Endpoint) (bool, error) {
	err := nft(ctx, ep.NetNS, "", "list", "table", "inet", lockTable)
	if err == nil {
		return true, nil
	}
	if strings.Contains(err.Error(), "No such file or directory") {
		return false, nil
	}
	return false, err
}

func nft(ctx context.Context, nsPath, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath, "--", "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), nsPath, err, strings.TrimSpace(out.String()))
	}
	return nil
}
