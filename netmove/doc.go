// Package netmove owns a container's network identity on a node: its network
// namespace, the veth pair that joins it to the node's bridge, its IP and MAC,
// and the gratuitous ARP that tells the plant network where it now lives.
//
// A node is a network namespace. The "node netns" of every Host method is the
// network namespace of the calling OS thread: an agent started with
// `nsenter --net=…` has all its threads there; a caller that switches
// namespaces itself must hold runtime.LockOSThread around the call.
//
// A live move is Prepare on the destination (host end DOWN, not on the bridge,
// so the address is never live twice), Unplug on the source, Plug on the
// destination, then Announce.
package netmove

import "errors"

// Error classes; callers test them with errors.Is.
var (
	// ErrExists: a netns or host veth for that container is already present.
	ErrExists = errors.New("already exists")
	// ErrNotFound: no netns (or host veth) for that container.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a malformed identity or container name.
	ErrInvalid = errors.New("invalid argument")
	// ErrIncomplete: the netns exists but is half-made (no eth0 or no IPv4
	// address); Destroy it and Prepare again.
	ErrIncomplete = errors.New("incomplete endpoint")
)
