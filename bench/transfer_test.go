package bench

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/capsec/capsec/transfer"
)

// TestTransferLoopback runs each mode for real over loopback: no root, no
// namespaces, the same code as the micro-benchmark.
func TestTransferLoopback(t *testing.T) {
	ca, err := transfer.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	id := func(node string) *transfer.Identity {
		now := time.Now()
		cert, err := ca.Issue(node, now.Add(-time.Hour), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return &transfer.Identity{Node: node, Cert: cert, Roots: ca.Pool()}
	}
	a, b := id("node-a"), id("node-b")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 3<<20 + 12345 // not a multiple of the chunk
	for _, mode := range TransferModes {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv, err := ListenTransfer(ctx, mode, "127.0.0.1:0", b, []string{"node-a"}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			got := make(chan error, 1)
			var received int64
			go func() {
				var err error
				received, err = srv.ServeOne(ctx)
				got <- err
			}()
			m, err := SendTransfer(ctx, mode, srv.Addr(), a, "node-b", n)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatalf("receiver: %v", err)
			}
			if received != n || m.Bytes != n || m.Mode != mode || m.MBps <= 0 || m.Seconds <= 0 {
				t.Errorf("received %d, result %+v; want %d bytes at a positive rate", received, m, n)
			}
		})
	}
	t.Run("unknown mode", func(t *testing.T) {
		_, err := ListenTransfer(context.Background(), "carrier-pigeon", "127.0.0.1:0", b, nil, log)
		if err == nil || !strings.Contains(err.Error(), "unknown transfer mode") {
			t.Errorf("err %v, want an unknown mode", err)
		}
	})
	t.Run("quic refuses a peer not allowed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv, err := ListenTransfer(ctx, ModeQUIC, "127.0.0.1:0", b, []string{"node-c"}, log)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if _, err := SendTransfer(ctx, ModeQUIC, srv.Addr(), a, "node-b", 1); err == nil {
			t.Error("a peer outside the allowed list sent a transfer")
		}
	})
}

func TestRatios(t *testing.T) {
	cases := []struct {
		name      string
		modes     []TransferMode
		quic, tls float64
	}{
		{"all", []TransferMode{{Mode: ModeTCP, MBps: 1000}, {Mode: ModeTLS, MBps: 500}, {Mode: ModeQUIC, MBps: 150}}, 0.15, 0.5},
		{"tcp failed", []TransferMode{{Mode: ModeTCP, MBps: 1000, Error: "x"}, {Mode: ModeQUIC, MBps: 150}}, 0, 0},
		{"quic failed", []TransferMode{{Mode: ModeTCP, MBps: 1000}, {Mode: ModeQUIC, MBps: 150, Error: "x"}}, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := TransferResult{Modes: tc.modes}
			r.Ratios()
			if r.QUICOverTCP != tc.quic || r.TLSOverTCP != tc.tls {
				t.Errorf("ratios quic %v tls %v, want %v %v", r.QUICOverTCP, r.TLSOverTCP, tc.quic, tc.tls)
			}
		})
	}
}
