package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// session is the probe's goburrow Transporter: it carries Modbus TCP ADUs
// over one TCP connection that it dials lazily and drops on request.
//
// Why not goburrow's own TCPClientHandler: in v0.1.0 its net.Conn is an
// unexported field dialled by a net.Dialer built inside connect(), with no
// hook for a dial function, a Control func or a local address, so the local
// port of a session cannot be learned without reflection or guessing from
// /proc. The probe therefore keeps goburrow for everything Modbus (the
// client API, request encoding, MBAP packaging, transaction-id, unit-id and
// exception checks, via modbus.NewClient2 with a TCPClientHandler as the
// Packager) and replaces only the byte pipe. Send mirrors goburrow's
// tcpTransporter.Send: lazy dial, one deadline of Timeout over the whole
// round trip, header then body, same length limits; like goburrow, it does
// not resynchronise after a stale reply, which is why the caller drops the
// session on any error. It omits goburrow's idle-close timer: the probe
// never idles.
type session struct {
	ctx     context.Context
	target  string
	timeout time.Duration
	onDial  func(local *net.TCPAddr)

	mu   sync.Mutex
	conn net.Conn
}

// MBAP framing limits, as in goburrow's tcpclient.go.
const (
	mbapHeaderSize = 7
	mbapMaxADU     = 260
)

// Send writes one request ADU and reads one response ADU.
func (s *session) Send(req []byte) ([]byte, error) {
	conn, err := s.connection()
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return nil, fmt.Errorf("set deadline on %s: %w", s.target, err)
	}
	// interrupt may have run before the deadline above replaced its own.
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, fmt.Errorf("write to %s: %w", s.target, err)
	}
	var buf [mbapMaxADU]byte
	if _, err := io.ReadFull(conn, buf[:mbapHeaderSize]); err != nil {
		return nil, fmt.Errorf("read reply header from %s: %w", s.target, err)
	}
	// The length field counts the unit id (already read) and the PDU.
	n := int(binary.BigEndian.Uint16(buf[4:]))
	if n <= 1 || n > mbapMaxADU-mbapHeaderSize+1 {
		return nil, fmt.Errorf("reply from %s: MBAP length %d out of range", s.target, n)
	}
	end := mbapHeaderSize - 1 + n
	if _, err := io.ReadFull(conn, buf[mbapHeaderSize:end]); err != nil {
		return nil, fmt.Errorf("read reply body from %s: %w", s.target, err)
	}
	return append([]byte(nil), buf[:end]...), nil
}

// connection returns the open connection, dialling a new one if needed.
func (s *session) connection() (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn, nil
	}
	d := net.Dialer{Timeout: s.timeout}
	// A plain TCP session, as an HMI has, whatever Go's MPTCP default.
	d.SetMultipathTCP(false)
	conn, err := d.DialContext(s.ctx, "tcp", s.target)
	if err != nil {
		// net's *OpError already reads "dial tcp <target>: ...".
		return nil, err
	}
	s.conn = conn
	if local, ok := conn.LocalAddr().(*net.TCPAddr); ok && s.onDial != nil {
		s.onDial(local)
	}
	return conn, nil
}

// drop closes the connection, so that the next Send dials a new one. It
// reports whether there was a connection to close.
func (s *session) drop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return false
	}
	s.conn.Close()
	s.conn = nil
	return true
}

// interrupt makes a Send in progress fail now (the run is ending) without
// racing it for the connection.
func (s *session) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.SetDeadline(time.Now())
	}
}
