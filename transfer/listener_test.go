package transfer

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestListenerLifecycle(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := Listen(context.Background(), "127.0.0.1:0", ServerTLS(pki.identity(t, "node-b"), []string{"node-a"}),
		WithLogger(quietLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The client's Dial completes before the server calls Accept.
	client, err := Dial(ctx, ln.Addr().String(), ClientTLS(pki.identity(t, "node-a"), "node-b"), WithIdleTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := ln.Accept(ctx); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	select {
	case <-server.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("closing the listener did not end its session")
	}
	select {
	case <-client.Context().Done():
	case <-time.After(2 * time.Second): // far below the 30s idle timeout
		t.Fatal("client was not told that the listener closed")
	}
	if _, err := client.OpenStream(ctx); err == nil {
		t.Fatal("OpenStream on a dead session succeeded")
	}
}

func TestWarnSmallUDPBuffers(t *testing.T) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if err := udp.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	warnSmallUDPBuffers(udp, slog.New(slog.NewTextHandler(&buf, nil)))
	if out := buf.String(); !strings.Contains(out, "net.core.rmem_max=") || !strings.Contains(out, "sysctl -w") {
		t.Fatalf("no actionable warning for a 64 KiB buffer: %q", out)
	}
}
