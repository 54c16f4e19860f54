//go:build !linux

package transfer

import (
	"log/slog"
	"net"
)

// warnSmallUDPBuffers is Linux-only: other systems size UDP buffers differently.
func warnSmallUDPBuffers(*net.UDPConn, *slog.Logger) {}
