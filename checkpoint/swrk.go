package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// maxCRIUMessage caps one RPC message from CRIU; its replies are a few
// hundred bytes (libcontainer reads 40 KiB).
const maxCRIUMessage = 64 * 1024

// swrk is one `criu swrk 3` worker: a CRIU process that serves RPC requests
// on a SOCK_SEQPACKET socket (its fd 3). Start it before the caller is ready
// to freeze anything, so that the exec is not part of the freeze.
type swrk struct {
	cmd  *exec.Cmd
	sock *os.File
}

// startSwrk starts CRIU at path as an RPC worker. It is killed when ctx ends.
func startSwrk(ctx context.Context, path string) (*swrk, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("CRIU RPC socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "criu-rpc")
	theirs := os.NewFile(uintptr(fds[1]), "criu-rpc-worker")
	cmd := exec.CommandContext(ctx, path, "swrk", "3")
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	err = cmd.Start()
	// Close CRIU's end at once: if CRIU dies, our reads see EOF instead of
	// hanging on a socket we hold open ourselves.
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("start %s swrk: %w", path, err)
	}
	return &swrk{cmd: cmd, sock: ours}, nil
}

// do sends req and answers CRIU's notifications with notify (nil: accept
// all) until the final response, which it returns. A failed response is an
// error naming CRIU's errno and message.
func (w *swrk) do(req *rpc.CriuReq, notify func(*rpc.CriuNotify) error) (*rpc.CriuResp, error) {
	msg, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("CRIU %s request: %w", req.GetType(), err)
	}
	buf := make([]byte, maxCRIUMessage)
	for {
		if _, err := w.sock.Write(msg); err != nil {
			return nil, fmt.Errorf("CRIU %s: send: %w", req.GetType(), err)
		}
		n, err := w.sock.Read(buf)
		switch {
		case err != nil:
			return nil, fmt.Errorf("CRIU %s: receive: %w", req.GetType(), err)
		case n == 0:
			return nil, fmt.Errorf("CRIU %s: worker closed the connection (crashed?)", req.GetType())
		case n == len(buf):
			return nil, fmt.Errorf("CRIU %s: reply of %d bytes or more", req.GetType(), n)
		}
		resp := &rpc.CriuResp{}
		if err := proto.Unmarshal(buf[:n], resp); err != nil {
			return nil, fmt.Errorf("CRIU %s: reply: %w", req.GetType(), err)
		}
		if !resp.GetSuccess() {
			return resp, fmt.Errorf("criu failed: type %s errno %d %s", resp.GetType(), resp.GetCrErrno(), resp.GetCrErrmsg())
		}
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			if resp.GetType() != req.GetType() {
				return resp, fmt.Errorf("CRIU %s: unexpected reply type %s", req.GetType(), resp.GetType())
			}
			return resp, nil
		}
		if notify != nil {
			if err := notify(resp.GetNotify()); err != nil {
				return resp, fmt.Errorf("CRIU notification %s: %w", resp.GetNotify().GetScript(), err)
			}
		}
		msg, err = proto.Marshal(&rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(true)})
		if err != nil {
			return nil, err
		}
	}
}

// close ends the worker: closing the socket makes CRIU exit after a request.
func (w *swrk) close() error {
	cerr := w.sock.Close()
	if werr := w.cmd.Wait(); werr != nil {
		return errors.Join(cerr, fmt.Errorf("criu swrk: %w", werr))
	}
	return cerr
}
