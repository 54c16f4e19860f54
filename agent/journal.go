package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A journal entry is written before each step of a move that the agent
// could not undo by forgetting it, so that an agent killed mid-move can, on
// restart, finish or undo what it started. Nothing half-done survives a
// restart: see recoverMoves.
type journal struct {
	ID        string `json:"id"`
	Role      string `json:"role"` // "out" (source) or "in" (destination)
	Container string `json:"container"`
	Peer      string `json:"peer"`
	// State of an outgoing move: "started" (the container may still run),
	// "dumped" (it does not; its images are in ImageDir), "commit-sent"
	// (the destination may have kept it). Incoming: "prepared".
	State    string `json:"state"`
	ImageDir string `json:"image_dir,omitempty"`
	WorkDir  string `json:"work_dir,omitempty"`
	Record   record `json:"record"`
}

func (a *Agent) journalDir() string { return filepath.Join(a.cfg.StateDir, "moves") }

func (a *Agent) writeJournal(j *journal) error {
	if err := os.MkdirAll(a.journalDir(), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	p := filepath.Join(a.journalDir(), j.Role+"-"+j.ID+".json")
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("move journal: %w", err)
	}
	return os.Rename(p+".tmp", p)
}

func (a *Agent) dropJournal(j *journal) {
	err := os.Remove(filepath.Join(a.journalDir(), j.Role+"-"+j.ID+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("move journal", "err", err)
	}
}

func (a *Agent) readJournals() ([]*journal, error) {
	ents, err := os.ReadDir(a.journalDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*journal
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.journalDir(), e.Name()))
		if err != nil {
			return nil, err
		}
		var j journal
		if err := json.Unmarshal(b, &j); err != nil {
			a.log.Error("unreadable move journal", "file", e.Name(), "err", err)
			continue
		}
		out = append(out, &j)
	}
	return out, nil
}
