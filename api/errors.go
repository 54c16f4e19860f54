package api

import (
	"errors"
	"net/http"
)

// The error classes, after containerd's errdefs: wrap one where the error
// arises (fmt.Errorf("container %s: %w", name, api.ErrNotFound)) and the
// class survives the trip across the socket.
var (
	ErrInvalid            = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrPermission         = errors.New("permission denied")
	ErrInternal           = errors.New("internal error")
)

var classes = []struct {
	err    error
	name   string
	status int
}{
	{ErrInvalid, "invalid", http.StatusBadRequest},
	{ErrNotFound, "not-found", http.StatusNotFound},
	{ErrAlreadyExists, "already-exists", http.StatusConflict},
	{ErrFailedPrecondition, "failed-precondition", http.StatusPreconditionFailed},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
	{ErrPermission, "permission-denied", http.StatusForbidden},
	{ErrInternal, "internal", http.StatusInternalServerError},
}

// Classify returns the class name and HTTP status of err: the one place a
// class maps to a status.
func Classify(err error) (class string, status int) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.name, c.status
		}
	}
	return "internal", http.StatusInternalServerError
}

// RemoteError is an error that came back over the socket. It keeps its class,
// so errors.Is(err, api.ErrNotFound) works on the client side.
type RemoteError struct {
	Msg   string
	Class string
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap gives the class sentinel back.
func (e *RemoteError) Unwrap() error {
	for _, c := range classes {
		if c.name == e.Class {
			return c.err
		}
	}
	return ErrInternal
}
