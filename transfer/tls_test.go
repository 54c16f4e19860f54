package transfer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMutualTLS(t *testing.T) {
	pki := newTestPKI(t)
	foreign := newTestPKI(t)
	now := time.Now()
	nodeA := pki.identity(t, "node-a")
	nodeB := pki.identity(t, "node-b")

	tests := []struct {
		name    string
		server  *Identity
		allowed []string
		client  func() *tls.Config
		wantErr string // substring of the Dial error; "" = must connect
	}{{
		name: "good pair", server: nodeB, allowed: []string{"node-a"},
		client: func() *tls.Config { return ClientTLS(nodeA, "node-b") },
	}, {
		name: "client without certificate", server: nodeB, allowed: []string{"node-a"},
		client: func() *tls.Config {
			c := ClientTLS(nodeA, "node-b")
			c.Certificates = nil
			return c
		},
		wantErr: "requires a client certificate",
	}, {
		name: "client certificate from another CA", server: nodeB, allowed: []string{"node-a"},
		client: func() *tls.Config {
			return ClientTLS(withRoots(foreign.identity(t, "node-a"), pki.ca.Pool()), "node-b")
		},
		wantErr: "certificate signed by unknown authority",
	}, {
		name: "server certificate from another CA", server: withRoots(foreign.identity(t, "node-b"), pki.ca.Pool()),
		allowed: []string{"node-a"},
		client:  func() *tls.Config { return ClientTLS(nodeA, "node-b") },
		wantErr: "signed by unknown authority",
	}, {
		name: "expired client certificate", server: nodeB, allowed: []string{"node-a"},
		client: func() *tls.Config {
			return ClientTLS(pki.identityValid(t, "node-a", now.Add(-48*time.Hour), now.Add(-24*time.Hour)), "node-b")
		},
		wantErr: "certificate expired",
	}, {
		name: "expired server certificate", server: pki.identityValid(t, "node-b", now.Add(-48*time.Hour), now.Add(-24*time.Hour)),
		allowed: []string{"node-a"},
		client:  func() *tls.Config { return ClientTLS(nodeA, "node-b") },
		wantErr: "expired",
	}, {
		name: "server is not the node we dialed", server: pki.identity(t, "node-c"), allowed: []string{"node-a"},
		client:  func() *tls.Config { return ClientTLS(nodeA, "node-b") },
		wantErr: "certificate is for another node",
	}, {
		name: "client not in allowed peers", server: nodeB, allowed: []string{"node-x"},
		client:  func() *tls.Config { return ClientTLS(nodeA, "node-b") },
		wantErr: "not in the peer's allowed peers",
	}, {
		name: "empty allowed list refuses everyone", server: nodeB, allowed: nil,
		client:  func() *tls.Config { return ClientTLS(nodeA, "node-b") },
		wantErr: "not in the peer's allowed peers",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln := listen(t, ServerTLS(tc.server, tc.allowed))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			accepted := make(chan *Session, 1)
			acceptCtx, stopAccept := context.WithCancel(ctx)
			defer stopAccept()
			go func() {
				s, _ := ln.Accept(acceptCtx)
				accepted <- s
			}()

			sess, err := Dial(ctx, ln.Addr().String(), tc.client(), WithLogger(quietLog(t)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer sess.Close()
				srv := <-accepted
				if srv == nil {
					t.Fatal("server accepted no session")
				}
				defer srv.Close()
				if got := sess.PeerNode(); got != "node-b" {
					t.Errorf("client sees peer %q, want node-b", got)
				}
				if got := srv.PeerNode(); got != "node-a" {
					t.Errorf("server sees peer %q, want node-a", got)
				}
				return
			}
			if err == nil {
				sess.Close()
				t.Fatalf("Dial succeeded, want error containing %q", tc.wantErr)
			}
			t.Logf("Dial error: %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Dial error %q does not contain %q", err, tc.wantErr)
			}
			// The server must not have produced a session either.
			select {
			case s := <-accepted:
				if s != nil {
					s.Close()
					t.Error("server accepted a session from a refused client")
				}
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// TestServerTLSRefusalMessage checks the server-side reason, which only the
// server's log shows: the client sees a TLS alert.
func TestServerTLSRefusalMessage(t *testing.T) {
	pki := newTestPKI(t)
	conf := ServerTLS(pki.identity(t, "node-b"), []string{"node-a"})
	x := pki.identity(t, "node-x")
	err := conf.VerifyConnection(tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{x.Cert.Leaf},
		VerifiedChains:   [][]*x509.Certificate{{x.Cert.Leaf, pki.ca.Cert}},
	})
	if err == nil || err.Error() != "peer node-x is not in the allowed peers" || !errors.Is(err, ErrRefused) {
		t.Fatalf("VerifyConnection = %v, want \"peer node-x is not in the allowed peers\" matching ErrRefused", err)
	}
}

func TestCAFiles(t *testing.T) {
	dir := t.TempDir()
	caDir, certDir := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	if err := InitCA(caDir); err != nil {
		t.Fatal(err)
	}
	if err := InitCA(caDir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second InitCA = %v, want ErrExist", err)
	}
	if err := IssueNode(caDir, "node-a", certDir, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	if err := IssueNode(caDir, "node-a", certDir, time.Hour, nil); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second IssueNode = %v, want ErrExist", err)
	}
	for _, p := range []string{filepath.Join(caDir, CAKeyFile), filepath.Join(certDir, "node-a.key")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	caFile := filepath.Join(caDir, CACertFile)
	cert, key := filepath.Join(certDir, "node-a.pem"), filepath.Join(certDir, "node-a.key")
	id, err := LoadIdentity("node-a", cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Cert.Leaf
	if leaf.Subject.CommonName != "node-a" || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "node-a" {
		t.Errorf("certificate names CN=%q DNS=%v, want node-a", leaf.Subject.CommonName, leaf.DNSNames)
	}
	if len(leaf.ExtKeyUsage) != 2 {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", leaf.ExtKeyUsage)
	}

	if err := InitCA(filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, node, ca, want string
	}{
		{"wrong node", "node-b", caFile, "certificate is for node node-a, not node-b"},
		{"foreign CA", "node-a", filepath.Join(dir, "other", CACertFile), "certificate signed by unknown authority"},
		{"bad node name", "../x", caFile, "node name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadIdentity(tc.node, cert, key, tc.ca)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadIdentity = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateNodeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"node-a", true}, {"n1.lab", true}, {"a", true},
		{"", false}, {"Node-A", false}, {"-a", false}, {"a.", false}, {"a..b", false},
		{"../etc", false}, {"a/b", false}, {"10.0.0.1", false}, {strings.Repeat("a", 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateNodeName(tc.name); (err == nil) != tc.ok {
				t.Fatalf("ValidateNodeName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}
