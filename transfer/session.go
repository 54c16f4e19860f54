package transfer

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// QUIC settings. Windows are large because checkpoint images are hundreds of
// MiB and a small window caps throughput at window/RTT.
const (
	DefaultIdleTimeout    = 15 * time.Second
	keepAlivePeriod       = 2 * time.Second
	handshakeIdleTimeout  = 5 * time.Second
	initialStreamWindow   = 4 << 20
	maxStreamWindow       = 32 << 20
	initialConnWindow     = 8 << 20
	maxConnWindow         = 64 << 20
	maxIncomingStreams    = 256
	maxIncomingUniStreams = 64
)

type options struct {
	idleTimeout time.Duration
	log         *slog.Logger
}

// Option tunes Listen and Dial.
type Option func(*options)

// WithIdleTimeout sets how long a session may go without hearing from the
// peer before it is declared dead (the lower of both sides' values applies).
// Keep-alives are sent every 2s, so this is how fast a dead peer is noticed.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithLogger sets the logger for refused peers and buffer warnings.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

func buildOptions(opts []Option) options {
	o := options{idleTimeout: DefaultIdleTimeout, log: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o options) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           handshakeIdleTimeout,
		MaxIdleTimeout:                 o.idleTimeout,
		KeepAlivePeriod:                keepAlivePeriod,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         maxStreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     maxConnWindow,
		MaxIncomingStreams:             maxIncomingStreams,
		MaxIncomingUniStreams:          maxIncomingUniStreams,
	}
}

// Dial connects to the agent at addr. tlsConf is normally ClientTLS, whose
// ServerName is the node we expect to answer. A refused handshake is
// explained in the error ("the peer refused our certificate: …").
func Dial(ctx context.Context, addr string, tlsConf *tls.Config, opts ...Option) (*Session, error) {
	if tlsConf == nil {
		return nil, fmt.Errorf("connect to %s: no TLS config", addr)
	}
	o := buildOptions(opts)
	conn, err := quic.DialAddr(ctx, addr, tlsConf, o.quicConfig())
	if err != nil {
		if why := explainHandshake(err); why != "" {
			return nil, fmt.Errorf("connect to %s at %s: %s: %w", tlsConf.ServerName, addr, why, err)
		}
		return nil, fmt.Errorf("connect to %s at %s: %w", tlsConf.ServerName, addr, err)
	}
	s, err := newSession(conn, o.log)
	if err != nil {
		return nil, fmt.Errorf("connect to %s at %s: %w", tlsConf.ServerName, addr, err)
	}
	// In TLS 1.3 the client finishes its handshake before the server has
	// checked the client's certificate, so a refused client would otherwise
	// see a session that dies a moment later. The server's hello proves it
	// admitted us.
	select {
	case <-s.hello:
		return s, nil
	case <-s.conn.Context().Done():
		err := context.Cause(s.conn.Context())
		if why := explainHandshake(err); why != "" {
			return nil, fmt.Errorf("connect to %s at %s: %s: %w", tlsConf.ServerName, addr, why, err)
		}
		return nil, fmt.Errorf("connect to %s at %s: %w", tlsConf.ServerName, addr, fromPeer(err))
	case <-ctx.Done():
		_ = s.CloseWithError(ErrCodeCanceled, "dial canceled")
		return nil, fmt.Errorf("connect to %s at %s: waiting for the peer to admit us: %w",
			tlsConf.ServerName, addr, context.Cause(ctx))
	}
}

// Session is an authenticated QUIC connection to one peer agent. It carries
// any number of streams: the caller's own (OpenStream/AcceptStream) and those
// of file transfers (SendFiles/ReceiveFiles), routed by their first frame.
type Session struct {
	conn *quic.Conn
	peer string
	log  *slog.Logger

	hello     chan struct{} // closed when the server's hello arrives (client side)
	helloOnce sync.Once
	streams   chan *Stream // caller streams, for AcceptStream
	manifests chan *Stream // file transfer control streams, for ReceiveFiles

	mu        sync.Mutex
	transfers map[int64]*fileQueue // by control stream ID

	sent, received atomic.Int64 // stream payload bytes, both directions
}

// newSession accepts conn only if TLS verified a peer certificate and
// negotiated our ALPN; a tls.Config without verification must not yield an
// authenticated-looking session.
func newSession(conn *quic.Conn, log *slog.Logger) (*Session, error) {
	cs := conn.ConnectionState().TLS
	refuse := func(why string) error {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(ErrCodeRefused), why)
		return &PeerRefusedError{Reason: why}
	}
	if cs.NegotiatedProtocol != ALPN {
		return nil, refuse(fmt.Sprintf("negotiated protocol %q, want %q", cs.NegotiatedProtocol, ALPN))
	}
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return nil, refuse("peer certificate was not verified (TLS config without verification?)")
	}
	node, err := CertNode(cs.PeerCertificates[0])
	if err != nil {
		return nil, refuse(err.Error())
	}
	s := &Session{
		conn:      conn,
		peer:      node,
		log:       log.With("peer", node),
		hello:     make(chan struct{}),
		streams:   make(chan *Stream),
		manifests: make(chan *Stream),
		transfers: make(map[int64]*fileQueue),
	}
	go s.acceptBidi()
	go s.acceptUni()
	return s, nil
}

// PeerNode is the node name from the peer's verified certificate.
func (s *Session) PeerNode() string { return s.peer }

// Context ends when the session closes; context.Cause says why.
func (s *Session) Context() context.Context { return s.conn.Context() }

// LocalAddr and RemoteAddr are the UDP endpoints.
func (s *Session) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// OpenStream opens a bidirectional stream, waiting for stream credit if the
// peer's limit is reached. The peer sees the stream only once something is
// written, and routes it by its first frame: begin with WriteFrame/WriteMsg
// of a type outside the reserved range.
func (s *Session) OpenStream(ctx context.Context) (*Stream, error) {
	qs, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", s.peer, fromPeer(err))
	}
	return &Stream{qs: qs, sess: s}, nil
}

// AcceptStream returns the next stream the peer opened that is not part of
// a file transfer.
func (s *Session) AcceptStream(ctx context.Context) (*Stream, error) {
	select {
	case st := <-s.streams:
		return st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("accept stream from %s: %w", s.peer, ctx.Err())
	case <-s.conn.Context().Done():
		return nil, fmt.Errorf("accept stream from %s: session closed: %w", s.peer, s.closeCause())
	}
}

// CloseWithError closes the session, telling the peer code and msg.
func (s *Session) CloseWithError(code ErrorCode, msg string) error {
	return s.conn.CloseWithError(quic.ApplicationErrorCode(code), msg)
}

// Close closes the session normally.
func (s *Session) Close() error { return s.CloseWithError(ErrCodeNone, "") }

// Stats are a session's byte counts. Wire counts include QUIC overhead and
// retransmissions; stream counts are payload only.
type Stats struct {
	WireSent, WireReceived     uint64
	StreamSent, StreamReceived int64
	SmoothedRTT                time.Duration
}

// Stats returns the session's byte counts so far.
func (s *Session) Stats() Stats {
	cs := s.conn.ConnectionStats()
	return Stats{
		WireSent: cs.BytesSent, WireReceived: cs.BytesReceived,
		StreamSent: s.sent.Load(), StreamReceived: s.received.Load(),
		SmoothedRTT: cs.SmoothedRTT,
	}
}

// sendHello tells a dialing client that the server admitted it.
func (s *Session) sendHello(ctx context.Context) error {
	ss, err := s.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if err := WriteFrame(ss, frameHello, nil); err != nil {
		return err
	}
	return ss.Close()
}

func (s *Session) gotHello() { s.helloOnce.Do(func() { close(s.hello) }) }

func (s *Session) closeCause() error {
	return fromPeer(context.Cause(s.conn.Context()))
}
