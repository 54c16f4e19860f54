package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAcquireLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.lock")
	first, err := AcquireLock(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("second holder waits", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		waited := false
		// first's descriptor is ours too, so pretend not to see it: a
		// separate open file is what another process would have.
		if _, err := acquireFresh(ctx, path, func() { waited = true }); err == nil {
			t.Fatal("took a lock that is held")
		}
		if !waited {
			t.Error("did not say it was waiting")
		}
	})
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	t.Run("free after release", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l, err := acquireFresh(ctx, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
	})
	t.Run("inherited lock is ours", func(t *testing.T) {
		// As under flock(1): a descriptor of the file, already locked.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l, err := AcquireLock(ctx, path, nil)
		if err != nil {
			t.Fatalf("waited for a lock we hold: %v", err)
		}
		if !l.inherited {
			t.Error("did not use the inherited descriptor")
		}
		l.Release()
		ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := acquireFresh(ctx, path, nil); err == nil {
			t.Error("releasing an inherited lock dropped it from its owner")
		}
	})
}

// acquireFresh is AcquireLock without looking for inherited descriptors.
func acquireFresh(ctx context.Context, path string, waiting func()) (*Lock, error) {
	return acquire(ctx, path, waiting)
}

func TestFlockHolders(t *testing.T) {
	locks := `1: FLOCK  ADVISORY  WRITE 4696 fe:00:9773060 0 EOF
1: -> FLOCK  ADVISORY  WRITE 7090 fe:00:9773060 0 EOF
2: POSIX  ADVISORY  WRITE 3113 fe:00:9773060 0 0
3: FLOCK  ADVISORY  READ 5000 fe:00:9773060 0 EOF
4: FLOCK  ADVISORY  WRITE 6000 fe:00:1234 0 EOF
5: OFDLCK ADVISORY  READ -1 fe:00:762913 203 203
`
	cases := []struct {
		name         string
		major, minor uint64
		ino          uint64
		want         []int
	}{
		{"holder, not the waiter", 0xfe, 0, 9773060, []int{4696}},
		{"another file", 0xfe, 0, 1234, []int{6000}},
		{"another device", 0x08, 1, 9773060, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := flockHolders(locks, tc.major, tc.minor, tc.ino)
			if len(got) != len(tc.want) {
				t.Fatalf("holders %v, want %v", got, tc.want)
			}
			for _, pid := range tc.want {
				if !got[pid] {
					t.Errorf("holders %v lack %d", got, pid)
				}
			}
		})
	}
}

func TestParentOf(t *testing.T) {
	if got, want := parentOf(os.Getpid()), os.Getppid(); got != want {
		t.Errorf("parentOf(self) = %d, want %d", got, want)
	}
	if got := parentOf(-1); got != 0 {
		t.Errorf("parentOf(-1) = %d, want 0", got)
	}
}

// TestLockHeldByParent is `flock -o LOCK capsec-bench`: the parent holds
// the lock and the child has no descriptor of it. The child must see the
// lock as its own rather than wait for its parent.
func TestLockHeldByParent(t *testing.T) {
	if path := os.Getenv("CAPSEC_BENCH_LOCK_CHILD"); path != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l, err := AcquireLock(ctx, path, nil)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		if l.holder != os.Getppid() {
			t.Fatalf("child: holder %d, want the parent %d", l.holder, os.Getppid())
		}
		return
	}
	path := filepath.Join(t.TempDir(), "lab.lock")
	held, err := acquire(context.Background(), path, nil) // close-on-exec
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHeldByParent$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CAPSEC_BENCH_LOCK_CHILD="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child could not take the lock its parent holds: %v\n%s", err, out)
	}
}
