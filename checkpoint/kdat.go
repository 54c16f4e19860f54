package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// CRIU probes ~40 kernel features at the start of every dump and restore
// (netns and veth creation, nftables, uffd, ptrace...): 35 ms here, more under
// load, in every restore's downtime. It caches the result in kdatPath, but
// only if that file is on tmpfs (so that a reboot into another kernel drops
// it), and /run is not tmpfs on this host ("Can't keep kdat cache on
// non-tempfs"). CRIU reads the cache without checking where it lives, so:
//
//  1. CRIU writes the cache once, in a private mount namespace in which the
//     tmpfs directory kdatStoreDir is bind-mounted over /run;
//  2. that file is bind-mounted, read-only, over kdatPath on the host.
//
// Both live on tmpfs and vanish at reboot, as CRIU intends. Nothing of the
// host is hidden: kdatPath is an empty placeholder created for the mount (an
// existing non-empty kdatPath is left alone). A stamp file names the CRIU
// the cache was made by; another CRIU gets a new cache.
const (
	// kdatPath is KDAT_RUNDIR "/criu.kdat" of CRIU 4.2 as Debian builds it.
	kdatPath = "/run/criu.kdat"
	// kdatStoreDir is tmpfs-backed (/dev/shm) and root-only.
	kdatStoreDir = "/dev/shm/capsec-criu"
)

// EnsureKdatCache makes CRIU's kernel-feature cache available to every CRIU
// run on this host, if /run is not tmpfs (see above). Idempotent and safe to
// call from several processes; an error only means CRIU keeps probing.
func (c *CRIU) EnsureKdatCache(ctx context.Context) error {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(kdatPath), &st); err != nil {
		return fmt.Errorf("kdat cache: statfs %s: %w", filepath.Dir(kdatPath), err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return nil // CRIU keeps its own cache there
	}
	if err := os.Mkdir(kdatStoreDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("kdat cache: %w", err)
	}
	// /dev/shm is world-writable: trust the directory only if it is ours.
	var ds unix.Stat_t
	if err := unix.Lstat(kdatStoreDir, &ds); err != nil {
		return fmt.Errorf("kdat cache: %w", err)
	}
	if ds.Mode&unix.S_IFMT != unix.S_IFDIR || ds.Uid != 0 || ds.Mode&0o077 != 0 {
		return fmt.Errorf("kdat cache: %s is not a root-only directory (mode %o, uid %d)", kdatStoreDir, ds.Mode, ds.Uid)
	}
	lock, err := os.OpenFile(filepath.Join(kdatStoreDir, "lock"), os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("kdat cache: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("kdat cache: lock: %w", err)
	}

	stamp := fmt.Sprintf("%s %s\n", c.Path, c.VersionString)
	stampPath := filepath.Join(kdatStoreDir, "stamp")
	mounted, err := isMountPoint(kdatPath)
	if err != nil {
		return fmt.Errorf("kdat cache: %w", err)
	}
	if cur, err := os.ReadFile(stampPath); mounted && err == nil && string(cur) == stamp {
		return nil
	}
	if mounted {
		// Made by another CRIU: replace it.
		if err := unmountThisNS(kdatPath); err != nil {
			return fmt.Errorf("kdat cache: %w", err)
		}
	}
	if fi, err := os.Lstat(kdatPath); err == nil && (!fi.Mode().IsRegular() || fi.Size() != 0) {
		return fmt.Errorf("kdat cache: %s exists (%v, %d bytes); leaving it alone", kdatPath, fi.Mode(), fi.Size())
	}

	store := filepath.Join(kdatStoreDir, filepath.Base(kdatPath))
	for _, f := range []string{store, store + ".tmp", stampPath} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("kdat cache: %w", err)
		}
	}
	// Go makes the new mount namespace's mounts private before the shell
	// runs, so the bind mount over /run stays in there.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `mount --bind "$0" /run && exec "$1" check`, kdatStoreDir, c.Path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if fi, serr := os.Stat(store); serr != nil || fi.Size() == 0 {
		return fmt.Errorf("kdat cache: CRIU wrote none (%v): %s", err, lastLines(bytes.TrimSpace(out), 3))
	}
	if err := os.WriteFile(stampPath, []byte(stamp), 0o600); err != nil {
		return fmt.Errorf("kdat cache: %w", err)
	}

	f, err := os.OpenFile(kdatPath, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("kdat cache: placeholder: %w", err)
	}
	f.Close()
	// Mount from a thread in our own mount namespace (see unmountCRIUYards).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Mount(store, kdatPath, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("kdat cache: bind %s on %s: %w", store, kdatPath, err)
	}
	// Read-only: CRIU unlinks a cache it finds stale; it cannot write one.
	if err := unix.Mount("", kdatPath, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(kdatPath, unix.MNT_DETACH)
		return fmt.Errorf("kdat cache: remount %s read-only: %w", kdatPath, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this thread's mount
// namespace.
func isMountPoint(path string) (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true, nil
		}
	}
	return false, nil
}

func unmountThisNS(path string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}
