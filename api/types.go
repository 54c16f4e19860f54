// Package api holds the types that cross the agent's local socket. The agent
// serves them and the migrate CLI decodes them; both import this package and it
// imports nothing of capsec's, so the wire format has one definition.
package api

import "time"

// Container is one container as an agent reports it.
type Container struct {
	Name        string    `json:"name"`
	Node        string    `json:"node"`
	Image       string    `json:"image"`
	ImageDigest string    `json:"image_digest"`
	IP          string    `json:"ip"`
	MAC         string    `json:"mac"`
	Gateway     string    `json:"gateway,omitempty"`
	Args        []string  `json:"args,omitempty"`
	Status      string    `json:"status"`
	Pid         int       `json:"pid,omitempty"`
	Created     time.Time `json:"created"`
	NetNS       string    `json:"netns,omitempty"`
}

// RunRequest asks an agent to start a container from an image it holds.
type RunRequest struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	IP      string   `json:"ip"`
	MAC     string   `json:"mac,omitempty"`
	Gateway string   `json:"gateway,omitempty"`
	Args    []string `json:"args,omitempty"` // appended to the image's own arguments
}

// Node is an agent's view of itself.
type Node struct {
	Node       string    `json:"node"`
	Version    string    `json:"version"`
	CRIU       string    `json:"criu"`
	Listen     string    `json:"listen,omitempty"`
	Peers      []Peer    `json:"peers,omitempty"`
	Images     []Image   `json:"images,omitempty"`
	Containers int       `json:"containers"`
	Started    time.Time `json:"started"`
	StateDir   string    `json:"state_dir"`
	ImageTmpfs string    `json:"image_tmpfs"`
	Kernel     string    `json:"kernel"`
}

// Peer is another agent this one may move containers to.
type Peer struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
}

// Image is a container image in an agent's store.
type Image struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// MoveRequest asks the agent that runs a container to move it live to a peer.
type MoveRequest struct {
	To string `json:"to"`
	// Timeout bounds the whole move; zero means the agent's default.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// MoveEvent is one line of a move's progress stream. The last event of a
// stream carries Result (the move ended, well or not).
type MoveEvent struct {
	Time    time.Time   `json:"time"`
	Phase   string      `json:"phase"`
	Message string      `json:"message,omitempty"`
	Bytes   int64       `json:"bytes,omitempty"`
	Total   int64       `json:"total,omitempty"`
	Result  *MoveResult `json:"result,omitempty"`
}

// MoveResult is what a user needs to trust a move: how long the container
// was frozen, what crossed the wire, and whether its TCP sessions survived.
type MoveResult struct {
	ID        string    `json:"id"`
	Container string    `json:"container"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Started   time.Time `json:"started"`
	OK        bool      `json:"ok"`
	// Outcome is "moved", "rolled-back" (the container runs on the source
	// again) or "failed" (see Error).
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`

	// Downtime runs from the freeze to the restored container running.
	Downtime time.Duration `json:"downtime_ns"`
	// Frozen is how long CRIU held the source's tasks frozen (its own stats).
	Frozen time.Duration `json:"frozen_ns,omitempty"`
	Total  time.Duration `json:"total_ns"`
	// Phases holds each timed phase, in order.
	Phases []Phase `json:"phases"`

	BytesSent    int64 `json:"bytes_sent"`
	ImageBytes   int64 `json:"image_bytes"`
	SessionsSeen int   `json:"sessions_dumped"`
	SessionsKept int   `json:"sessions_restored"`
}

// Phase is one timed step of a move.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// ErrorBody is how every error crosses the socket.
type ErrorBody struct {
	Error string `json:"error"`
	Class string `json:"class"`
}
