package transfer

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// wantUDPBuffer is what quic-go asks the kernel for (its desiredBufferSize
// on Linux). Below it, bulk transfers lose packets under load and slow down.
const wantUDPBuffer = 7 << 20

// warnSmallUDPBuffers logs once per listener when the socket buffers quic-go
// obtained are smaller than it wanted. quic-go raises them itself when it
// can (as root via SO_RCVBUFFORCE); otherwise net.core.rmem_max and
// wmem_max cap them and only the operator can fix it.
func warnSmallUDPBuffers(udp *net.UDPConn, log *slog.Logger) {
	raw, err := udp.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	_ = raw.Control(func(fd uintptr) {
		rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	if rcv >= wantUDPBuffer && snd >= wantUDPBuffer {
		return
	}
	log.Warn("UDP socket buffers are smaller than QUIC wants; large transfers may be slow",
		"listen", udp.LocalAddr().String(),
		"rcvbuf_kib", rcv/1024, "sndbuf_kib", snd/1024, "want_kib", wantUDPBuffer/1024,
		"net.core.rmem_max", readSysctl("/proc/sys/net/core/rmem_max"),
		"net.core.wmem_max", readSysctl("/proc/sys/net/core/wmem_max"),
		"fix", "sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000")
}

func readSysctl(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}
