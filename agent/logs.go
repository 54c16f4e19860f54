package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// maxLogBytes bounds a container's log file: past it the file starts over,
// since a PLC that logs forever must not fill the node's disk.
const maxLogBytes = 8 << 20

func (a *Agent) logPath(name string) string {
	return filepath.Join(a.cfg.StateDir, "logs", name+".log")
}

// drain copies a container's output pipe into its log file until the pipe
// closes. The container writes into a pipe, never a host file, because CRIU
// cannot dump a descriptor that points at a host file.
func (a *Agent) drain(name string, r io.ReadCloser) {
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(a.logPath(name)), 0o700); err != nil {
		a.log.Error("container log", "container", name, "err", err)
		return
	}
	f, err := os.OpenFile(a.logPath(name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		a.log.Error("container log", "container", name, "err", err)
		return
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if fi, serr := f.Stat(); serr == nil && fi.Size() > maxLogBytes {
				f.Truncate(0)
			}
			f.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// copyLogs writes a container's log to w; with follow it keeps writing new
// lines until ctx ends.
func (a *Agent) copyLogs(ctx context.Context, name string, follow bool, w io.Writer) error {
	f, err := os.Open(a.logPath(name))
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			if f, err = os.Open(a.logPath(name)); err == nil {
				break
			}
		}
	} else if err != nil {
		return fmt.Errorf("logs of %s: %w", name, err)
	}
	defer f.Close()
	flusher, _ := w.(interface{ Flush() })
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
