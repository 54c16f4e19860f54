package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/checkpoint"
	"github.com/capsec/capsec/image"
	"github.com/capsec/capsec/netmove"
	"github.com/capsec/capsec/transfer"
)

func (a *Agent) servePeers(ctx context.Context, l *transfer.Listener) {
	for {
		sess, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("peer accept", "err", err)
				continue
			}
			return
		}
		go a.handlePeer(ctx, sess)
	}
}

// inMove is the destination side of one move. Its state only grows:
// prepared, received, restored, committed. Whatever is not committed when
// the session ends is torn down, so the source's copy stays the only one.
type inMove struct {
	a        *Agent
	sess     *transfer.Session
	ctl      *transfer.Stream
	pre      preflightMsg
	ep       *netmove.Endpoint
	imageDir string
	workDir  string
	jn       *journal

	claimed   bool
	received  bool
	restored  bool
	committed bool
}

func (a *Agent) handlePeer(ctx context.Context, sess *transfer.Session) {
	defer sess.CloseWithError(transfer.ErrCodeNone, "done")
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ctl, err := sess.AcceptStream(actx)
	cancel()
	if err != nil {
		a.log.Warn("peer sent no control stream", "peer", sess.PeerNode(), "err", err)
		return
	}
	m := &inMove{a: a, sess: sess, ctl: ctl}
	defer m.teardown()
	for {
		typ, raw, err := transfer.ReadMsg(ctl, maxControlMsg)
		if err != nil {
			if !m.committed {
				a.log.Warn("peer session ended before commit", "peer", sess.PeerNode(), "container", m.pre.Container.Name, "err", err)
			}
			return
		}
		var reply uint64 = msgAck
		var out any
		switch typ {
		case msgQuery:
			var q queryMsg
			var r queryReplyMsg
			if err = decodeMsg(typ, raw, msgQuery, &q); err == nil {
				r, err = a.answerQuery(q)
			}
			reply, out = msgQueryReply, r
		case msgPreflight:
			err = decodeMsg(typ, raw, msgPreflight, &m.pre)
			if err == nil {
				var ok preflightOKMsg
				ok, err = m.preflight()
				reply, out = msgPreflightOK, ok
			}
		case msgSendImage:
			var si sendImageMsg
			if err = decodeMsg(typ, raw, msgSendImage, &si); err == nil {
				err = m.receiveImage(ctx, si)
			}
		case msgPrepare:
			err = m.prepare(ctx)
		case msgCheckpoint:
			err = m.receiveCheckpoint(ctx)
		case msgRestore:
			var r restoredMsg
			r, err = m.restore(ctx)
			reply, out = msgRestored, r
		case msgCommit:
			err = m.commit()
		case msgAbort:
			var ab abortMsg
			decodeMsg(typ, raw, msgAbort, &ab)
			a.log.Info("move aborted by source", "container", m.pre.Container.Name, "reason", ab.Reason)
			m.teardown()
		default:
			err = fmt.Errorf("unknown message type %d: %w", typ, api.ErrInvalid)
		}
		if err != nil {
			a.log.Warn("incoming move step failed", "container", m.pre.Container.Name, "msg", typ, "err", err)
			sendError(ctl, err)
			m.teardown()
			continue
		}
		if err := sendMsg(ctl, reply, out); err != nil {
			return
		}
		if typ == msgAbort {
			return
		}
	}
}

func (m *inMove) preflight() (preflightOKMsg, error) {
	a, p := m.a, m.pre
	if peer := m.sess.PeerNode(); peer != p.From {
		return preflightOKMsg{}, fmt.Errorf("certificate is for %s but the move says it comes from %s: %w", peer, p.From, api.ErrPermission)
	}
	if p.Version != Version {
		return preflightOKMsg{}, fmt.Errorf("agent version %s here, %s on %s: %w", Version, p.Version, p.From, api.ErrFailedPrecondition)
	}
	if p.CRIU > a.criu.Version {
		return preflightOKMsg{}, fmt.Errorf("checkpoint made by CRIU %d, this node has %s: %w", p.CRIU, a.criu.VersionString, api.ErrFailedPrecondition)
	}
	name := p.Container.Name
	if err := a.claim(name, "move-in"); err != nil {
		return preflightOKMsg{}, err
	}
	m.claimed = true
	a.mu.Lock()
	a.inflight[p.MoveID] = true
	a.mu.Unlock()
	if _, err := a.getRecord(name); err == nil {
		return preflightOKMsg{}, fmt.Errorf("a container named %s already exists on %s: %w", name, a.cfg.Node, api.ErrAlreadyExists)
	}
	if _, err := a.rt.Get(name); err == nil {
		return preflightOKMsg{}, fmt.Errorf("runtime state for %s already exists on %s: %w", name, a.cfg.Node, api.ErrAlreadyExists)
	}
	if _, err := a.identity(&p.Container); err != nil {
		return preflightOKMsg{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(a.tmpfs(), &st); err == nil && int64(st.Bavail)*st.Bsize < 64<<20 {
		return preflightOKMsg{}, fmt.Errorf("image tmpfs %s on %s has under 64 MiB free: %w", a.tmpfs(), a.cfg.Node, api.ErrFailedPrecondition)
	}
	img, err := a.images.Get(p.Container.Digest)
	if err != nil {
		return preflightOKMsg{NeedImage: true}, nil
	}
	if err := a.policy.Check(img.Dir); err != nil {
		return preflightOKMsg{}, fmt.Errorf("image %s: %w: %w", img.Digest, err, api.ErrPermission)
	}
	return preflightOKMsg{}, nil
}

func (m *inMove) receiveImage(ctx context.Context, si sendImageMsg) error {
	if si.Digest != m.pre.Container.Digest {
		return fmt.Errorf("image %s is not the container's %s: %w", si.Digest, m.pre.Container.Digest, api.ErrInvalid)
	}
	dir, err := os.MkdirTemp(m.a.images.Dir, ".incoming-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, _, err := transfer.ReceiveFiles(ctx, m.sess, filepath.Join(dir, "tar"), transfer.Limits{MaxTotal: 1 << 30, MaxFiles: 1}); err != nil {
		return fmt.Errorf("receive image: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "tar", "bundle.tar"))
	if err != nil {
		return fmt.Errorf("receive image: %w", err)
	}
	defer f.Close()
	bundle := filepath.Join(dir, "bundle")
	if err := image.Unpack(f, bundle); err != nil {
		return fmt.Errorf("image from %s: %w: %w", m.pre.From, err, api.ErrInvalid)
	}
	if err := m.a.policy.Check(bundle); err != nil {
		return fmt.Errorf("image %s from %s: %w: %w", si.Digest, m.pre.From, err, api.ErrPermission)
	}
	// Import recomputes the digest: a bundle that is not the one the
	// container was made from is refused here.
	_, err = m.a.images.Import(m.pre.Container.Image, bundle, si.Digest)
	return err
}

func (m *inMove) prepare(ctx context.Context) error {
	if !m.claimed {
		return fmt.Errorf("prepare before preflight: %w", api.ErrInvalid)
	}
	id, err := m.a.identity(&m.pre.Container)
	if err != nil {
		return err
	}
	m.imageDir = filepath.Join(m.a.tmpfs(), "in-"+m.pre.MoveID)
	m.workDir = filepath.Join(m.a.cfg.StateDir, "criu", "in-"+m.pre.MoveID)
	// Journal first: an agent killed from here on tears this move down when
	// it restarts.
	m.jn = &journal{ID: m.pre.MoveID, Role: "in", Container: m.pre.Container.Name, Peer: m.pre.From,
		State: "prepared", ImageDir: m.imageDir, WorkDir: m.workDir, Record: m.pre.Container}
	if err := m.a.writeJournal(m.jn); err != nil {
		return err
	}
	ep, err := m.a.net.Prepare(ctx, m.pre.Container.Name, id)
	if err != nil {
		return fmt.Errorf("prepare network for %s: %w", m.pre.Container.Name, err)
	}
	m.ep = ep
	// Locked until its sockets exist: it is plugged in during the restore.
	if err := netmove.Lock(ctx, ep); err != nil {
		return fmt.Errorf("lock network of %s: %w", m.pre.Container.Name, err)
	}
	return nil
}

func (m *inMove) receiveCheckpoint(ctx context.Context) error {
	if m.ep == nil {
		return fmt.Errorf("checkpoint before prepare: %w", api.ErrInvalid)
	}
	if err := os.MkdirAll(m.workDir, 0o700); err != nil {
		return err
	}
	m.a.pauseAt(ctx, "receive-checkpoint")
	// ReceiveFiles checks every file against the manifest's SHA-256 before it
	// returns; nothing is restored from a checkpoint that failed the check.
	// A checkpoint larger than the tmpfs has room for is refused before a
	// byte of it is written.
	limit := int64(m.a.cfg.TmpfsMiB) << 20
	var st unix.Statfs_t
	if err := unix.Statfs(m.a.tmpfs(), &st); err == nil {
		limit = int64(st.Bavail) * st.Bsize
	}
	if _, _, err := transfer.ReceiveFiles(ctx, m.sess, m.imageDir, transfer.Limits{MaxTotal: limit}); err != nil {
		return fmt.Errorf("receive checkpoint: %w", err)
	}
	m.received = true
	return nil
}

func (m *inMove) restore(ctx context.Context) (restoredMsg, error) {
	a := m.a
	if !m.received {
		return restoredMsg{}, fmt.Errorf("restore before the checkpoint arrived: %w", api.ErrInvalid)
	}
	spec, err := a.spec(&m.pre.Container, m.ep)
	if err != nil {
		return restoredMsg{}, err
	}
	var plug time.Duration
	start := time.Now()
	_, out, _, err := a.rt.Restore(ctx, spec, checkpoint.RestoreOpts{
		ImageDir: m.imageDir, WorkDir: m.workDir,
		NetnsReady: func() error {
			a.pauseAt(ctx, "restore")
			t := time.Now()
			err := a.net.Plug(m.ep)
			plug = time.Since(t)
			return err
		},
	})
	if err != nil {
		return restoredMsg{}, err
	}
	m.restored = true
	if err := netmove.Unlock(ctx, m.ep); err != nil {
		return restoredMsg{}, err
	}
	r := restoredMsg{Restore: time.Since(start), Plug: plug}
	go a.drain(m.pre.Container.Name, out)
	go netmove.Announce(context.WithoutCancel(ctx), m.ep)
	if n, err := netmove.EstablishedTCP(m.ep.NetNS); err == nil {
		r.Sockets = n
	}
	return r, nil
}

func (m *inMove) commit() error {
	if !m.restored {
		return fmt.Errorf("commit before restore: %w", api.ErrInvalid)
	}
	rec := m.pre.Container
	rec.MovedFrom, rec.MoveID = m.pre.From, m.pre.MoveID
	if err := m.a.saveRecord(&rec); err != nil {
		return err
	}
	m.committed = true
	os.RemoveAll(m.imageDir)
	m.a.dropJournal(m.jn)
	return nil
}

// teardown forgets an uncommitted incoming move; after commit it only frees
// the name.
func (m *inMove) teardown() {
	a := m.a
	defer func() {
		if m.claimed {
			a.release(m.pre.Container.Name)
			a.mu.Lock()
			delete(a.inflight, m.pre.MoveID)
			a.mu.Unlock()
			m.claimed = false
		}
	}()
	if m.committed || m.jn == nil {
		return // nothing made yet: the journal comes before the first thing made
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The same teardown as after a crash, from the same journal.
	a.teardownIncoming(ctx, m.jn)
	m.jn, m.ep, m.restored = nil, nil, false
	m.received = false
}

// answerQuery tells a restarted source whether its move committed here. A
// move still in flight has no answer yet.
func (a *Agent) answerQuery(q queryMsg) (queryReplyMsg, error) {
	a.mu.Lock()
	busy := a.inflight[q.MoveID]
	a.mu.Unlock()
	if busy {
		return queryReplyMsg{}, fmt.Errorf("move %s is still in progress here: %w", q.MoveID, api.ErrUnavailable)
	}
	r, err := a.getRecord(q.Container)
	return queryReplyMsg{Committed: err == nil && r.MoveID == q.MoveID}, nil
}
