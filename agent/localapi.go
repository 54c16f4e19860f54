package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/capsec/capsec/api"
)

// route is one endpoint of the local API.
type route struct {
	pattern string // method and path, as http.ServeMux reads them
	handler func(a *Agent, w http.ResponseWriter, r *http.Request) error
}

// routes is the whole local API, kept sorted by path (a test checks).
var routes = []route{
	{"GET /v1/containers", (*Agent).serveList},
	{"POST /v1/containers", (*Agent).serveRun},
	{"DELETE /v1/containers/{name}", (*Agent).serveRemove},
	{"GET /v1/containers/{name}", (*Agent).serveInspect},
	{"GET /v1/containers/{name}/logs", (*Agent).serveLogs},
	{"POST /v1/containers/{name}/move", (*Agent).serveMove},
	{"POST /v1/containers/{name}/stop", (*Agent).serveStop},
	{"GET /v1/moves", (*Agent).serveHistory},
	{"GET /v1/status", (*Agent).serveStatus},
}

type peerUIDKey struct{}

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := checkPeer(r); err != nil {
				writeError(w, err)
				return
			}
			if err := rt.handler(a, w, r); err != nil {
				a.log.Debug("api error", "route", rt.pattern, "err", err)
				writeError(w, err)
			}
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("no such endpoint %s %s: %w", r.Method, r.URL.Path, api.ErrNotFound))
	})
	return mux
}

// connContext records the UID of the process on the other end of the socket.
func connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	uid := -1
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return context.WithValue(ctx, peerUIDKey{}, uid)
}

// checkPeer lets only root (or the agent's own user) drive the agent: the
// API starts containers and moves process memory between machines.
func checkPeer(r *http.Request) error {
	uid, ok := r.Context().Value(peerUIDKey{}).(int)
	if !ok {
		return nil // not a UNIX socket: tests with their own transport
	}
	if uid != 0 && uid != os.Getuid() {
		return fmt.Errorf("uid %d may not use the capsec agent: %w", uid, api.ErrPermission)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	class, status := api.Classify(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.ErrorBody{Error: err.Error(), Class: class})
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, api.ErrInvalid)
	}
	return nil
}

func (a *Agent) serveStatus(w http.ResponseWriter, r *http.Request) error {
	n := api.Node{
		Node: a.cfg.Node, Version: Version, CRIU: a.criu.VersionString, Listen: a.cfg.Listen,
		Started: a.started, StateDir: a.cfg.StateDir, ImageTmpfs: a.tmpfs(),
		Kernel: kernelRelease() + " " + runtime.GOARCH,
	}
	for name, addr := range a.cfg.Peers {
		n.Peers = append(n.Peers, api.Peer{Node: name, Addr: addr})
	}
	imgs, _ := a.images.List()
	for _, i := range imgs {
		n.Images = append(n.Images, api.Image{Name: i.Name, Digest: i.Digest, Size: i.Size})
	}
	cs, _ := a.listContainers()
	n.Containers = len(cs)
	return writeJSON(w, n)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}

func (a *Agent) serveList(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.listContainers()
	if err != nil {
		return err
	}
	return writeJSON(w, cs)
}

func (a *Agent) serveRun(w http.ResponseWriter, r *http.Request) error {
	var req api.RunRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	c, err := a.runContainer(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, c)
}

func (a *Agent) serveInspect(w http.ResponseWriter, r *http.Request) error {
	rec, err := a.getRecord(r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, a.describe(rec))
}

func (a *Agent) serveStop(w http.ResponseWriter, r *http.Request) error {
	if err := a.stopContainer(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	return writeJSON(w, struct{}{})
}

func (a *Agent) serveRemove(w http.ResponseWriter, r *http.Request) error {
	if err := a.removeContainer(r.Context(), r.PathValue("name"), r.URL.Query().Get("force") == "1"); err != nil {
		return err
	}
	return writeJSON(w, struct{}{})
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, err := a.getRecord(name); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain")
	err := a.copyLogs(r.Context(), name, r.URL.Query().Get("follow") == "1", w)
	if err != nil && !errors.Is(err, context.Canceled) {
		a.log.Warn("logs", "container", name, "err", err)
	}
	return nil
}

func (a *Agent) serveHistory(w http.ResponseWriter, r *http.Request) error {
	h, err := a.readHistory()
	if err != nil {
		return err
	}
	return writeJSON(w, h)
}
