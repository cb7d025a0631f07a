package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/unibus/unibus/subjects"
)

// ErrConnect wraps every failure to reach the bus.
var ErrConnect = errors.New("connect to unibus")

// ErrInsecureURL reports a plaintext server URL (nats://, ws:// or no
// scheme) whose host is not a loopback address, which Connect refuses
// without WithInsecure; or, on reconnect, such a server announced by the
// cluster. Fix it with a tls:// URL (and WithCA), or opt into plaintext
// with WithInsecure. Connect's error also matches ErrConnect.
var ErrInsecureURL = errors.New("refusing plaintext beyond loopback")

// Sentinels matched by errors.Is on an *APIError with the corresponding
// service error code.
var (
	// ErrBadRequest: the request was malformed (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthenticated: the signature, timestamp or nonce was refused, or
	// the caller is not registered (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: the caller may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such user, room, member or key (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a duplicate, or a stale epoch (409); re-read and retry.
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: the request exceeded a size limit (413).
	ErrTooLarge = errors.New("too large")
	// ErrTooManyRequests: the caller is over its rate limit (429); the
	// request was not processed. APIError.RetryAfter says when to retry.
	// Conn's methods wait and retry on their own as long as their context
	// allows (see Conn.call), so a caller sees it only when the context's
	// deadline is nearer than the wait, or after several refusals in a row.
	ErrTooManyRequests = errors.New("too many requests")
	// ErrUnavailable: the service or its store is unavailable (503).
	ErrUnavailable = errors.New("service unavailable")
)

var codeSentinels = map[int]error{
	subjects.CodeBadRequest:      ErrBadRequest,
	subjects.CodeUnauthenticated: ErrUnauthenticated,
	subjects.CodeForbidden:       ErrForbidden,
	subjects.CodeNotFound:        ErrNotFound,
	subjects.CodeConflict:        ErrConflict,
	subjects.CodeTooLarge:        ErrTooLarge,
	subjects.CodeTooManyRequests: ErrTooManyRequests,
	subjects.CodeUnavailable:     ErrUnavailable,
}

// APIError is an error answered by a control-plane service: its code and
// its human message.
type APIError struct {
	Subject string
	Code    int
	Message string
	// RetryAfter, on a 429 (ErrTooManyRequests), is how long to wait
	// before the request can succeed; zero when the service gave no hint.
	RetryAfter time.Duration
}

// Error implements error.
func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %s (%d)", e.Subject, e.Message, e.Code)
}

// Is matches the sentinel of the error's code, e.g. ErrForbidden for 403.
func (e *APIError) Is(target error) bool {
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}
