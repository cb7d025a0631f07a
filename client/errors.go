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

// ErrKeyRollback reports that the service handed out a user's encryption
// key under an older binding than one this client has already seen for
// that user (or another key under the same binding version): a replaced,
// perhaps stolen, key replayed by whoever controls the servers or the
// buckets. Nothing is sealed to it. Bindings are numbered (see
// subjects.SetKeyRequest) and the client remembers the newest it saw in
// this process.
var ErrKeyRollback = errors.New("older encryption key of a user offered")

// ErrUntrustedMember reports that the owner refused to rekey a room because
// the member list the service returned holds a member the owner never
// granted the current room key to (no valid key grant): a ghost that
// whoever controls the servers or the buckets added. Nothing was sealed to
// it. The error names the member; remove it with Conn.Remove (which seals
// nothing to the member it removes) and look into how it got there.
var ErrUntrustedMember = errors.New("member without the owner's key grant")

// ErrUnauthenticatedKey reports a room key the service handed out that the
// room's owner did not grant to this client (its key grant is missing or
// does not verify; the error also matches e2e.ErrBadGrant): a key chosen by
// someone else, which the client refuses to use. It is not cached, so a
// later attempt asks again.
var ErrUnauthenticatedKey = errors.New("room key not granted by the room's owner")

// ErrUntrustedRoom reports a room whose description does not hold
// together: its ID is not derived from its claimed owner's key, mode and
// salt (subjects.CheckRoomOwner; a server replaced the owner, or claims
// that an encrypted room is cleartext), or its owner or
// mode differ from what this client learned before. The client refuses
// the room.
var ErrUntrustedRoom = errors.New("room description not trusted")

// ErrEpochRollback reports a room state whose epoch is lower than one this
// client already verified (it holds that epoch's key, granted by the
// owner): a rollback, refused so that no one can bring back an older key.
var ErrEpochRollback = errors.New("room epoch rolled back")

// ErrGap reports frames of a room log that a subscription missed and could
// not read back (the log refused or failed for longer than the
// subscription's patience): they are skipped, and the subscription goes
// on. It reaches the subscription's onReject, with the range and the
// cause.
var ErrGap = errors.New("frames missed")

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
