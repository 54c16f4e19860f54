package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/capsec/capsec/api"
	"github.com/capsec/capsec/checkpoint"
	"github.com/capsec/capsec/image"
	"github.com/capsec/capsec/netmove"
)

// errBusy marks an operation refused because another one owns the container.
var errBusy = api.ErrFailedPrecondition

// spec turns a record and its network endpoint into the runtime's spec.
func (a *Agent) spec(r *record, ep *netmove.Endpoint) (checkpoint.Spec, error) {
	img, err := a.images.Get(r.Digest)
	if err != nil {
		return checkpoint.Spec{}, fmt.Errorf("container %s: %w", r.Name, err)
	}
	return checkpoint.Spec{
		Name:       r.Name,
		Rootfs:     img.Rootfs(),
		Args:       r.Args,
		Env:        r.Env,
		NetNS:      ep.NetNS,
		Hostname:   r.Name,
		CgroupPath: "/capsec/" + a.cfg.Node + "/" + r.Name,
	}, nil
}

func (a *Agent) identity(r *record) (netmove.Identity, error) {
	id, err := netmove.ParseIdentity(r.IP, r.MAC, r.Gateway)
	if err != nil {
		return id, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	return id, nil
}

// runContainer starts a new container: network identity first, then the
// process. A failure undoes whatever was made.
func (a *Agent) runContainer(ctx context.Context, req api.RunRequest) (api.Container, error) {
	if !image.ValidName(req.Name) {
		return api.Container{}, fmt.Errorf("container name %q: use lower-case letters, digits, '-', '_' or '.': %w", req.Name, api.ErrInvalid)
	}
	if req.Image == "" {
		return api.Container{}, fmt.Errorf("no image given (try --image plcsim): %w", api.ErrInvalid)
	}
	if err := a.claim(req.Name, "run"); err != nil {
		return api.Container{}, err
	}
	defer a.release(req.Name)
	if _, err := a.rt.Get(req.Name); err == nil {
		return api.Container{}, fmt.Errorf("container %s: %w on node %s", req.Name, api.ErrAlreadyExists, a.cfg.Node)
	}
	if _, err := a.net.Lookup(req.Name); err == nil {
		return api.Container{}, fmt.Errorf("container %s: its network namespace already exists on node %s (remove it with `migrate rm %s`): %w", req.Name, a.cfg.Node, req.Name, api.ErrAlreadyExists)
	}
	img, err := a.images.Get(req.Image)
	if err != nil {
		return api.Container{}, fmt.Errorf("%w (images on %s are imported by `capsec-lab up` or `capsec-agent --import`): %w", err, a.cfg.Node, api.ErrNotFound)
	}
	if err := a.policy.Check(img.Dir); err != nil {
		return api.Container{}, fmt.Errorf("image %s: %w: %w", req.Image, err, api.ErrPermission)
	}
	args, env, err := img.Process()
	if err != nil {
		return api.Container{}, err
	}
	if req.MAC == "" {
		if p, err := netip.ParsePrefix(req.IP); err == nil {
			req.MAC = netmove.MACFor(p.Addr()).String()
		}
	}
	r := &record{
		Name: req.Name, Image: req.Image, Digest: img.Digest, IP: req.IP, MAC: req.MAC,
		Gateway: req.Gateway, Args: append(args, req.Args...), Env: env, Created: time.Now().UTC(),
	}
	id, err := a.identity(r)
	if err != nil {
		return api.Container{}, err
	}
	// The address must be free on the plant network: a second host
	// answering for it would split the HMI's traffic.
	if mac, err := a.net.InUse(ctx, id.IP.Addr()); err != nil {
		return api.Container{}, fmt.Errorf("container %s: check %s is free: %w", r.Name, id.IP.Addr(), err)
	} else if mac != nil {
		return api.Container{}, fmt.Errorf("address %s is already in use on the plant network (by MAC %s): %w", id.IP.Addr(), mac, api.ErrAlreadyExists)
	}
	ep, err := a.net.Prepare(ctx, r.Name, id)
	if err != nil {
		return api.Container{}, fmt.Errorf("container %s: network: %w", r.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			a.net.Destroy(ep)
		}
	}()
	if err := a.net.Plug(ep); err != nil {
		return api.Container{}, fmt.Errorf("container %s: plug into %s: %w", r.Name, a.cfg.Bridge, err)
	}
	spec, err := a.spec(r, ep)
	if err != nil {
		return api.Container{}, err
	}
	if err := a.saveRecord(r); err != nil {
		return api.Container{}, err
	}
	info, out, err := a.rt.Run(ctx, spec)
	if err != nil {
		a.deleteRecord(r.Name)
		return api.Container{}, fmt.Errorf("container %s: start: %w", r.Name, err)
	}
	ok = true
	go a.drain(r.Name, out)
	netmove.Announce(ctx, ep)
	a.log.Info("container started", "container", r.Name, "pid", info.Pid, "ip", r.IP)
	return a.describe(r), nil
}

// describe merges a record with what the runtime says right now.
func (a *Agent) describe(r *record) api.Container {
	c := r.api(a.cfg.Node)
	info, err := a.rt.Get(r.Name)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		c.Status = "absent"
	case err != nil:
		c.Status = "unknown: " + err.Error()
	default:
		c.Status, c.Pid = info.Status, info.Pid
		c.NetNS = info.NetNS
	}
	a.mu.Lock()
	if op, ok := a.busy[r.Name]; ok && op == "move" {
		c.Status = "moving"
	}
	a.mu.Unlock()
	return c
}

// getRecord reads one container's record, not the whole table.
func (a *Agent) getRecord(name string) (*record, error) {
	notFound := fmt.Errorf("container %s on node %s: %w", name, a.cfg.Node, api.ErrNotFound)
	if !image.ValidName(name) {
		return nil, notFound // also keeps a name from naming a path
	}
	b, err := os.ReadFile(a.recordPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		a.log.Warn("skipping unreadable container record", "file", a.recordPath(name), "err", err)
		return nil, notFound // as loadRecords treats it
	}
	return &r, nil
}

func (a *Agent) listContainers() ([]api.Container, error) {
	recs, err := a.loadRecords()
	if err != nil {
		return nil, err
	}
	out := make([]api.Container, 0, len(recs))
	for _, r := range recs {
		out = append(out, a.describe(r))
	}
	return out, nil
}

func (a *Agent) stopContainer(ctx context.Context, name string) error {
	if _, err := a.getRecord(name); err != nil {
		return err
	}
	if err := a.claim(name, "stop"); err != nil {
		return err
	}
	defer a.release(name)
	if err := a.rt.Stop(ctx, name); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// removeContainer deletes a container, its network namespace and its record.
// A running container is refused unless force is set.
func (a *Agent) removeContainer(ctx context.Context, name string, force bool) error {
	if _, err := a.getRecord(name); err != nil {
		return err
	}
	if err := a.claim(name, "remove"); err != nil {
		return err
	}
	defer a.release(name)
	if info, err := a.rt.Get(name); err == nil {
		if info.Status == "running" || info.Status == "paused" {
			if !force {
				return fmt.Errorf("container %s is running: stop it first (`migrate stop %s`) or use --force: %w", name, name, api.ErrFailedPrecondition)
			}
			if err := a.rt.Stop(ctx, name); err != nil {
				return fmt.Errorf("stop %s: %w", name, err)
			}
		}
		if err := a.rt.Delete(ctx, name); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	if ep, err := a.net.Lookup(name); err == nil {
		if err := a.net.Destroy(ep); err != nil {
			return fmt.Errorf("remove network of %s: %w", name, err)
		}
	}
	return a.deleteRecord(name)
}
