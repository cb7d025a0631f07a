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

// ErrEncryptionKeyLost reports that the encryption key file is missing while
// the identity already has an encryption key registered: every room key
// sealed to this identity is sealed to that key. SetEncryptionKey refuses to
// make a new one silently; restore the file from a backup, or replace the
// key on purpose with ReplaceEncryptionKey (and be invited again).
var ErrEncryptionKeyLost = errors.New("encryption key file missing, but a key is registered")

// Sentinels matched by errors.Is on an *APIError with the corresponding
// service error code: those of package subjects (see subjects.Error).
// Conn's methods wait and retry on ErrTooManyRequests on their own as long
// as their context allows (see Conn.call), so a caller sees it only when
// the context's deadline is nearer than the wait, or after several
// refusals in a row.
var (
	ErrBadRequest      = subjects.ErrBadRequest
	ErrUnauthenticated = subjects.ErrUnauthenticated
	ErrForbidden       = subjects.ErrForbidden
	ErrNotFound        = subjects.ErrNotFound
	ErrConflict        = subjects.ErrConflict
	ErrTooLarge        = subjects.ErrTooLarge
	ErrTooManyRequests = subjects.ErrTooManyRequests
	ErrUnavailable     = subjects.ErrUnavailable
)

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
func (e *APIError) Is(target error) bool { return subjects.HasCode(target, e.Code) }
