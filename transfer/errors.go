package transfer

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
)

// ErrorCode is an application error code carried by QUIC when a session is
// closed or a stream is reset, and in error frames on control streams.
type ErrorCode uint64

// Application error codes. Values are part of the wire protocol: only append.
const (
	ErrCodeNone     ErrorCode = 0 // normal close
	ErrCodeRefused  ErrorCode = 1 // peer or request refused by policy
	ErrCodeProtocol ErrorCode = 2 // malformed or unexpected frame
	ErrCodeInternal ErrorCode = 3 // local failure (I/O, bug)
	ErrCodeCanceled ErrorCode = 4 // caller canceled or timed out
	ErrCodeDigest   ErrorCode = 5 // file size or SHA-256 differs from the manifest
	ErrCodeLimit    ErrorCode = 6 // a size or count limit was exceeded
)

func (c ErrorCode) String() string {
	switch c {
	case ErrCodeNone:
		return "none"
	case ErrCodeRefused:
		return "refused"
	case ErrCodeProtocol:
		return "protocol error"
	case ErrCodeInternal:
		return "internal error"
	case ErrCodeCanceled:
		return "canceled"
	case ErrCodeDigest:
		return "digest mismatch"
	case ErrCodeLimit:
		return "limit exceeded"
	}
	return fmt.Sprintf("code %#x", uint64(c))
}

// Error classes. Errors from this package wrap one of these where one fits,
// including errors the peer reported (see PeerError.Is).
var (
	ErrRefused        = errors.New("refused")
	ErrProtocol       = errors.New("protocol violation")
	ErrFrameTooLarge  = errors.New("frame too large")
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrLimitExceeded  = errors.New("limit exceeded")
	ErrBadManifest    = errors.New("invalid manifest")
)

// PeerError is a failure the peer reported: in an error frame, by resetting a
// stream, or by closing the session with an application error code.
type PeerError struct {
	Code    ErrorCode
	Message string
	Err     error // the underlying QUIC error, if any
}

func (e *PeerError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("peer reported %s", e.Code)
	}
	return fmt.Sprintf("peer reported %s: %s", e.Code, e.Message)
}

func (e *PeerError) Unwrap() error { return e.Err }

// Is maps the peer's code to this package's error classes, so that
// errors.Is(err, ErrDigestMismatch) holds on both ends of a transfer.
func (e *PeerError) Is(target error) bool {
	switch target {
	case ErrRefused:
		return e.Code == ErrCodeRefused
	case ErrProtocol:
		return e.Code == ErrCodeProtocol
	case ErrDigestMismatch:
		return e.Code == ErrCodeDigest
	case ErrLimitExceeded:
		return e.Code == ErrCodeLimit
	}
	return false
}

// Code returns the application error code carried by err: one the peer sent
// (PeerError, QUIC application or stream error) or the one this package would
// send for a local error.
func Code(err error) ErrorCode {
	if pe, ok := errors.AsType[*PeerError](err); ok {
		return pe.Code
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return ErrorCode(ae.ErrorCode)
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		return ErrorCode(se.ErrorCode)
	}
	switch {
	case err == nil:
		return ErrCodeNone
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrCodeCanceled
	case errors.Is(err, ErrRefused):
		return ErrCodeRefused
	case errors.Is(err, ErrDigestMismatch):
		return ErrCodeDigest
	case errors.Is(err, ErrLimitExceeded), errors.Is(err, ErrFrameTooLarge):
		return ErrCodeLimit
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrBadManifest):
		return ErrCodeProtocol
	}
	return ErrCodeInternal
}

// fromPeer turns a QUIC error that the peer caused (stream reset, stop
// sending, application close) into a *PeerError; other errors pass unchanged.
func fromPeer(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*PeerError](err); ok {
		return err
	}
	if se, ok := errors.AsType[*quic.StreamError](err); ok && se.Remote {
		return &PeerError{Code: ErrorCode(se.ErrorCode), Message: "stream reset", Err: err}
	}
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok && ae.Remote {
		return &PeerError{Code: ErrorCode(ae.ErrorCode), Message: ae.ErrorMessage, Err: err}
	}
	return err
}

// PeerRefusedError is returned by the certificate checks of ServerTLS and
// ClientTLS when a correctly signed peer is still not acceptable.
type PeerRefusedError struct {
	Peer   string // node name from the certificate, if any
	Reason string
}

func (e *PeerRefusedError) Error() string {
	if e.Peer == "" {
		return "peer refused: " + e.Reason
	}
	return fmt.Sprintf("peer %s %s", e.Peer, e.Reason)
}

func (e *PeerRefusedError) Is(target error) bool { return target == ErrRefused }

// TLS alert numbers (RFC 8446) as QUIC carries them: CRYPTO_ERROR = 0x100 + alert.
const (
	alertBadCertificate     = 42
	alertCertificateExpired = 45
	alertUnknownCA          = 48
	alertAccessDenied       = 49
	alertCertificateNeeded  = 116
	alertNoALPN             = 120
)

// explainHandshake says in an operator's words why a handshake failed. The
// peer never tells us its reason, only a TLS alert number, so remote failures
// are explained from the alert.
func explainHandshake(err error) string {
	if pr, ok := errors.AsType[*PeerRefusedError](err); ok {
		return pr.Error()
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return "the peer's certificate is signed by unknown authority (not our operator CA)"
	}
	if ci, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ci.Reason == x509.Expired {
		return "the peer's certificate expired or is not yet valid (" + ci.Detail + ")"
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		return "the peer's certificate is for another node (" + he.Error() + ")"
	}
	if _, ok := errors.AsType[*quic.HandshakeTimeoutError](err); ok {
		return "handshake timed out: is the peer agent running and reachable over UDP?"
	}
	if _, ok := errors.AsType[*quic.IdleTimeoutError](err); ok {
		return "no answer from the peer: is the peer agent running and reachable over UDP?"
	}
	te, ok := errors.AsType[*quic.TransportError](err)
	if !ok || !te.Remote || te.ErrorCode < 0x100 || te.ErrorCode > 0x1ff {
		return ""
	}
	switch te.ErrorCode - 0x100 {
	case alertBadCertificate:
		return "the peer refused our certificate: most likely this node is not in the peer's allowed peers"
	case alertCertificateExpired:
		return "the peer refused our certificate: certificate expired"
	case alertUnknownCA:
		return "the peer refused our certificate: certificate signed by unknown authority (is it from the peer's CA?)"
	case alertAccessDenied:
		return "the peer denied access to this node"
	case alertCertificateNeeded:
		return "the peer requires a client certificate and we sent none"
	case alertNoALPN:
		return "the peer does not speak protocol " + ALPN
	}
	return ""
}
