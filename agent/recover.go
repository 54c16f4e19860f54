package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/capsec/capsec/checkpoint"
	"github.com/capsec/capsec/netmove"
	"github.com/capsec/capsec/transfer"
)

// restoreFromImages brings a container that a move dumped back to life on
// this node, from the images the move kept.
func (a *Agent) restoreFromImages(ctx context.Context, j *journal) error {
	rec := &j.Record
	ep, err := a.net.Lookup(rec.Name)
	if err != nil {
		return fmt.Errorf("network of %s: %w", rec.Name, err)
	}
	if err := a.rt.Delete(ctx, rec.Name); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return fmt.Errorf("clear checkpointed container: %w", err)
	}
	spec, err := a.spec(rec, ep)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(j.WorkDir, 0o700); err != nil {
		return err
	}
	_, out, _, err := a.rt.Restore(ctx, spec, checkpoint.RestoreOpts{
		ImageDir: j.ImageDir, WorkDir: j.WorkDir,
		NetnsReady: func() error { return a.net.Plug(ep) },
	})
	if err != nil {
		return err
	}
	go a.drain(rec.Name, out)
	go netmove.Announce(context.WithoutCancel(ctx), ep)
	if err := a.saveRecord(rec); err != nil {
		a.log.Error("save record after local restore", "container", rec.Name, "err", err)
	}
	os.RemoveAll(j.ImageDir)
	a.dropJournal(j)
	a.log.Info("container restored on this node from its move's images", "container", rec.Name, "move", j.ID)
	return nil
}

// recoverMoves settles every move a killed agent left half done, before the
// agent serves anything. Incoming moves that never committed are torn down.
// Outgoing ones are resumed here unless the destination committed them.
func (a *Agent) recoverMoves(ctx context.Context) {
	js, err := a.readJournals()
	if err != nil {
		a.log.Error("read move journals", "err", err)
		return
	}
	for _, j := range js {
		a.log.Warn("settling an interrupted move", "move", j.ID, "role", j.Role, "container", j.Container, "state", j.State)
		switch j.Role {
		case "in":
			a.teardownIncoming(ctx, j)
		case "out":
			// Settling may wait for the destination to answer, so it runs
			// beside the agent; the container stays claimed meanwhile.
			if err := a.claim(j.Container, "settle"); err != nil {
				a.log.Error("settle move", "err", err)
				continue
			}
			go func(j *journal) {
				defer a.release(j.Container)
				a.settleMove(ctx, j)
			}(j)
		}
	}
}

// teardownIncoming removes what an uncommitted incoming move made.
func (a *Agent) teardownIncoming(ctx context.Context, j *journal) {
	if r, err := a.getRecord(j.Container); err == nil && r.MoveID == j.ID {
		a.dropJournal(j) // it committed; only the journal was left
		return
	}
	name := j.Container
	if _, err := a.getRecord(name); err != nil {
		if err := a.rt.Stop(ctx, name); err != nil && !errors.Is(err, checkpoint.ErrNotFound) && !errors.Is(err, checkpoint.ErrNotRunning) {
			a.log.Error("stop uncommitted restore", "container", name, "err", err)
		}
		if err := a.rt.Delete(ctx, name); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			a.log.Error("delete uncommitted restore", "container", name, "err", err)
		}
		if ep, err := a.net.Lookup(name); err == nil {
			a.net.Destroy(ep)
		} else if errors.Is(err, netmove.ErrIncomplete) {
			a.net.Destroy(&netmove.Endpoint{Name: name})
		}
	}
	os.RemoveAll(j.ImageDir)
	a.dropJournal(j)
}

// settleMove finishes an outgoing move whose agent died or lost its peer.
// The rule: the container must end up running on exactly one node.
func (a *Agent) settleMove(ctx context.Context, j *journal) {
	if info, err := a.rt.Get(j.Container); err == nil && info.Status == "running" {
		// The dump never finished (CRIU resumes the tasks when it fails).
		os.RemoveAll(j.ImageDir)
		a.dropJournal(j)
		return
	}
	if j.State == "commit-sent" {
		for attempt := 0; ; attempt++ {
			committed, err := a.askCommitted(ctx, j)
			if err == nil && committed {
				a.log.Info("destination had committed the interrupted move; cleaning up here", "move", j.ID, "to", j.Peer)
				a.forgetMovedOut(ctx, j)
				return
			}
			if err == nil {
				break // not committed: resume here
			}
			a.log.Warn("cannot reach the destination to settle a move; the container stays down until it answers",
				"move", j.ID, "to", j.Peer, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*2*time.Second, 30*time.Second)):
			}
		}
	}
	if err := a.restoreFromImages(ctx, j); err != nil {
		a.log.Error("could not resume the container from its move's images; they are kept", "container", j.Container,
			"images", j.ImageDir, "err", err)
	}
}

// forgetMovedOut removes the source's copy of a container that now lives on
// the destination.
func (a *Agent) forgetMovedOut(ctx context.Context, j *journal) {
	if err := a.rt.Delete(ctx, j.Container); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		a.log.Warn("delete moved container", "container", j.Container, "err", err)
	}
	if ep, err := a.net.Lookup(j.Container); err == nil {
		if err := a.net.Destroy(ep); err != nil {
			a.log.Warn("remove moved network", "container", j.Container, "err", err)
		}
	}
	os.RemoveAll(j.ImageDir)
	a.deleteRecord(j.Container)
	os.Remove(a.logPath(j.Container))
	a.dropJournal(j)
}

// askCommitted asks a move's destination whether it kept the container.
func (a *Agent) askCommitted(ctx context.Context, j *journal) (bool, error) {
	addr, ok := a.cfg.Peers[j.Peer]
	if !ok {
		return false, fmt.Errorf("peer %s is no longer configured", j.Peer)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sess, err := transfer.Dial(ctx, addr, transfer.ClientTLS(a.id, j.Peer), transfer.WithIdleTimeout(a.cfg.PeerTimeout))
	if err != nil {
		return false, err
	}
	defer sess.CloseWithError(transfer.ErrCodeNone, "settled")
	ctl, err := sess.OpenStream(ctx)
	if err != nil {
		return false, err
	}
	if err := sendMsg(ctl, msgQuery, queryMsg{MoveID: j.ID, Container: j.Container}); err != nil {
		return false, err
	}
	var r queryReplyMsg
	if err := recvMsg(ctl, msgQueryReply, &r); err != nil {
		return false, err
	}
	return r.Committed, nil
}
