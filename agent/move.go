package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/checkpoint"
	"github.com/capsec/capsec/image"
	"github.com/capsec/capsec/netmove"
	"github.com/capsec/capsec/transfer"
)

// outMove is the source side of one live move. It is a state machine: steps
// run in order, each timed, and the first error rolls back according to how
// far the move got (see rollback).
type outMove struct {
	a    *Agent
	rec  *record
	ep   *netmove.Endpoint
	to   string
	emit func(api.MoveEvent)

	sess *transfer.Session
	ctl  *transfer.Stream
	res  api.MoveResult
	jn   *journal

	needImage bool
	imageDir  string // checkpoint images on the tmpfs
	workDir   string // CRIU logs, kept on disk
	frozen    time.Time
	dumped    bool // the container no longer runs here
	unplugged bool
	restored  bool // the destination runs it (not yet committed)
}

type moveStep struct {
	phase string
	run   func(context.Context) error
}

func newMoveID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// moveContainer runs one live move of name to the peer req.To and returns
// its result. It never returns with the container lost: a failure before
// commit leaves or restores it on this node.
func (a *Agent) moveContainer(ctx context.Context, name string, req api.MoveRequest, emit func(api.MoveEvent)) (api.MoveResult, error) {
	rec, err := a.getRecord(name)
	if err != nil {
		return api.MoveResult{}, err
	}
	if req.To == a.cfg.Node {
		return api.MoveResult{}, fmt.Errorf("container %s already runs on %s: %w", name, req.To, api.ErrInvalid)
	}
	if _, ok := a.cfg.Peers[req.To]; !ok {
		return api.MoveResult{}, fmt.Errorf("unknown node %q: peers of %s are %v (--peer): %w", req.To, a.cfg.Node, peerNames(a.cfg.Peers), api.ErrNotFound)
	}
	if info, err := a.rt.Get(name); err != nil || info.Status != "running" {
		return api.MoveResult{}, fmt.Errorf("container %s is not running (%s): %w", name, info.Status, api.ErrFailedPrecondition)
	}
	ep, err := a.net.Lookup(name)
	if err != nil {
		return api.MoveResult{}, fmt.Errorf("container %s: network: %w", name, err)
	}
	if err := a.claim(name, "move"); err != nil {
		return api.MoveResult{}, err
	}
	defer a.release(name)

	timeout := req.Timeout
	if timeout <= 0 {
		timeout = a.cfg.MoveTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	id := newMoveID()
	m := &outMove{
		a: a, rec: rec, ep: ep, to: req.To, emit: emit,
		imageDir: filepath.Join(a.tmpfs(), "out-"+id),
		workDir:  filepath.Join(a.cfg.StateDir, "criu", "move-"+id),
		res: api.MoveResult{
			ID: id, Container: name, From: a.cfg.Node, To: req.To, Started: time.Now().UTC(),
		},
	}
	m.jn = &journal{ID: id, Role: "out", Container: name, Peer: req.To, State: "started",
		ImageDir: m.imageDir, WorkDir: m.workDir, Record: *rec}
	if err := a.writeJournal(m.jn); err != nil {
		return api.MoveResult{}, err
	}
	start := time.Now()
	err = m.run(ctx)
	m.res.Total = time.Since(start)
	if err != nil {
		m.res.Error = err.Error()
	}
	m.res.OK = err == nil
	if herr := a.appendHistory(m.res); herr != nil {
		a.log.Warn("history", "err", herr)
	}
	a.log.Info("move finished", "container", name, "to", req.To, "outcome", m.res.Outcome,
		"downtime", m.res.Downtime, "bytes", m.res.BytesSent, "err", err)
	return m.res, nil
}

func peerNames(p map[string]string) []string {
	out := make([]string, 0, len(p))
	for n := range p {
		out = append(out, n)
	}
	return out
}

func (m *outMove) steps() []moveStep {
	return []moveStep{
		{"connect", m.connect},
		{"preflight", m.preflight},
		{"image", m.sendImage},
		{"prepare", m.prepare},
		{"dump", m.dump},
		{"transfer", m.transfer},
		{"switch", m.unplug},
		{"restore", m.restore},
		{"commit", m.commit},
	}
}

func (m *outMove) run(ctx context.Context) error {
	defer func() {
		if m.sess != nil {
			m.sess.CloseWithError(transfer.ErrCodeNone, "move over")
		}
	}()
	for _, s := range m.steps() {
		m.emit(api.MoveEvent{Time: time.Now(), Phase: s.phase})
		t := time.Now()
		err := s.run(ctx)
		m.res.Phases = append(m.res.Phases, api.Phase{Name: s.phase, Duration: time.Since(t)})
		if err != nil {
			err = fmt.Errorf("%s: %w", s.phase, err)
			m.rollback(err)
			return err
		}
	}
	m.res.Outcome = "moved"
	m.a.pauseAt(ctx, "cleanup")
	m.cleanupSource()
	return nil
}

func (m *outMove) connect(ctx context.Context) error {
	addr := m.a.cfg.Peers[m.to]
	sess, err := transfer.Dial(ctx, addr, transfer.ClientTLS(m.a.id, m.to), transfer.WithIdleTimeout(m.a.cfg.PeerTimeout))
	if err != nil {
		return fmt.Errorf("connect to %s at %s: %w: %w", m.to, addr, err, api.ErrUnavailable)
	}
	m.sess = sess
	// The whole session dies with the move's context, so no read below can
	// outlive the move's deadline.
	context.AfterFunc(ctx, func() { sess.CloseWithError(transfer.ErrCodeInternal, "move cancelled or timed out") })
	ctl, err := sess.OpenStream(ctx)
	if err != nil {
		return fmt.Errorf("open control stream to %s: %w", m.to, err)
	}
	m.ctl = ctl
	return nil
}

func (m *outMove) preflight(ctx context.Context) error {
	p := preflightMsg{
		MoveID: m.res.ID, From: m.a.cfg.Node, Version: Version,
		CRIU: m.a.criu.Version, Kernel: kernelRelease(), Container: *m.rec,
	}
	if err := sendMsg(m.ctl, msgPreflight, p); err != nil {
		return err
	}
	var ok preflightOKMsg
	if err := recvMsg(m.ctl, msgPreflightOK, &ok); err != nil {
		return err
	}
	m.needImage = ok.NeedImage
	return nil
}

func (m *outMove) sendImage(ctx context.Context) error {
	if !m.needImage {
		return nil
	}
	img, err := m.a.images.Get(m.rec.Digest)
	if err != nil {
		return err
	}
	// The bundle travels as one tar file, so that modes and empty
	// directories arrive too; the receiver checks it against the digest.
	dir := m.imageDir + "-bundle"
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "bundle.tar"))
	if err != nil {
		return err
	}
	err = image.Pack(img.Dir, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	man, err := transfer.BuildManifest(dir)
	if err != nil {
		return err
	}
	if err := sendMsg(m.ctl, msgSendImage, sendImageMsg{Digest: img.Digest, Bytes: man.TotalBytes()}); err != nil {
		return err
	}
	n, err := transfer.SendFiles(ctx, m.sess, dir, man, transfer.SendOptions{Progress: m.progress("image", man.TotalBytes())})
	m.res.ImageBytes += n
	m.res.BytesSent += n
	if err != nil {
		return fmt.Errorf("send image %s: %w", img.Digest, err)
	}
	return recvMsg(m.ctl, msgAck, nil)
}

func (m *outMove) progress(phase string, total int64) func(int64) {
	last := time.Time{}
	return func(sent int64) {
		if time.Since(last) < 250*time.Millisecond && sent < total {
			return
		}
		last = time.Now()
		m.emit(api.MoveEvent{Time: last, Phase: phase, Bytes: sent, Total: total})
	}
}

func (m *outMove) prepare(ctx context.Context) error {
	if err := sendMsg(m.ctl, msgPrepare, nil); err != nil {
		return err
	}
	return recvMsg(m.ctl, msgAck, nil)
}

func (m *outMove) dump(ctx context.Context) error {
	if n, err := netmove.EstablishedTCP(m.ep.NetNS); err == nil {
		m.res.SessionsSeen = n
	}
	for _, d := range []string{m.imageDir, m.workDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	m.frozen = time.Now()
	dr, err := m.a.rt.Dump(ctx, m.rec.Name, checkpoint.DumpOpts{ImageDir: m.imageDir, WorkDir: m.workDir})
	if err == nil && dr.Frozen > 0 {
		// Downtime starts when CRIU froze the tasks, not when it started:
		// CRIU's own stats say how long before its return that was.
		m.frozen = time.Now().Add(-dr.Frozen)
		m.res.Frozen = dr.Frozen
	}
	if err != nil {
		// CRIU resumes the tasks when a dump fails, so the container still runs.
		if info, gerr := m.a.rt.Get(m.rec.Name); gerr != nil || info.Status != "running" {
			m.dumped = true
		}
		return err
	}
	m.dumped = true
	m.jn.State = "dumped"
	return m.a.writeJournal(m.jn)
}

func (m *outMove) transfer(ctx context.Context) error {
	man, err := transfer.BuildManifest(m.imageDir)
	if err != nil {
		return err
	}
	if err := sendMsg(m.ctl, msgCheckpoint, checkpointMsg{Bytes: man.TotalBytes(), Files: len(man.Files)}); err != nil {
		return err
	}
	m.a.pauseAt(ctx, "send-checkpoint")
	n, err := transfer.SendFiles(ctx, m.sess, m.imageDir, man, transfer.SendOptions{
		Progress: m.progress("transfer", man.TotalBytes()), Corrupt: m.a.corrupter()})
	m.res.BytesSent += n
	if err != nil {
		return fmt.Errorf("send checkpoint: %w", err)
	}
	return recvMsg(m.ctl, msgAck, nil)
}

// unplug takes the source's copy of the address off the plant network so
// that it is never live on two nodes; the destination plugs in during restore.
func (m *outMove) unplug(ctx context.Context) error {
	if err := m.a.net.Unplug(m.ep); err != nil {
		return err
	}
	m.unplugged = true
	return nil
}

func (m *outMove) restore(ctx context.Context) error {
	if err := sendMsg(m.ctl, msgRestore, nil); err != nil {
		return err
	}
	var r restoredMsg
	if err := recvMsg(m.ctl, msgRestored, &r); err != nil {
		return err
	}
	m.restored = true
	m.res.Downtime = time.Since(m.frozen)
	m.res.SessionsKept = r.Sockets
	m.res.Phases = append(m.res.Phases,
		api.Phase{Name: "restore@" + m.to, Duration: r.Restore},
		api.Phase{Name: "plug@" + m.to, Duration: r.Plug})
	return nil
}

func (m *outMove) commit(ctx context.Context) error {
	// From here the destination may keep the container, so a restarted
	// source must ask it before restoring its own copy.
	m.jn.State = "commit-sent"
	if err := m.a.writeJournal(m.jn); err != nil {
		return err
	}
	if err := sendMsg(m.ctl, msgCommit, nil); err != nil {
		return err
	}
	return recvMsg(m.ctl, msgAck, nil)
}

// cleanupSource removes what the source kept for a rollback, once the
// destination has committed.
func (m *outMove) cleanupSource() {
	m.a.forgetMovedOut(context.Background(), m.jn)
}

// rollback undoes a failed move. Before the dump the container never stopped,
// so the destination is told to forget it. After the dump the source restores
// the container from its own images.
func (m *outMove) rollback(cause error) {
	a := m.a
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.MoveTimeout)
	defer cancel()
	if m.ctl != nil {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if sendMsg(m.ctl, msgAbort, abortMsg{Reason: cause.Error()}) == nil {
				recvMsg(m.ctl, msgAck, nil)
			}
		}()
		select {
		case <-done:
		case <-actx.Done():
		}
		acancel()
	}
	if m.restored {
		// The destination ran the container but did not confirm the commit.
		// It tears down an uncommitted restore when the session ends, so the
		// source takes the container back.
		a.log.Warn("destination restored but commit failed; taking the container back", "container", m.rec.Name)
	}
	if !m.dumped {
		m.res.Outcome = "aborted"
		os.RemoveAll(m.imageDir)
		a.dropJournal(m.jn)
		return
	}
	if m.jn.State == "commit-sent" {
		// The commit may have reached the destination: restoring here could
		// run the container twice. Keep the images and the journal; the
		// agent asks the destination and settles it (see settleMove).
		m.res.Outcome = "failed"
		m.res.Error = fmt.Sprintf("%v; the destination may have committed: the agent will ask %s and resume here only if it did not (images kept in %s)", cause, m.to, m.imageDir)
		go a.settleMove(context.WithoutCancel(ctx), m.jn)
		return
	}
	m.emit(api.MoveEvent{Time: time.Now(), Phase: "rollback", Message: cause.Error()})
	if err := a.restoreFromImages(ctx, m.jn); err != nil {
		m.res.Outcome = "failed"
		m.res.Error = fmt.Sprintf("%v; local restore also failed: %v (images kept in %s)", cause, err, m.imageDir)
		return
	}
	m.res.Outcome = "rolled-back"
	m.res.Downtime = time.Since(m.frozen)
}
