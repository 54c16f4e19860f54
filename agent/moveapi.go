package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/capsec/capsec/api"
)

// serveMove runs a move and streams its progress as JSON lines; the last
// line carries the result. The move runs on a context of its own: a CLI that
// goes away must not leave a move half done.
func (a *Agent) serveMove(w http.ResponseWriter, r *http.Request) error {
	var req api.MoveRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	name := r.PathValue("name")
	var mu sync.Mutex
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	emit := func(ev api.MoveEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res, err := a.moveContainer(context.WithoutCancel(r.Context()), name, req, emit)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			return err // refused before it began: a plain API error
		}
		res.Error = err.Error()
	}
	emit(api.MoveEvent{Phase: "done", Result: &res})
	return nil
}
