package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// A file transfer uses one control stream and one unidirectional stream per
// file:
//
//	sender                               receiver
//	control: frameManifest {manifest} →
//	                                   ← frameAccept, or frameError {code,msg}
//	file stream: frameFile {transfer, index} + raw bytes, FIN  (up to Concurrency at once)
//	control: FIN                      →
//	                                   ← frameDone {bytes}, or frameError {code,msg}
//
// The transfer is named by the control stream's ID, which both ends know.
// Either side may send frameError on the control stream at any time; it
// carries the reason that a stream reset alone cannot.

// DefaultConcurrency is how many files SendFiles moves at once by default.
const DefaultConcurrency = 4

const (
	maxControlFrame = 64 << 10
	copyBufferSize  = 256 << 10
	// explainWait is how long a side whose data stream was reset waits for
	// the peer's error frame, which says why.
	explainWait = time.Second
)

type doneMsg struct {
	Bytes int64 `json:"bytes"`
}

type errorMsg struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

func decodeErrorMsg(payload []byte) error {
	var em errorMsg
	if err := json.Unmarshal(payload, &em); err != nil {
		return fmt.Errorf("undecodable error frame from peer: %v: %w", err, ErrProtocol)
	}
	return &PeerError{Code: em.Code, Message: em.Message}
}

// abortControl ends our use of a control stream after a failure. Unless the
// peer caused it, the peer first gets an error frame saying why; canceling
// the read side last unblocks whoever still reads the stream.
func abortControl(ctl *Stream, err error) {
	code := Code(err)
	if pe, ok := errors.AsType[*PeerError](err); ok && pe.Err == nil {
		ctl.Abort(code) // the peer told us why; nothing to tell it back
		return
	}
	_ = ctl.SetWriteDeadline(time.Now().Add(explainWait))
	_ = WriteMsg(ctl, frameError, errorMsg{Code: code, Message: err.Error()})
	_ = ctl.Close()
	ctl.CancelRead(code)
}

// preferExplained returns the peer's explanation from ctlErr when err is
// only a stream reset by the peer, waiting briefly for it to arrive.
func preferExplained(err error, ctlErr <-chan error) error {
	pe, ok := errors.AsType[*PeerError](err)
	if !ok || pe.Err == nil {
		return err
	}
	select {
	case cerr := <-ctlErr:
		if cerr != nil {
			return cerr
		}
	case <-time.After(explainWait):
	}
	return err
}

// SendOptions tune SendFiles; the zero value is ready to use.
type SendOptions struct {
	// Concurrency is how many files are in flight at once (0: DefaultConcurrency).
	Concurrency int
	// Progress, if set, receives the running total of file bytes sent.
	// Calls are serialized.
	Progress func(sent int64)
	// Corrupt is a fault hook for tests: it may change b, the bytes of path
	// at offset off, just before they are sent. It is called concurrently.
	Corrupt func(path string, off int64, b []byte)
}

// SendFiles sends the files of m, read from dir, to the peer's ReceiveFiles.
// It returns the file bytes sent and succeeds only once the receiver has
// verified every file against m. The receiver's refusal or failure comes
// back as a *PeerError that matches ErrDigestMismatch, ErrLimitExceeded, …
func SendFiles(ctx context.Context, sess *Session, dir string, m *Manifest, opts SendOptions) (int64, error) {
	sent, err := sendFiles(ctx, sess, dir, m, opts)
	if err != nil {
		return sent, fmt.Errorf("send %d files from %s to %s: %w", len(m.Files), dir, sess.peer, err)
	}
	return sent, nil
}

func sendFiles(ctx context.Context, sess *Session, dir string, m *Manifest, opts SendOptions) (int64, error) {
	if err := m.validate(); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctl, err := sess.OpenStream(ctx)
	if err != nil {
		return 0, err
	}
	// Until the transfer runs, only these calls block; ctx must unblock them.
	stop := ctl.AbortOnDone(ctx)
	if err := WriteMsg(ctl, frameManifest, m); err != nil {
		stop()
		err = orCause(ctx, err)
		ctl.Abort(Code(err))
		return 0, fmt.Errorf("send manifest: %w", err)
	}
	typ, payload, err := ReadFrame(ctl, maxControlFrame)
	if !stop() {
		err = context.Cause(ctx)
	}
	switch {
	case err != nil:
		err = orCause(ctx, err)
		abortControl(ctl, err)
		return 0, fmt.Errorf("wait for receiver to accept: %w", err)
	case typ == frameError:
		err := decodeErrorMsg(payload)
		abortControl(ctl, err)
		return 0, err
	case typ != frameAccept:
		err := fmt.Errorf("receiver answered the manifest with frame %#x: %w", typ, ErrProtocol)
		abortControl(ctl, err)
		return 0, err
	}

	ctlErr := make(chan error, 1)
	go func() {
		err := awaitDone(ctl)
		if err != nil {
			cancel(err) // the receiver gave up: stop sending at once
		}
		ctlErr <- err
	}()

	sent, err := sendAll(ctx, sess, root, ctl.ID(), m, opts)
	if err != nil {
		err = preferExplained(err, ctlErr)
		abortControl(ctl, err)
		return sent, err
	}
	// The receiver may already have confirmed and stopped reading, which
	// makes Close fail; its answer below is what decides success.
	_ = ctl.Close()
	select {
	case err := <-ctlErr:
		return sent, err
	case <-ctx.Done():
		err := context.Cause(ctx)
		abortControl(ctl, err)
		return sent, err
	}
}

// awaitDone reads the receiver's side of the control stream until it ends.
// Success is frameDone followed by the end of the stream.
func awaitDone(ctl *Stream) error {
	done := false
	for {
		typ, payload, err := ReadFrame(ctl, maxControlFrame)
		switch {
		case errors.Is(err, io.EOF) && done:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("receiver ended the transfer without confirming it: %w", ErrProtocol)
		case err != nil:
			return err
		case typ == frameError:
			return decodeErrorMsg(payload)
		case typ == frameDone:
			done = true
		}
		// Other frame types are skipped: a newer receiver may say more.
	}
}

// sendAll sends every file with up to opts.Concurrency streams at once.
func sendAll(ctx context.Context, sess *Session, root *os.Root, transfer int64, m *Manifest, opts SendOptions) (int64, error) {
	workers := opts.Concurrency
	if workers <= 0 {
		workers = DefaultConcurrency
	}
	var mu sync.Mutex
	var total int64
	count := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		total += int64(n)
		if opts.Progress != nil {
			opts.Progress(total)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(m.Files)) {
		wg.Go(func() {
			buf := make([]byte, copyBufferSize)
			for i := range next {
				if err := sendFile(ctx, sess, root, transfer, i, m.Files[i], buf, opts.Corrupt, count); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range m.Files {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return total, context.Cause(ctx)
}

func sendFile(ctx context.Context, sess *Session, root *os.Root, transfer int64, index int, f File,
	buf []byte, corrupt func(string, int64, []byte), count func(int)) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	fh, err := root.Open(filepath.FromSlash(f.Path))
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Size() != f.Size {
		return fmt.Errorf("file %s changed since the manifest was made (%d bytes, manifest says %d): %w",
			f.Path, st.Size(), f.Size, ErrDigestMismatch)
	}
	ss, err := sess.conn.OpenUniStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open stream for %s: %w", f.Path, orCause(ctx, fromPeer(err)))
	}
	stop := context.AfterFunc(ctx, func() { ss.CancelWrite(quic.StreamErrorCode(ErrCodeCanceled)) })
	defer stop()
	write := func(b []byte) error {
		n, err := ss.Write(b)
		sess.sent.Add(int64(n))
		if err != nil {
			return fmt.Errorf("send %s: %w", f.Path, orCause(ctx, fromPeer(err)))
		}
		return nil
	}
	if err := write(appendFileHeader(buf[:0], transfer, index)); err != nil {
		return err
	}
	for off := int64(0); off < f.Size; {
		chunk := buf[:min(int64(len(buf)), f.Size-off)]
		if _, err := io.ReadFull(fh, chunk); err != nil {
			ss.CancelWrite(quic.StreamErrorCode(ErrCodeInternal))
			return fmt.Errorf("read %s at %d: %w", f.Path, off, err)
		}
		if corrupt != nil {
			corrupt(f.Path, off, chunk)
		}
		if err := write(chunk); err != nil {
			return err
		}
		count(len(chunk))
		off += int64(len(chunk))
	}
	return ss.Close()
}

// orCause prefers the reason ctx was canceled over the error it caused
// (a canceled stream says only "canceled").
func orCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}
