package transfer

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		typ  uint64
		size int
	}{
		{"empty", 0, 0},
		{"one-byte type", 63, 1},
		{"two-byte type", 64, 100},
		{"reserved type", frameManifest, 4096},
		{"large payload, two writes", 1 << 30, 100_000},
		{"max type", MaxFrameType, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte{0xa5}, tc.size)
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tc.typ, payload); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("next")
			typ, got, err := ReadFrame(&buf, uint64(tc.size))
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.typ || !bytes.Equal(got, payload) {
				t.Fatalf("got type %#x, %d bytes; want %#x, %d bytes", typ, len(got), tc.typ, tc.size)
			}
			if rest := buf.String(); rest != "next" {
				t.Fatalf("ReadFrame consumed past the frame: %q left", rest)
			}
		})
	}
	if err := WriteFrame(io.Discard, MaxFrameType+1, nil); err == nil {
		t.Error("WriteFrame accepted a type beyond the varint range")
	}
}

// TestFrameTooLargeBeforeAllocation sends a header claiming a 4 EiB payload:
// ReadFrame must refuse it without allocating anything near that size.
func TestFrameTooLargeBeforeAllocation(t *testing.T) {
	hdr := quicvarint.Append(quicvarint.Append(nil, 7), MaxFrameType)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _, err := ReadFrame(bytes.NewReader(hdr), 1<<20)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("ReadFrame = %v, want ErrFrameTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("100 refused frames allocated %d bytes", grew)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _, _ = ReadFrame(bytes.NewReader(hdr), 1<<20) })
	if allocs > 32 { // a few for the error message; never one per claimed byte
		t.Fatalf("a refused frame costs %v allocations", allocs)
	}
}

func TestFrameTruncated(t *testing.T) {
	var full bytes.Buffer
	if err := WriteFrame(&full, 300, []byte("hello world")); err != nil {
		t.Fatal(err)
	}
	b := full.Bytes() // type 300 (2 bytes), length 11 (1 byte), payload
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing: clean end", nil, io.EOF},
		{"half a type", b[:1], io.ErrUnexpectedEOF},
		{"type, no length", b[:2], io.ErrUnexpectedEOF},
		{"half a length", append(quicvarint.Append(nil, 5), 0x80), io.ErrUnexpectedEOF},
		{"no payload", b[:3], io.ErrUnexpectedEOF},
		{"half the payload", b[:8], io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tc.in), 1024)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, tc.want)
			}
			if tc.want == io.ErrUnexpectedEOF && errors.Is(err, io.EOF) {
				t.Fatalf("truncation reported as a clean end: %v", err)
			}
		})
	}
}

func TestMsgSkipUnknown(t *testing.T) {
	type ping struct{ N int }
	var buf bytes.Buffer
	for _, m := range []struct {
		typ uint64
		v   any
	}{{1, ping{1}}, {999, "from a newer peer"}, {1, ping{2}}} {
		if err := WriteMsg(&buf, m.typ, m.v); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	for {
		typ, raw, err := ReadMsg(&buf, 1024)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if typ != 1 {
			continue // unknown: skipped
		}
		var p ping
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		got = append(got, p.N)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("got %v, want [1 2]", got)
	}

	buf.Reset()
	_ = WriteMsg(&buf, 2, ping{3})
	var p ping
	if err := ExpectMsg(&buf, 1024, 1, &p); !errors.Is(err, ErrProtocol) {
		t.Fatalf("ExpectMsg of the wrong type = %v, want ErrProtocol", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x01, 0x03, 'a', 'b', 'c'}, uint64(16))
	f.Add([]byte{0x7c, 0x01, 0x00}, uint64(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint64(1<<20))
	f.Fuzz(func(t *testing.T, data []byte, maxLen uint64) {
		maxLen %= 1 << 16 // the cap, not the input, bounds what a frame may cost
		r := bytes.NewReader(data)
		typ, payload, err := ReadFrame(r, maxLen)
		if err != nil {
			if payload != nil {
				t.Fatal("payload returned with an error")
			}
			return
		}
		if uint64(len(payload)) > maxLen {
			t.Fatalf("payload of %d bytes exceeds cap %d", len(payload), maxLen)
		}
		// What was read must re-encode to a frame that reads back the same.
		var buf bytes.Buffer
		if err := WriteFrame(&buf, typ, payload); err != nil {
			t.Fatal(err)
		}
		typ2, payload2, err := ReadFrame(&buf, maxLen)
		if err != nil || typ2 != typ || !bytes.Equal(payload2, payload) {
			t.Fatalf("re-read %#x %q %v, want %#x %q", typ2, payload2, err, typ, payload)
		}
		if consumed := len(data) - r.Len(); consumed < len(payload) {
			t.Fatalf("consumed %d bytes for a %d-byte payload", consumed, len(payload))
		}
	})
}
