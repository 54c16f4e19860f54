// Package transfer carries agent-to-agent traffic: QUIC sessions with mutual
// TLS from the operator's CA, framed streams, and verified file transfers.
//
// Trust: every agent holds an Identity (its node certificate and the CA).
// A listener uses ServerTLS with the list of peers it accepts; a dialer uses
// ClientTLS with the node it expects to answer. Refusals are explained in the
// dialer's error and logged by the listener.
//
// Streams: a Session carries the caller's bidirectional streams and this
// package's own. Every stream is routed by the type of its first frame, so a
// caller's stream must begin with a frame (WriteFrame/WriteMsg) whose type is
// outside [FrameTypeReservedMin, FrameTypeReservedMax].
//
// Files: SendFiles and ReceiveFiles move a directory described by a Manifest,
// one stream per file, and succeed only when every file's size and SHA-256
// match. A failed receive removes what it wrote.
package transfer
