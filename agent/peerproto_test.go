package agent

import (
	"bytes"
	"errors"
	"testing"

	"github.com/capsec/capsec/api"
)

func TestPeerMessages(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		var buf bytes.Buffer
		in := preflightMsg{MoveID: "abc", From: "node-a", Version: Version, CRIU: 40201,
			Container: record{Name: "plc1", IP: "10.77.0.50/24", Digest: "sha256:00"}}
		if err := sendMsg(&buf, msgPreflight, in); err != nil {
			t.Fatal(err)
		}
		var out preflightMsg
		if err := recvMsg(&buf, msgPreflight, &out); err != nil {
			t.Fatal(err)
		}
		if out.Container.Name != "plc1" || out.CRIU != 40201 || out.From != "node-a" {
			t.Fatalf("got %+v", out)
		}
	})
	t.Run("error keeps its class", func(t *testing.T) {
		var buf bytes.Buffer
		sendError(&buf, errors.Join(errors.New("name taken"), api.ErrAlreadyExists))
		err := recvMsg(&buf, msgAck, nil)
		if !errors.Is(err, api.ErrAlreadyExists) {
			t.Fatalf("err %v: class lost", err)
		}
	})
	t.Run("unexpected type", func(t *testing.T) {
		var buf bytes.Buffer
		sendMsg(&buf, msgCommit, nil)
		if err := recvMsg(&buf, msgAck, nil); err == nil {
			t.Fatal("a commit where an ack was due must be a protocol error")
		}
	})
	t.Run("truncated", func(t *testing.T) {
		var buf bytes.Buffer
		sendMsg(&buf, msgPreflight, preflightMsg{MoveID: "x"})
		b := buf.Bytes()[:buf.Len()-3]
		if err := recvMsg(bytes.NewReader(b), msgPreflight, &preflightMsg{}); err == nil {
			t.Fatal("truncated message decoded")
		}
	})
}

// FuzzPeerMessage feeds arbitrary bytes to the control-stream decoder: it
// must never panic or allocate past the cap, whatever a peer sends.
func FuzzPeerMessage(f *testing.F) {
	var buf bytes.Buffer
	sendMsg(&buf, msgPreflight, preflightMsg{MoveID: "m", From: "node-a", Container: record{Name: "plc1"}})
	f.Add(buf.Bytes())
	buf.Reset()
	sendError(&buf, api.ErrInvalid)
	f.Add(buf.Bytes())
	f.Add([]byte{0x03, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for _, want := range []uint64{msgPreflight, msgRestored, msgAck} {
			var p preflightMsg
			var rm restoredMsg
			switch want {
			case msgPreflight:
				recvMsg(r, want, &p)
			case msgRestored:
				recvMsg(r, want, &rm)
			default:
				recvMsg(r, want, nil)
			}
		}
	})
}
