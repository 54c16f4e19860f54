package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// LabLock is the file every user of the one-machine lab locks (flock,
// LOCK_EX) for as long as it needs the lab: the lab's names are fixed, so
// two labs cannot run at once.
const LabLock = "/run/capsec-lab.lock"

// Lock holds the lab lock until Release.
type Lock struct {
	f         *os.File
	inherited bool
	holder    int // the ancestor holding it for us, if any
}

// AcquireLock takes an exclusive flock on path, waiting until ctx ends. If
// this process inherited a descriptor of path whose lock is already held,
// as under `flock /run/capsec-lab.lock capsec-bench …`, that lock is ours
// and is used: opening the file again and locking would wait for ourselves.
// Likewise if an ancestor holds it (`flock -o`, which closes the descriptor
// before running us).
// waiting is called once if the lock is busy.
func AcquireLock(ctx context.Context, path string, waiting func()) (*Lock, error) {
	if fd, ok := inheritedFD(path); ok {
		// flock on a descriptor whose open file already holds the lock
		// succeeds at once; otherwise it is a normal attempt.
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err == nil {
			// Our children need not hold it: it is released only when the
			// last holder closes it, and an agent left running must not.
			unix.CloseOnExec(fd)
			return &Lock{f: os.NewFile(uintptr(fd), path), inherited: true}, nil
		}
	}
	// Under `flock -o`, the lock is held by our parent, which closed its
	// descriptor for us: waiting would be waiting for ourselves.
	if pid, ok := heldByAncestor(path); ok {
		return &Lock{inherited: true, holder: pid}, nil
	}
	return acquire(ctx, path, waiting)
}

// acquire opens path and waits for an exclusive flock on it.
func acquire(ctx context.Context, path string, waiting func()) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lab lock %s: %w", path, err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: another lab user holds it: %w", path, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Release drops the lock. An inherited lock is left to its owner.
func (l *Lock) Release() error {
	if l.inherited || l.f == nil {
		return nil
	}
	return l.f.Close()
}

// heldByAncestor reports whether one of our ancestors holds an exclusive
// flock on path, from /proc/locks, and which.
func heldByAncestor(path string) (int, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, false
	}
	holders := flockHolders(string(b), uint64(unix.Major(st.Dev)), uint64(unix.Minor(st.Dev)), st.Ino)
	for pid := os.Getppid(); pid > 1; pid = parentOf(pid) {
		if holders[pid] {
			return pid, true
		}
	}
	return 0, false
}

// flockHolders parses /proc/locks for the pids holding an exclusive flock
// on the file dev major:minor, inode ino. Waiters ("->") hold nothing.
func flockHolders(locks string, major, minor, ino uint64) map[int]bool {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	out := map[int]bool{}
	for _, line := range strings.Split(locks, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[3] != "WRITE" || f[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil {
			out[pid] = true
		}
	}
	return out
}

// parentOf is pid's parent, from /proc/PID/stat; 0 if unknown.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'. They are: state, ppid, ...
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// inheritedFD finds an open descriptor of path among our own.
func inheritedFD(path string) (int, bool) {
	want, err := filepath.Abs(path)
	if err != nil {
		return 0, false
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || target != want {
			continue
		}
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd > 2 {
			return fd, true
		}
	}
	return 0, false
}
