package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/capsec/capsec/transfer"
)

// Transfer modes of the micro-benchmark. Each moves the same bytes, memory
// to memory, over one connection: plain TCP, TLS 1.3 over TCP with the
// agents' own mutual-TLS configuration, and one stream of the agents' QUIC
// session (package transfer). None touches a disk or hashes, so the ratios
// compare the transports alone.
const (
	ModeTCP  = "tcp"
	ModeTLS  = "tls"
	ModeQUIC = "quic"
)

// TransferModes lists the modes in the order they run.
var TransferModes = []string{ModeTCP, ModeTLS, ModeQUIC}

// benchFrame opens a benchmark stream: its payload is the byte count that
// follows. It is outside transfer's reserved frame types, as a caller's
// stream must be.
const benchFrame uint64 = 0x6263

// ack is the one byte the receiver sends once it has read every byte, so
// that the sender's clock covers delivery, not just queueing.
const ack = 'k'

// chunk is the write and read size: large enough that syscalls and frame
// overhead do not dominate plain TCP.
const chunk = 1 << 20

// TransferMode is one mode's measurement.
type TransferMode struct {
	Mode        string  `json:"mode"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	MBps        float64 `json:"mb_per_s"`
	HandshakeMs float64 `json:"handshake_ms"`
	// SenderCPU and ReceiverCPU are each side's process CPU time (user +
	// system), in seconds: on 2 shared cores they explain the rates.
	SenderCPU   float64 `json:"sender_cpu_s,omitempty"`
	ReceiverCPU float64 `json:"receiver_cpu_s,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// TransferResult is the micro-benchmark: every mode on the same path in
// the same run, and the ratios the issue asks for.
type TransferResult struct {
	From        string         `json:"from"`
	To          string         `json:"to"`
	Bytes       int64          `json:"bytes"`
	Modes       []TransferMode `json:"modes"`
	QUICOverTCP float64        `json:"quic_over_tcp"`
	TLSOverTCP  float64        `json:"tls_over_tcp"`
}

// Ratios fills QUICOverTCP and TLSOverTCP from the modes measured.
func (r *TransferResult) Ratios() {
	rate := map[string]float64{}
	for _, m := range r.Modes {
		if m.Error == "" {
			rate[m.Mode] = m.MBps
		}
	}
	r.QUICOverTCP, r.TLSOverTCP = 0, 0
	if tcp := rate[ModeTCP]; tcp > 0 {
		r.QUICOverTCP = rate[ModeQUIC] / tcp
		r.TLSOverTCP = rate[ModeTLS] / tcp
	}
}

// TransferServer receives one benchmark transfer.
type TransferServer struct {
	mode string
	tcp  net.Listener
	quic *transfer.Listener
}

// ListenTransfer listens on addr for one transfer of mode. TLS and QUIC
// use transfer.ServerTLS: mutual TLS, admitting only the allowed nodes.
func ListenTransfer(ctx context.Context, mode, addr string, id *transfer.Identity, allowed []string, log *slog.Logger) (*TransferServer, error) {
	s := &TransferServer{mode: mode}
	switch mode {
	case ModeTCP, ModeTLS:
		l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s on %s: %w", mode, addr, err)
		}
		if mode == ModeTLS {
			l = tls.NewListener(l, transfer.ServerTLS(id, allowed))
		}
		s.tcp = l
	case ModeQUIC:
		l, err := transfer.Listen(ctx, addr, transfer.ServerTLS(id, allowed), transfer.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("listen %s on %s: %w", mode, addr, err)
		}
		s.quic = l
	default:
		return nil, fmt.Errorf("unknown transfer mode %q (want tcp, tls or quic)", mode)
	}
	return s, nil
}

// Addr is where the server listens.
func (s *TransferServer) Addr() string {
	if s.quic != nil {
		return s.quic.Addr().String()
	}
	return s.tcp.Addr().String()
}

// Close stops listening.
func (s *TransferServer) Close() error {
	if s.quic != nil {
		return s.quic.Close()
	}
	return s.tcp.Close()
}

// ServeOne accepts one transfer, reads all its bytes, acknowledges them
// and returns how many arrived.
func (s *TransferServer) ServeOne(ctx context.Context) (int64, error) {
	if s.quic != nil {
		sess, err := s.quic.Accept(ctx)
		if err != nil {
			return 0, err
		}
		defer sess.Close()
		stop := context.AfterFunc(ctx, func() { sess.CloseWithError(transfer.ErrCodeCanceled, "benchmark cancelled") })
		defer stop()
		st, err := sess.AcceptStream(ctx)
		if err != nil {
			return 0, err
		}
		n, err := receive(st)
		// Wait for the sender to close the session after reading the ack:
		// closing first could drop the ack in flight.
		select {
		case <-sess.Context().Done():
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
		return n, err
	}
	stop := context.AfterFunc(ctx, func() { s.tcp.Close() })
	defer stop()
	conn, err := s.tcp.Accept()
	if err != nil {
		return 0, fmt.Errorf("accept %s: %w", s.mode, err)
	}
	defer conn.Close()
	cstop := context.AfterFunc(ctx, func() { conn.Close() })
	defer cstop()
	return receive(conn)
}

// receive reads the header, then exactly that many bytes, then acks.
func receive(rw io.ReadWriter) (int64, error) {
	typ, payload, err := transfer.ReadFrame(rw, 8)
	if err != nil {
		return 0, fmt.Errorf("read benchmark header: %w", err)
	}
	if typ != benchFrame || len(payload) != 8 {
		return 0, fmt.Errorf("read benchmark header: frame type %#x with %d bytes, want %#x with 8", typ, len(payload), benchFrame)
	}
	want := int64(binary.BigEndian.Uint64(payload))
	buf := make([]byte, chunk)
	var got int64
	for got < want {
		k, err := rw.Read(buf[:min(int64(len(buf)), want-got)])
		got += int64(k)
		if err != nil {
			return got, fmt.Errorf("read benchmark data after %d of %d bytes: %w", got, want, err)
		}
	}
	if _, err := rw.Write([]byte{ack}); err != nil {
		return got, fmt.Errorf("send benchmark ack: %w", err)
	}
	return got, nil
}

// SendTransfer connects to addr and sends n bytes in mode, timing from the
// first byte written to the receiver's acknowledgement. The handshake is
// timed apart. TLS and QUIC use transfer.ClientTLS, expecting peer.
func SendTransfer(ctx context.Context, mode, addr string, id *transfer.Identity, peer string, n int64) (TransferMode, error) {
	res := TransferMode{Mode: mode, Bytes: n}
	start := time.Now()
	var rw io.ReadWriter
	switch mode {
	case ModeTCP, ModeTLS:
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return res, fmt.Errorf("dial %s %s: %w", mode, addr, err)
		}
		defer conn.Close()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		rw = conn
		if mode == ModeTLS {
			tc := tls.Client(conn, transfer.ClientTLS(id, peer))
			if err := tc.HandshakeContext(ctx); err != nil {
				return res, fmt.Errorf("TLS handshake with %s at %s: %w", peer, addr, err)
			}
			rw = tc
		}
	case ModeQUIC:
		sess, err := transfer.Dial(ctx, addr, transfer.ClientTLS(id, peer))
		if err != nil {
			return res, err
		}
		defer sess.Close()
		stop := context.AfterFunc(ctx, func() { sess.CloseWithError(transfer.ErrCodeCanceled, "benchmark cancelled") })
		defer stop()
		st, err := sess.OpenStream(ctx)
		if err != nil {
			return res, err
		}
		rw = st
	default:
		return res, fmt.Errorf("unknown transfer mode %q (want tcp, tls or quic)", mode)
	}
	res.HandshakeMs = ms(time.Since(start))
	t0 := time.Now()
	if err := send(rw, n); err != nil {
		return res, fmt.Errorf("send %d bytes over %s to %s: %w", n, mode, addr, err)
	}
	res.Seconds = time.Since(t0).Seconds()
	if res.Seconds > 0 {
		res.MBps = float64(n) / 1e6 / res.Seconds
	}
	return res, nil
}

func send(rw io.ReadWriter, n int64) error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(n))
	if err := transfer.WriteFrame(rw, benchFrame, hdr[:]); err != nil {
		return err
	}
	// Random bytes, so that nothing on the path could gain by compressing.
	buf := make([]byte, chunk)
	rand.Read(buf)
	for left := n; left > 0; {
		k, err := rw.Write(buf[:min(int64(len(buf)), left)])
		left -= int64(k)
		if err != nil {
			return err
		}
	}
	var a [1]byte
	if _, err := io.ReadFull(rw, a[:]); err != nil {
		return fmt.Errorf("wait for the receiver's ack: %w", err)
	}
	if a[0] != ack {
		return errors.New("receiver sent a wrong ack")
	}
	return nil
}
