package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// MaxFrameType is the largest frame type (and length) a QUIC varint holds.
const MaxFrameType = quicvarint.Max

// Frame types this package uses itself, all in [FrameTypeReservedMin,
// FrameTypeReservedMax]. Callers define their own types outside this range;
// the first frame on a stream routes it, so a caller's stream must not begin
// with a reserved type.
const (
	FrameTypeReservedMin uint64 = 0x3c00
	FrameTypeReservedMax uint64 = 0x3cff

	frameManifest uint64 = 0x3c01 // sender → receiver, control stream: JSON manifestMsg
	frameAccept   uint64 = 0x3c02 // receiver → sender, control stream: empty, go ahead
	frameFile     uint64 = 0x3c03 // sender → receiver, first frame of a file stream: fileHeader
	frameDone     uint64 = 0x3c04 // receiver → sender, control stream: JSON doneMsg, all verified
	frameError    uint64 = 0x3c05 // either way, control stream: JSON errorMsg
	frameHello    uint64 = 0x3c06 // server → client, own unidirectional stream: empty, admitted
)

// IsReservedFrameType reports whether typ belongs to this package.
func IsReservedFrameType(typ uint64) bool {
	return typ >= FrameTypeReservedMin && typ <= FrameTypeReservedMax
}

// WriteFrame writes one frame: varint type, varint payload length, payload.
func WriteFrame(w io.Writer, typ uint64, payload []byte) error {
	if typ > MaxFrameType {
		return fmt.Errorf("write frame: type %#x does not fit a varint", typ)
	}
	var hdr [16]byte
	b := quicvarint.Append(hdr[:0], typ)
	b = quicvarint.Append(b, uint64(len(payload)))
	if len(payload) <= 4096 {
		// One write keeps a small frame in one QUIC STREAM frame.
		b = append(b, payload...)
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write frame %#x: %w", typ, err)
		}
		return nil
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write frame %#x header: %w", typ, err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame %#x payload: %w", typ, err)
	}
	return nil
}

// ReadFrame reads one frame whose payload is at most maxLen bytes. The
// length is checked before anything is allocated (ErrFrameTooLarge). A
// stream that ends cleanly before a frame begins returns io.EOF; one that
// ends inside a frame returns io.ErrUnexpectedEOF. A caller skips a frame of
// a type it does not know by ignoring it: the payload has been consumed.
func ReadFrame(r io.Reader, maxLen uint64) (typ uint64, payload []byte, err error) {
	typ, err = readVarint(r, true)
	if err != nil {
		return 0, nil, err
	}
	n, err := readVarint(r, false)
	if err != nil {
		return 0, nil, fmt.Errorf("read frame %#x length: %w", typ, err)
	}
	if n > maxLen {
		return typ, nil, fmt.Errorf("frame %#x of %d bytes, limit %d: %w", typ, n, maxLen, ErrFrameTooLarge)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return typ, nil, fmt.Errorf("read frame %#x payload: %w", typ, err)
	}
	return typ, payload, nil
}

// readVarint reads a QUIC varint one byte at a time so that nothing past the
// frame header is consumed from r. atStart says an EOF before the first byte
// is a clean end (io.EOF) rather than a truncation.
func readVarint(r io.Reader, atStart bool) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		if errors.Is(err, io.EOF) && !atStart {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	l := 1 << (b[0] >> 6)
	if l > 1 {
		if _, err := io.ReadFull(r, b[1:l]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	v, _, err := quicvarint.Parse(b[:l])
	return v, err
}

// WriteMsg writes v as a JSON frame of type typ.
func WriteMsg(w io.Writer, typ uint64, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message %#x: %w", typ, err)
	}
	return WriteFrame(w, typ, payload)
}

// ReadMsg reads one frame and returns its payload as raw JSON, leaving the
// decoding (or skipping) to the caller, who knows the types.
func ReadMsg(r io.Reader, maxLen uint64) (typ uint64, raw json.RawMessage, err error) {
	typ, payload, err := ReadFrame(r, maxLen)
	if err != nil {
		return typ, nil, err
	}
	return typ, json.RawMessage(payload), nil
}

// ExpectMsg reads one frame, requires it to be of type want, and decodes its
// JSON payload into v. A frame of another type is ErrProtocol.
func ExpectMsg(r io.Reader, maxLen uint64, want uint64, v any) error {
	typ, raw, err := ReadMsg(r, maxLen)
	if err != nil {
		return err
	}
	if typ != want {
		return fmt.Errorf("got frame %#x, want %#x: %w", typ, want, ErrProtocol)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode frame %#x: %v: %w", typ, err, ErrProtocol)
	}
	return nil
}
