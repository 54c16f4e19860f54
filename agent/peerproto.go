package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/transfer"
)

// The peer protocol: the source sends one request at a time on a control
// stream and the destination answers each with its reply or msgError. Files
// (an image bundle, the checkpoint) travel on their own streams between a
// request and its reply.
const (
	msgError       uint64 = 1
	msgAck         uint64 = 2
	msgPreflight   uint64 = 3
	msgPreflightOK uint64 = 4
	msgSendImage   uint64 = 5
	msgPrepare     uint64 = 6
	msgCheckpoint  uint64 = 7
	msgRestore     uint64 = 8
	msgRestored    uint64 = 9
	msgCommit      uint64 = 10
	msgAbort       uint64 = 11
	msgQuery       uint64 = 12
	msgQueryReply  uint64 = 13
)

// maxControlMsg caps a control message; the largest, preflight, is a few KiB.
const maxControlMsg = 1 << 20

type preflightMsg struct {
	MoveID    string `json:"move_id"`
	From      string `json:"from"`
	Version   string `json:"version"`
	CRIU      int    `json:"criu"`
	Kernel    string `json:"kernel"`
	Container record `json:"container"`
}

type preflightOKMsg struct {
	NeedImage bool `json:"need_image"`
}

type sendImageMsg struct {
	Digest string `json:"digest"`
	Bytes  int64  `json:"bytes"`
}

type checkpointMsg struct {
	Bytes int64 `json:"bytes"`
	Files int   `json:"files"`
}

type restoredMsg struct {
	Sockets int           `json:"sockets"`
	Restore time.Duration `json:"restore_ns"`
	Plug    time.Duration `json:"plug_ns"`
}

// queryMsg asks whether a move committed: a restarted source sends it
// before it resumes a container that it may have handed over.
type queryMsg struct {
	MoveID    string `json:"move_id"`
	Container string `json:"container"`
}

type queryReplyMsg struct {
	Committed bool `json:"committed"`
}

type abortMsg struct {
	Reason string `json:"reason"`
}

type errorMsg struct {
	Class string `json:"class"`
	Error string `json:"error"`
}

func sendMsg(w io.Writer, typ uint64, v any) error {
	if v == nil {
		v = struct{}{}
	}
	return transfer.WriteMsg(w, typ, v)
}

func sendError(w io.Writer, err error) error {
	class, _ := api.Classify(err)
	return sendMsg(w, msgError, errorMsg{Class: class, Error: err.Error()})
}

// recvMsg reads the next message; a msgError from the peer becomes an error
// that keeps its class, and any type other than want is a protocol error.
func recvMsg(r io.Reader, want uint64, out any) error {
	typ, raw, err := transfer.ReadMsg(r, maxControlMsg)
	if err != nil {
		return fmt.Errorf("read from peer: %w", err)
	}
	return decodeMsg(typ, raw, want, out)
}

func decodeMsg(typ uint64, raw json.RawMessage, want uint64, out any) error {
	if typ == msgError {
		var em errorMsg
		if err := json.Unmarshal(raw, &em); err != nil {
			return fmt.Errorf("peer sent an unreadable error: %w", err)
		}
		return &api.RemoteError{Msg: "peer: " + em.Error, Class: em.Class}
	}
	if typ != want {
		return fmt.Errorf("peer protocol: got message type %d, want %d: %w", typ, want, api.ErrInternal)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("peer protocol: message %d: %w", typ, err)
	}
	return nil
}
