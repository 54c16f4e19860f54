package agent

import (
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
)

// The route table is the API's index: keep it sorted by path so a reader
// finds an endpoint at a glance.
func TestRoutesSorted(t *testing.T) {
	path := func(p string) string { _, after, _ := strings.Cut(p, " "); return after }
	ok := sort.SliceIsSorted(routes, func(i, j int) bool {
		pi, pj := path(routes[i].pattern), path(routes[j].pattern)
		if pi != pj {
			return pi < pj
		}
		return routes[i].pattern < routes[j].pattern
	})
	if !ok {
		for _, r := range routes {
			t.Log(r.pattern)
		}
		t.Fatal("routes are not sorted by path")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
