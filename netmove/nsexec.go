package netmove

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (as iproute2 does).
const netnsDir = "/run/netns"

// inNS runs fn on a fresh OS thread that is inside ns, so the caller's own
// thread (which may be locked into a node netns) never changes namespace. If
// the thread cannot be switched back it stays locked, and Go terminates it
// when the goroutine exits, so no thread is ever left in the wrong netns.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// inNSPath is inNS for a netns given by its bind-mount path.
func inNSPath(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, notFound(err))
	}
	defer ns.Close()
	return inNS(ns, fn)
}

// newNamedNS creates an empty network namespace bind-mounted at path and
// returns an open handle to it. Unlike netns.NewNamed it never moves the
// caller's thread: the unshare happens on a throwaway locked thread.
func newNamedNS(path string) (netns.NsHandle, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	// O_EXCL makes creation the point where two Prepares of one name race.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return netns.None(), fmt.Errorf("netns %s: %w", path, ErrExists)
		}
		return netns.None(), fmt.Errorf("create netns mount point %s: %w", path, err)
	}
	f.Close()

	type result struct {
		ns  netns.NsHandle
		err error
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: after unshare this thread is in the new netns, and
		// letting it die is simpler and safer than switching it back.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			resc <- result{netns.None(), fmt.Errorf("unshare netns: %w", err)}
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			resc <- result{netns.None(), fmt.Errorf("bind-mount netns on %s: %w", path, err)}
			return
		}
		ns, err := netns.GetFromPath(path)
		if err != nil {
			resc <- result{netns.None(), fmt.Errorf("open netns %s: %w", path, err)}
			return
		}
		resc <- result{ns, nil}
	}()
	r := <-resc
	if r.err != nil {
		_ = removeNamedNS(path)
	}
	return r.ns, r.err
}

// removeNamedNS unmounts and removes a netns bind mount; absent or
// never-mounted paths are fine, so it also cleans half-made state.
func removeNamedNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns mount point %s: %w", path, err)
	}
	return nil
}

// writeSysctl writes a /proc/sys value of the calling thread's netns.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", filepath.FromSlash(key))
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
