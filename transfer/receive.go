package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// Receiver defaults, used where a Limits field is zero.
const (
	DefaultMaxTotal    int64  = 64 << 30
	DefaultMaxFiles    int    = 100_000
	DefaultMaxManifest uint64 = 32 << 20
)

// Limits bound what ReceiveFiles accepts from a peer. A zero field means its
// default; limits are checked against the manifest before any file is written.
type Limits struct {
	MaxTotal    int64  // bytes across all files
	MaxFiles    int    // number of files
	MaxManifest uint64 // size of the encoded manifest
}

func (l Limits) withDefaults() Limits {
	if l.MaxTotal <= 0 {
		l.MaxTotal = DefaultMaxTotal
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxManifest == 0 {
		l.MaxManifest = DefaultMaxManifest
	}
	return l
}

// ReceiveFiles waits for the peer's next SendFiles on sess and writes its
// files under dir (created 0700 if missing; files 0600, never overwriting),
// hashing as they arrive. It returns the manifest and the file bytes received
// once every file matches it. On any failure, including a file whose size or
// SHA-256 differs (ErrDigestMismatch) or ctx ending, it removes everything it
// wrote and tells the sender why.
func ReceiveFiles(ctx context.Context, sess *Session, dir string, limits Limits) (*Manifest, int64, error) {
	m, n, err := receiveFiles(ctx, sess, dir, limits.withDefaults())
	if err != nil {
		return nil, n, fmt.Errorf("receive files from %s into %s: %w", sess.peer, dir, err)
	}
	return m, n, nil
}

func receiveFiles(ctx context.Context, sess *Session, dir string, lim Limits) (*Manifest, int64, error) {
	var ctl *Stream
	select {
	case ctl = <-sess.manifests:
	case <-ctx.Done():
		return nil, 0, context.Cause(ctx)
	case <-sess.Context().Done():
		return nil, 0, fmt.Errorf("session closed: %w", sess.closeCause())
	}
	// Until the transfer runs, only this read blocks; ctx must unblock it.
	stop := ctl.AbortOnDone(ctx)
	m, err := readManifest(ctl, lim)
	if !stop() {
		err = context.Cause(ctx)
	}
	if err != nil {
		abortControl(ctl, err)
		return nil, 0, err
	}
	w, err := openDirWriter(dir)
	if err != nil {
		abortControl(ctl, err)
		return nil, 0, err
	}
	defer w.close()
	files, unregister := sess.register(ctl.ID())
	defer unregister()
	if err := WriteFrame(ctl, frameAccept, nil); err != nil {
		err = orCause(ctx, err)
		abortControl(ctl, err)
		return nil, 0, errors.Join(err, w.removeAll())
	}

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ctlErr := make(chan error, 1)
	go func() {
		err := watchSender(ctl)
		if err != nil {
			cancel(err)
		}
		ctlErr <- err
	}()

	received, err := receiveAll(rctx, sess, w, m, files)
	if err != nil {
		err = preferExplained(err, ctlErr)
		abortControl(ctl, err)
		return nil, received, errors.Join(err, w.removeAll())
	}
	if err := WriteMsg(ctl, frameDone, doneMsg{Bytes: received}); err != nil {
		err = orCause(ctx, err)
		abortControl(ctl, err)
		return nil, received, errors.Join(err, w.removeAll())
	}
	_ = ctl.Close()
	// The sender closes its side after its last file; if that has not been
	// read yet, nothing in it matters any more.
	ctl.CancelRead(ErrCodeNone)
	<-ctlErr
	return m, received, nil
}

func readManifest(ctl *Stream, lim Limits) (*Manifest, error) {
	typ, payload, err := ReadFrame(ctl, lim.MaxManifest)
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return nil, fmt.Errorf("manifest: %w: %w", err, ErrLimitExceeded)
	case err != nil:
		return nil, fmt.Errorf("read manifest: %w", err)
	case typ != frameManifest:
		return nil, fmt.Errorf("control stream starts with frame %#x: %w", typ, ErrProtocol)
	}
	m, err := ParseManifest(payload)
	if err != nil {
		return nil, err
	}
	if len(m.Files) > lim.MaxFiles {
		return nil, fmt.Errorf("transfer of %d files exceeds the limit of %d: %w", len(m.Files), lim.MaxFiles, ErrLimitExceeded)
	}
	if total := m.TotalBytes(); total > lim.MaxTotal {
		return nil, fmt.Errorf("transfer of %d bytes exceeds the limit of %d: %w", total, lim.MaxTotal, ErrLimitExceeded)
	}
	return m, nil
}

// watchSender reads the sender's side of the control stream. A clean end
// means the sender has sent everything; an error frame or a reset is the
// sender giving up, which must stop the receive at once.
func watchSender(ctl *Stream) error {
	for {
		typ, payload, err := ReadFrame(ctl, maxControlFrame)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		case typ == frameError:
			return decodeErrorMsg(payload)
		}
	}
}

// receiveAll takes each file's stream as it arrives and receives the files
// in parallel; the sender's Concurrency bounds how many.
func receiveAll(ctx context.Context, sess *Session, w *dirWriter, m *Manifest, files <-chan fileStream) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	got := make([]bool, len(m.Files))
	var total atomic.Int64
	var wg sync.WaitGroup
	for remaining := len(m.Files); remaining > 0; remaining-- {
		var fs fileStream
		select {
		case fs = <-files:
		case <-ctx.Done():
			wg.Wait()
			return total.Load(), context.Cause(ctx)
		}
		if fs.index >= uint64(len(got)) || got[fs.index] {
			fs.rs.CancelRead(quic.StreamErrorCode(ErrCodeProtocol))
			cancel(fmt.Errorf("file stream for index %d: out of range or repeated: %w", fs.index, ErrProtocol))
			break
		}
		got[fs.index] = true
		f := m.Files[fs.index]
		wg.Go(func() {
			if err := receiveFile(ctx, sess, w, f, fs.rs, &total); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return total.Load(), context.Cause(ctx)
}

func receiveFile(ctx context.Context, sess *Session, w *dirWriter, f File, rs *quic.ReceiveStream, total *atomic.Int64) error {
	stop := context.AfterFunc(ctx, func() { rs.CancelRead(quic.StreamErrorCode(ErrCodeCanceled)) })
	defer stop()
	out, err := w.create(f.Path)
	if err != nil {
		rs.CancelRead(quic.StreamErrorCode(ErrCodeInternal))
		return err
	}
	defer out.Close()
	h := sha256.New()
	buf := make([]byte, min(copyBufferSize, f.Size+1))
	var n int64
	for {
		k, rerr := rs.Read(buf)
		if k > 0 {
			sess.received.Add(int64(k))
			total.Add(int64(k))
			if n+int64(k) > f.Size {
				rs.CancelRead(quic.StreamErrorCode(ErrCodeDigest))
				return fmt.Errorf("file %s: more than the %d bytes the manifest says: %w", f.Path, f.Size, ErrDigestMismatch)
			}
			h.Write(buf[:k])
			if _, err := out.Write(buf[:k]); err != nil {
				rs.CancelRead(quic.StreamErrorCode(ErrCodeInternal))
				return fmt.Errorf("write %s: %w", f.Path, err)
			}
			n += int64(k)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("receive %s: %w", f.Path, orCause(ctx, fromPeer(rerr)))
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	return compareFile(f, n, hex.EncodeToString(h.Sum(nil)))
}
