// Package client is the typed client of an agent's local API: one method per
// endpoint, all through one send. The migrate CLI and the tests use it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/capsec/capsec/api"
)

// DefaultSocket is where an agent listens when no --socket is given.
const DefaultSocket = "/run/capsec/agent.sock"

// Client talks to one agent. Its zero value uses DefaultSocket.
type Client struct {
	Socket string
	// Transport replaces the UNIX-socket transport (tests).
	Transport http.RoundTripper
}

func (c *Client) socket() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

func (c *Client) httpClient() *http.Client {
	if c.Transport != nil {
		return &http.Client{Transport: c.Transport}
	}
	sock := c.socket()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		// A move streams for as long as it takes; only the dial is bounded here.
		ResponseHeaderTimeout: 0,
	}}
}

// send is the one path every request takes. It returns the response for the
// caller to decode, or the agent's error as an *api.RemoteError.
func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, &Unreachable{Socket: c.socket(), Err: err}
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb api.ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
		}
		return nil, &api.RemoteError{Msg: eb.Error, Class: eb.Class}
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// Unreachable means no agent answered on the socket.
type Unreachable struct {
	Socket string
	Err    error
}

func (e *Unreachable) Error() string {
	return fmt.Sprintf("cannot reach the agent at %s: %v", e.Socket, e.Err)
}
func (e *Unreachable) Unwrap() error { return errors.Join(api.ErrUnavailable, e.Err) }

// Status returns the agent's view of its node.
func (c *Client) Status(ctx context.Context) (api.Node, error) {
	var n api.Node
	return n, c.do(ctx, http.MethodGet, "/v1/status", nil, &n)
}

// Containers lists the agent's containers.
func (c *Client) Containers(ctx context.Context) ([]api.Container, error) {
	var cs []api.Container
	return cs, c.do(ctx, http.MethodGet, "/v1/containers", nil, &cs)
}

// Container returns one container.
func (c *Client) Container(ctx context.Context, name string) (api.Container, error) {
	var ct api.Container
	return ct, c.do(ctx, http.MethodGet, "/v1/containers/"+url.PathEscape(name), nil, &ct)
}

// Run starts a container.
func (c *Client) Run(ctx context.Context, r api.RunRequest) (api.Container, error) {
	var ct api.Container
	return ct, c.do(ctx, http.MethodPost, "/v1/containers", r, &ct)
}

// Stop stops a container and keeps its record.
func (c *Client) Stop(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(name)+"/stop", nil, nil)
}

// Remove deletes a stopped container and its network namespace.
func (c *Client) Remove(ctx context.Context, name string, force bool) error {
	p := "/v1/containers/" + url.PathEscape(name)
	if force {
		p += "?force=1"
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Logs copies a container's output to w; with follow it streams until ctx ends.
func (c *Client) Logs(ctx context.Context, name string, follow bool, w io.Writer) error {
	p := "/v1/containers/" + url.PathEscape(name) + "/logs"
	if follow {
		p += "?follow=1"
	}
	resp, err := c.send(ctx, http.MethodGet, p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// History returns the moves this agent took part in, oldest first.
func (c *Client) History(ctx context.Context) ([]api.MoveResult, error) {
	var ms []api.MoveResult
	return ms, c.do(ctx, http.MethodGet, "/v1/moves", nil, &ms)
}

// Move moves a container live and calls progress for every event. It returns
// the final result; a move that ran and failed returns its result and an error.
func (c *Client) Move(ctx context.Context, name string, r api.MoveRequest, progress func(api.MoveEvent)) (api.MoveResult, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/containers/"+url.PathEscape(name)+"/move", r)
	if err != nil {
		return api.MoveResult{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev api.MoveEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return api.MoveResult{}, fmt.Errorf("decode move event: %w", err)
		}
		if ev.Result != nil {
			if !ev.Result.OK {
				return *ev.Result, fmt.Errorf("move %s to %s: %s: %w", name, r.To, ev.Result.Error, api.ErrFailedPrecondition)
			}
			return *ev.Result, nil
		}
		if progress != nil {
			progress(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return api.MoveResult{}, fmt.Errorf("move %s: progress stream: %w", name, err)
	}
	return api.MoveResult{}, fmt.Errorf("move %s: the agent closed the stream without a result (see its log)", name)
}

// WaitReady polls Status until the agent answers or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Status(sctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent at %s not ready: %w", c.socket(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LabSocket is where the netns lab puts the socket of node's agent.
func LabSocket(node string) string { return "/run/capsec/lab/" + node + "/agent.sock" }
