package transfer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// quietLog keeps expected refusals out of the test output unless -v.
func quietLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testPKI struct {
	ca *CA
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca}
}

// identity issues a certificate for node valid from an hour ago for a day.
func (p *testPKI) identity(t testing.TB, node string) *Identity {
	t.Helper()
	now := time.Now()
	return p.identityValid(t, node, now.Add(-time.Hour), now.Add(24*time.Hour))
}

func (p *testPKI) identityValid(t testing.TB, node string, notBefore, notAfter time.Time) *Identity {
	t.Helper()
	cert, err := p.ca.Issue(node, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return &Identity{Node: node, Cert: cert, Roots: p.ca.Pool()}
}

// withRoots returns id trusting roots instead of its own CA.
func withRoots(id *Identity, roots *x509.CertPool) *Identity {
	c := *id
	c.Roots = roots
	return &c
}

// listen starts a listener on loopback that is closed when the test ends.
func listen(t testing.TB, conf *tls.Config) *Listener {
	t.Helper()
	ln, err := Listen(context.Background(), "127.0.0.1:0", conf, WithLogger(quietLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// sessionPair connects node-a (client) to node-b (server) with mutual TLS.
func sessionPair(t testing.TB) (client, server *Session) {
	t.Helper()
	pki := newTestPKI(t)
	a, b := pki.identity(t, "node-a"), pki.identity(t, "node-b")
	ln := listen(t, ServerTLS(b, []string{"node-a"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *Session, 1)
	go func() {
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- s
	}()
	client, err := Dial(ctx, ln.Addr().String(), ClientTLS(a, "node-b"), WithLogger(quietLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// writeRandom writes size pseudo-random bytes to dir/rel.
func writeRandom(t testing.TB, dir, rel string, size int64, seed uint64) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	if _, err := io.CopyN(f, rng, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
