package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/capsec/capsec/api"
)

// record is what the agent keeps about a container on disk, so that the
// table survives an agent restart. The runtime's own state says whether the
// process still runs; the record says what it is.
type record struct {
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	Digest  string    `json:"digest"`
	IP      string    `json:"ip"`
	MAC     string    `json:"mac"`
	Gateway string    `json:"gateway,omitempty"`
	Args    []string  `json:"args"`
	Env     []string  `json:"env,omitempty"`
	Created time.Time `json:"created"`
	// MovedFrom names the node this container arrived from, if any, and
	// MoveID the move that brought it: a restarted source asks for it to
	// learn whether its move committed.
	MovedFrom string `json:"moved_from,omitempty"`
	MoveID    string `json:"move_id,omitempty"`
}

func (a *Agent) recordPath(name string) string {
	return filepath.Join(a.cfg.StateDir, "containers", name+".json")
}

func (a *Agent) saveRecord(r *record) error {
	dir := filepath.Dir(a.recordPath(r.Name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.recordPath(r.Name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", r.Name, err)
	}
	return os.Rename(tmp, a.recordPath(r.Name))
}

func (a *Agent) deleteRecord(name string) error {
	err := os.Remove(a.recordPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func (a *Agent) loadRecords() ([]*record, error) {
	ents, err := os.ReadDir(filepath.Join(a.cfg.StateDir, "containers"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*record
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, "containers", e.Name()))
		if err != nil {
			return nil, err
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			a.log.Warn("skipping unreadable container record", "file", e.Name(), "err", err)
			continue
		}
		out = append(out, &r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (r *record) api(node string) api.Container {
	return api.Container{
		Name: r.Name, Node: node, Image: r.Image, ImageDigest: r.Digest,
		IP: r.IP, MAC: r.MAC, Gateway: r.Gateway, Args: r.Args, Created: r.Created,
	}
}

// history is the list of moves this agent took part in, kept as one JSON
// line per move so an append never rewrites what is there.
func (a *Agent) historyPath() string { return filepath.Join(a.cfg.StateDir, "moves.jsonl") }

func (a *Agent) appendHistory(m api.MoveResult) error {
	f, err := os.OpenFile(a.historyPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	return err
}

func (a *Agent) readHistory() ([]api.MoveResult, error) {
	b, err := os.ReadFile(a.historyPath())
	if errors.Is(err, os.ErrNotExist) {
		return []api.MoveResult{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []api.MoveResult{}
	for _, line := range splitLines(b) {
		var m api.MoveResult
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
