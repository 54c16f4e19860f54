package transfer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const bigFile = "big.img"

// sourceDir makes a checkpoint-like tree once per test binary run.
func sourceDir(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	writeRandom(t, dir, bigFile, 64<<20, 1)
	writeRandom(t, dir, "pages-1.img", 3<<20+17, 2)
	writeRandom(t, dir, "sub/dir/inventory.img", 4096, 3)
	writeRandom(t, dir, "empty.img", 0, 4)
	m, err := BuildManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, m
}

type result struct {
	sent, received   int64
	manifest         *Manifest
	sendErr, recvErr error
}

// move runs SendFiles on client and ReceiveFiles on server concurrently.
func move(t *testing.T, client, server *Session, src string, m *Manifest, dst string,
	opts SendOptions, lim Limits, recvCtx context.Context) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if recvCtx == nil {
		recvCtx = ctx
	}
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.manifest, r.received, r.recvErr = ReceiveFiles(recvCtx, server, dst, lim)
	}()
	r.sent, r.sendErr = SendFiles(ctx, client, src, m, opts)
	<-done
	t.Logf("sent %d (err %v), received %d (err %v)", r.sent, r.sendErr, r.received, r.recvErr)
	return r
}

func flipByte(path string, at int64) func(string, int64, []byte) {
	return func(p string, off int64, b []byte) {
		if p == path && off <= at && at < off+int64(len(b)) {
			b[at-off] ^= 0xff
		}
	}
}

func TestSendReceiveFiles(t *testing.T) {
	src, m := sourceDir(t)
	total := m.TotalBytes()

	tests := []struct {
		name      string
		preexist  bool // dst exists with a file of its own
		opts      SendOptions
		lim       Limits
		want      error
		wantInErr string
	}{
		{name: "intact"},
		{name: "intact, one at a time", opts: SendOptions{Concurrency: 1}},
		{name: "corrupted byte", opts: SendOptions{Corrupt: flipByte(bigFile, 40<<20)},
			want: ErrDigestMismatch, wantInErr: "file " + bigFile},
		{name: "corrupted byte, existing dir", preexist: true, opts: SendOptions{Corrupt: flipByte("sub/dir/inventory.img", 0)},
			want: ErrDigestMismatch, wantInErr: "file sub/dir/inventory.img"},
		{name: "over MaxTotal", lim: Limits{MaxTotal: total - 1}, want: ErrLimitExceeded, wantInErr: "exceeds the limit"},
		{name: "over MaxFiles", lim: Limits{MaxFiles: len(m.Files) - 1}, want: ErrLimitExceeded, wantInErr: "files exceeds"},
		{name: "manifest too large", lim: Limits{MaxManifest: 100}, want: ErrLimitExceeded, wantInErr: "frame too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := sessionPair(t)
			dst := filepath.Join(t.TempDir(), "images")
			if tc.preexist {
				if err := os.Mkdir(dst, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dst, "keep"), []byte("mine"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var progress atomic.Int64
			tc.opts.Progress = func(sent int64) { progress.Store(sent) }
			r := move(t, client, server, src, m, dst, tc.opts, tc.lim, nil)

			if tc.want == nil {
				if r.sendErr != nil || r.recvErr != nil {
					t.Fatalf("send: %v; receive: %v", r.sendErr, r.recvErr)
				}
				if r.sent != total || r.received != total || progress.Load() != total {
					t.Errorf("sent %d, received %d, progress %d; want %d", r.sent, r.received, progress.Load(), total)
				}
				if len(r.manifest.Files) != len(m.Files) {
					t.Errorf("receiver manifest has %d files, want %d", len(r.manifest.Files), len(m.Files))
				}
				if err := VerifyDir(dst, m); err != nil {
					t.Fatal(err)
				}
				checkModes(t, dst)
				st := client.Stats()
				if st.StreamSent < total || st.WireSent < uint64(total) {
					t.Errorf("client stats %+v, want at least %d bytes sent", st, total)
				}
				return
			}
			for side, err := range map[string]error{"sender": r.sendErr, "receiver": r.recvErr} {
				if !errors.Is(err, tc.want) {
					t.Errorf("%s error %v, want %v", side, err, tc.want)
				}
				if tc.wantInErr != "" && !strings.Contains(err.Error(), tc.wantInErr) {
					t.Errorf("%s error %q does not say %q", side, err, tc.wantInErr)
				}
			}
			checkNothingLeft(t, dst, tc.preexist)
			// A failed transfer must not break the session.
			if err := pingPong(client, server); err != nil {
				t.Errorf("session after failed transfer: %v", err)
			}
		})
	}
}

func checkModes(t *testing.T, dst string) {
	t.Helper()
	err := filepath.Walk(dst, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func checkNothingLeft(t *testing.T, dst string, preexist bool) {
	t.Helper()
	entries, err := os.ReadDir(dst)
	switch {
	case !preexist && !errors.Is(err, os.ErrNotExist):
		t.Errorf("%s still exists after a failed transfer (%d entries, err %v)", dst, len(entries), err)
	case preexist && err != nil:
		t.Errorf("pre-existing %s: %v", dst, err)
	case preexist && (len(entries) != 1 || entries[0].Name() != "keep"):
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("pre-existing %s holds %v after a failed transfer, want only [keep]", dst, names)
	}
}

// pingPong exchanges one message over a caller stream.
func pingPong(client, server *Session) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := client.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := WriteMsg(st, 1, "ping"); err != nil {
		return err
	}
	in, err := server.AcceptStream(ctx)
	if err != nil {
		return err
	}
	defer in.Close()
	var s string
	if err := ExpectMsg(in, 1024, 1, &s); err != nil {
		return err
	}
	if s != "ping" {
		return errors.New("got " + s)
	}
	return nil
}

// TestCallerStreamsDuringTransfer checks that the caller's streams and a
// file transfer share a session without stealing each other's streams.
func TestCallerStreamsDuringTransfer(t *testing.T) {
	src, m := sourceDir(t)
	client, server := sessionPair(t)
	dst := filepath.Join(t.TempDir(), "images")
	pings := make(chan error, 1)
	go func() {
		var err error
		for range 20 {
			if err = pingPong(client, server); err != nil {
				break
			}
		}
		pings <- err
	}()
	r := move(t, client, server, src, m, dst, SendOptions{}, Limits{}, nil)
	if r.sendErr != nil || r.recvErr != nil {
		t.Fatalf("send: %v; receive: %v", r.sendErr, r.recvErr)
	}
	if err := <-pings; err != nil {
		t.Fatalf("caller stream during transfer: %v", err)
	}
	if err := VerifyDir(dst, m); err != nil {
		t.Fatal(err)
	}
}

// TestCanceled cancels one side mid-transfer: that side returns its
// context's error, the other learns why from the error frame, and the
// receiver leaves nothing behind.
func TestCanceled(t *testing.T) {
	src, m := sourceDir(t)
	for _, side := range []string{"receiver", "sender"} {
		t.Run(side, func(t *testing.T) {
			client, server := sessionPair(t)
			dst := filepath.Join(t.TempDir(), "images")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := SendOptions{Progress: func(sent int64) {
				if sent > 8<<20 {
					cancel()
				}
			}}
			var r result
			if side == "receiver" {
				r = move(t, client, server, src, m, dst, opts, Limits{}, ctx)
			} else {
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, r.received, r.recvErr = ReceiveFiles(context.Background(), server, dst, Limits{})
				}()
				r.sent, r.sendErr = SendFiles(ctx, client, src, m, opts)
				<-done
				t.Logf("send: %v; receive: %v", r.sendErr, r.recvErr)
			}
			local, remote := r.recvErr, r.sendErr
			if side == "sender" {
				local, remote = r.sendErr, r.recvErr
			}
			if !errors.Is(local, context.Canceled) {
				t.Errorf("%s error %v, want context.Canceled", side, local)
			}
			if Code(remote) != ErrCodeCanceled || !strings.Contains(fmt.Sprint(remote), "context canceled") {
				t.Errorf("other side's error %v, want code canceled explaining \"context canceled\"", remote)
			}
			checkNothingLeft(t, dst, false)
		})
	}
}

// TestSenderGone closes the sending session mid-transfer: the receiver must
// fail and clean up rather than wait.
func TestSenderGone(t *testing.T) {
	src, m := sourceDir(t)
	client, server := sessionPair(t)
	dst := filepath.Join(t.TempDir(), "images")
	opts := SendOptions{Progress: func(sent int64) {
		if sent > 4<<20 {
			_ = client.CloseWithError(ErrCodeInternal, "agent shutting down")
		}
	}}
	r := move(t, client, server, src, m, dst, opts, Limits{}, nil)
	if r.sendErr == nil || r.recvErr == nil {
		t.Fatalf("send: %v; receive: %v; want both to fail", r.sendErr, r.recvErr)
	}
	checkNothingLeft(t, dst, false)
}

func BenchmarkSendFiles(b *testing.B) {
	src := b.TempDir()
	for i := range 4 {
		writeRandom(b, src, filepath.Join("pages", "pages-"+string(rune('1'+i))+".img"), 64<<20, uint64(i))
	}
	m, err := BuildManifest(src)
	if err != nil {
		b.Fatal(err)
	}
	client, server := sessionPair(b)
	b.SetBytes(m.TotalBytes())
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(b.TempDir(), "images")
		ctx := context.Background()
		errc := make(chan error, 1)
		go func() {
			_, _, err := ReceiveFiles(ctx, server, dst, Limits{})
			errc <- err
		}()
		if _, err := SendFiles(ctx, client, src, m, SendOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
	st := client.Stats()
	b.ReportMetric(float64(st.WireSent)/float64(st.StreamSent), "wire/payload")
}

func TestEmptyTransfer(t *testing.T) {
	src := t.TempDir()
	m, err := BuildManifest(src)
	if err != nil {
		t.Fatal(err)
	}
	client, server := sessionPair(t)
	dst := filepath.Join(t.TempDir(), "images")
	r := move(t, client, server, src, m, dst, SendOptions{}, Limits{}, nil)
	if r.sendErr != nil || r.recvErr != nil || r.sent != 0 || r.received != 0 {
		t.Fatalf("empty transfer: %+v", r)
	}
	if st, err := os.Stat(dst); err != nil || !st.IsDir() {
		t.Fatalf("destination not created: %v", err)
	}
}
