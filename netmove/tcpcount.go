package netmove

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// EstablishedTCP counts ESTABLISHED TCP sockets (IPv4 and IPv6) in the netns
// at nsPath. It reads /proc/thread-self/net/tcp{,6} from a thread inside the
// netns: /proc/self/net would show the main thread's netns instead.
func EstablishedTCP(nsPath string) (int, error) {
	total := 0
	err := inNSPath(nsPath, func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) && strings.HasSuffix(f, "6") {
				continue // no IPv6 in this kernel
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", f, err)
			}
			n, err := countEstablished(b)
			if err != nil {
				return fmt.Errorf("parse %s: %w", f, err)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("established TCP in %s: %w", nsPath, err)
	}
	return total, nil
}

// tcpEstablished is TCP_ESTABLISHED as printed (hex) in /proc/net/tcp.
const tcpEstablished = "01"

// countEstablished parses /proc/net/tcp format: a header line, then one
// socket per line with the state in the 4th column.
func countEstablished(b []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	n, line := 0, 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			return 0, fmt.Errorf("line %d: %d fields, want at least 4", line, len(f))
		}
		if f[3] == tcpEstablished {
			n++
		}
	}
	return n, sc.Err()
}
