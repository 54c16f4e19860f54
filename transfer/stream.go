package transfer

import (
	"context"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// firstFrameTimeout bounds how long a new incoming stream may stay silent
// before it is routed; a stream is routed by its first frame.
const firstFrameTimeout = 10 * time.Second

// Stream is a bidirectional stream of a Session. Errors the peer caused
// (reset, stop sending, session closed with a code) come back as *PeerError.
type Stream struct {
	qs   *quic.Stream
	sess *Session
}

// Read reads stream data; io.EOF once the peer closed its side.
func (st *Stream) Read(p []byte) (int, error) {
	n, err := st.qs.Read(p)
	st.sess.received.Add(int64(n))
	return n, fromPeer(err)
}

// Write writes stream data, blocking on flow control.
func (st *Stream) Write(p []byte) (int, error) {
	n, err := st.qs.Write(p)
	st.sess.sent.Add(int64(n))
	return n, fromPeer(err)
}

// Close ends our sending side (the peer reads io.EOF); reading continues.
func (st *Stream) Close() error { return st.qs.Close() }

// CancelRead tells the peer to stop sending, with code.
func (st *Stream) CancelRead(code ErrorCode) { st.qs.CancelRead(quic.StreamErrorCode(code)) }

// CancelWrite abandons our sending side; the peer's Read fails with code.
func (st *Stream) CancelWrite(code ErrorCode) { st.qs.CancelWrite(quic.StreamErrorCode(code)) }

// Abort cancels both directions with code.
func (st *Stream) Abort(code ErrorCode) {
	st.CancelWrite(code)
	st.CancelRead(code)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline work as on net.Conn.
func (st *Stream) SetDeadline(t time.Time) error      { return st.qs.SetDeadline(t) }
func (st *Stream) SetReadDeadline(t time.Time) error  { return st.qs.SetReadDeadline(t) }
func (st *Stream) SetWriteDeadline(t time.Time) error { return st.qs.SetWriteDeadline(t) }

// Context ends when the sending side is closed or canceled, or the session ends.
func (st *Stream) Context() context.Context { return st.qs.Context() }

// ID is the QUIC stream ID, unique within the session and the same on both ends.
func (st *Stream) ID() int64 { return int64(st.qs.StreamID()) }

// AbortOnDone aborts st with ErrCodeCanceled when ctx ends, which unblocks
// Read and Write (they take no context). Call the returned stop when done.
func (st *Stream) AbortOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { st.Abort(ErrCodeCanceled) })
}

// fileStream is an incoming file data stream whose header has been read.
type fileStream struct {
	rs    *quic.ReceiveStream
	index uint64
}

// acceptBidi routes incoming bidirectional streams: file transfer control
// streams to ReceiveFiles, everything else to AcceptStream.
func (s *Session) acceptBidi() {
	ctx := s.conn.Context()
	for {
		qs, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return // session closed
		}
		go s.routeBidi(ctx, &Stream{qs: qs, sess: s})
	}
}

func (s *Session) routeBidi(ctx context.Context, st *Stream) {
	// Peek, not read: the caller's first frame must stay in the stream.
	_ = st.qs.SetReadDeadline(time.Now().Add(firstFrameTimeout))
	typ, err := quicvarint.Peek(st.qs)
	_ = st.qs.SetReadDeadline(time.Time{})
	if err != nil {
		s.log.Debug("dropping stream that sent no frame", "stream", st.ID(), "err", err)
		st.Abort(ErrCodeProtocol)
		return
	}
	queue := s.streams
	switch {
	case typ == frameManifest:
		queue = s.manifests
	case IsReservedFrameType(typ):
		s.log.Warn("dropping stream that starts with an unexpected frame", "stream", st.ID(), "type", typ)
		st.Abort(ErrCodeProtocol)
		return
	}
	select {
	case queue <- st:
	case <-ctx.Done():
		st.Abort(ErrCodeCanceled)
	}
}

// acceptUni routes incoming unidirectional streams, which only this package
// uses: the server's hello, and file streams, which go to the ReceiveFiles
// call whose control stream they name.
func (s *Session) acceptUni() {
	ctx := s.conn.Context()
	for {
		rs, err := s.conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		go s.routeUni(ctx, rs)
	}
}

func (s *Session) routeUni(ctx context.Context, rs *quic.ReceiveStream) {
	_ = rs.SetReadDeadline(time.Now().Add(firstFrameTimeout))
	typ, payload, err := ReadFrame(rs, 32)
	_ = rs.SetReadDeadline(time.Time{})
	if err == nil && typ == frameHello {
		s.gotHello()
		rs.CancelRead(quic.StreamErrorCode(ErrCodeNone)) // nothing else is sent on it
		return
	}
	var transfer int64
	var index uint64
	if err == nil {
		transfer, index, err = parseFileHeader(typ, payload)
	}
	if err != nil {
		s.log.Warn("dropping unidirectional stream with a bad first frame", "stream", rs.StreamID(), "err", err)
		rs.CancelRead(quic.StreamErrorCode(ErrCodeProtocol))
		return
	}
	s.mu.Lock()
	q, ok := s.transfers[transfer]
	s.mu.Unlock()
	if !ok {
		// The transfer already ended (e.g. failed): nobody wants these bytes.
		rs.CancelRead(quic.StreamErrorCode(ErrCodeCanceled))
		return
	}
	select {
	case q.ch <- fileStream{rs: rs, index: index}:
	case <-q.done:
		rs.CancelRead(quic.StreamErrorCode(ErrCodeCanceled))
	case <-ctx.Done():
		rs.CancelRead(quic.StreamErrorCode(ErrCodeCanceled))
	}
}

// fileQueue hands file streams of one transfer to its ReceiveFiles call.
type fileQueue struct {
	ch   chan fileStream
	done chan struct{} // closed when the transfer stops taking streams
}

// register makes file streams naming transfer (a control stream ID) go to the
// returned channel until unregister is called; later ones are canceled.
func (s *Session) register(transfer int64) (ch <-chan fileStream, unregister func()) {
	q := &fileQueue{ch: make(chan fileStream), done: make(chan struct{})}
	s.mu.Lock()
	s.transfers[transfer] = q
	s.mu.Unlock()
	return q.ch, func() {
		s.mu.Lock()
		delete(s.transfers, transfer)
		s.mu.Unlock()
		close(q.done)
	}
}

// parseFileHeader decodes the frame that opens a file stream: the transfer
// (the control stream ID) and the index of the file in the manifest.
func parseFileHeader(typ uint64, payload []byte) (transfer int64, index uint64, err error) {
	if typ != frameFile {
		return 0, 0, fmt.Errorf("first frame %#x, want file header: %w", typ, ErrProtocol)
	}
	id, n, err := quicvarint.Parse(payload)
	if err != nil {
		return 0, 0, fmt.Errorf("file header: %v: %w", err, ErrProtocol)
	}
	index, m, err := quicvarint.Parse(payload[n:])
	if err != nil || n+m != len(payload) {
		return 0, 0, fmt.Errorf("malformed file header: %w", ErrProtocol)
	}
	return int64(id), index, nil
}

func appendFileHeader(b []byte, transfer int64, index int) []byte {
	var p [16]byte
	payload := quicvarint.Append(quicvarint.Append(p[:0], uint64(transfer)), uint64(index))
	b = quicvarint.Append(b, frameFile)
	b = quicvarint.Append(b, uint64(len(payload)))
	return append(b, payload...)
}
