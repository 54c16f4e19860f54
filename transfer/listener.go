package transfer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	// acceptBacklog is how many admitted sessions may wait for Accept; more
	// are turned away so that an idle caller cannot pile up connections.
	acceptBacklog = 16
	// helloTimeout bounds sending the hello that completes a client's Dial.
	helloTimeout = 5 * time.Second
)

// Listener accepts mutually authenticated sessions from peer agents.
type Listener struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
	log *slog.Logger

	sessions chan *Session
	done     chan struct{} // closed when the accept loop ends
	err      error         // why it ended; read only after done is closed

	mu     sync.Mutex
	active map[*Session]struct{} // admitted and not yet closed
}

// Listen binds a UDP socket on addr and accepts QUIC sessions with tlsConf
// (normally ServerTLS). ctx bounds only the bind, as with net.ListenConfig.
// Sessions are admitted in the background, so a peer's Dial completes even
// before Accept is called. Closing the Listener ends every session it
// accepted.
func Listen(ctx context.Context, addr string, tlsConf *tls.Config, opts ...Option) (*Listener, error) {
	if tlsConf == nil {
		return nil, fmt.Errorf("listen on %s: no TLS config", addr)
	}
	o := buildOptions(opts)
	pc, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	udp := pc.(*net.UDPConn)
	conf := tlsConf.Clone()
	// A failed handshake never reaches Accept, so the server's reason for
	// refusing a peer would be lost without logging it here.
	if verify := conf.VerifyConnection; verify != nil {
		log := o.log
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			err := verify(cs)
			if err != nil {
				log.Warn("refused peer", "listen", udp.LocalAddr().String(), "err", err)
			}
			return err
		}
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(conf, o.quicConfig())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen on %s: %w", addr, err), tr.Close(), udp.Close())
	}
	warnSmallUDPBuffers(udp, o.log)
	l := &Listener{
		udp: udp, tr: tr, ln: ln, log: o.log,
		sessions: make(chan *Session, acceptBacklog),
		done:     make(chan struct{}),
		active:   make(map[*Session]struct{}),
	}
	go l.run()
	return l, nil
}

func (l *Listener) run() {
	defer close(l.done)
	for {
		conn, err := l.ln.Accept(context.Background())
		if err != nil {
			l.err = err
			return
		}
		go l.admit(conn)
	}
}

// admit checks a handshaken connection, greets the client (which completes
// its Dial) and queues the session for Accept.
func (l *Listener) admit(conn *quic.Conn) {
	s, err := newSession(conn, l.log)
	if err != nil {
		// One bad peer must not stop the listener.
		l.log.Warn("refused session", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	l.mu.Lock()
	l.active[s] = struct{}{}
	l.mu.Unlock()
	context.AfterFunc(s.Context(), func() {
		l.mu.Lock()
		delete(l.active, s)
		l.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(s.Context(), helloTimeout)
	defer cancel()
	if err := s.sendHello(ctx); err != nil {
		l.log.Warn("could not greet peer", "peer", s.peer, "err", err)
		_ = s.CloseWithError(ErrCodeInternal, "hello failed")
		return
	}
	select {
	case l.sessions <- s:
	default:
		l.log.Warn("accept backlog full, closing new session", "peer", s.peer)
		_ = s.CloseWithError(ErrCodeRefused, "listener busy")
	}
}

// Accept waits for the next admitted session.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	select {
	case s := <-l.sessions:
		return s, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("accept on %s: %w", l.Addr(), ctx.Err())
	case <-l.done:
		return nil, fmt.Errorf("accept on %s: %w", l.Addr(), l.err)
	}
}

// Addr is the bound UDP address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.udp.LocalAddr() }

// Close stops accepting and closes every session accepted from l, telling
// each peer (ErrCodeNone, "listener closed") rather than letting it time out.
func (l *Listener) Close() error {
	err := l.ln.Close()
	<-l.done
	l.mu.Lock()
	active := make([]*Session, 0, len(l.active))
	for s := range l.active {
		active = append(active, s)
	}
	l.mu.Unlock()
	for _, s := range active {
		_ = s.CloseWithError(ErrCodeNone, "listener closed")
	}
	return errors.Join(err, l.tr.Close(), l.udp.Close())
}
