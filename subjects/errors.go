package subjects

import (
	"errors"
	"strconv"
)

// Validation errors. Each error returned by a validator or builder in this
// package names the rejected value (quoted, truncated when long, never echoed
// when it looks like a secret seed) and the reason, and matches one of these
// with errors.Is. On the control plane they all mean 400 (CodeBadRequest).
var (
	// ErrInvalidToken reports a value that is not a safe NATS subject token:
	// empty, longer than MaxTokenLen bytes, not UTF-8, or containing '.', '*',
	// '>', whitespace or a control character.
	ErrInvalidToken = errors.New("invalid token")

	// ErrInvalidRoomID reports a value that is not a room ID (see
	// ValidateRoomID). Every rejected room ID matches ErrInvalidRoomID; one
	// that is also unsafe as a subject token (for example "a.*") additionally
	// matches ErrInvalidToken.
	ErrInvalidRoomID = errors.New("invalid room id")

	// ErrInvalidUserKey reports a value that is not an nkey user public key
	// (U…), including valid keys of another kind such as account keys (A…).
	ErrInvalidUserKey = errors.New("invalid user key")

	// ErrInvalidSubject reports a subject that is not of the expected form,
	// for example in RoomIDFromSubject.
	ErrInvalidSubject = errors.New("invalid subject")
)

// Signed-request errors, returned by VerifyRequest (and, for owner and
// encryption-key signatures, by the Verify… helpers of the wire types).
// They are distinct so that logs and metrics can tell them apart, but every
// one of them means 401 (CodeUnauthenticated) on the control plane: a service
// maps any error from VerifyRequest to 401 without inspecting it further.
var (
	// ErrMissingSignature reports a request without one of the signature
	// headers (HeaderPub, HeaderTs, HeaderNonce, HeaderSig), or an empty one.
	ErrMissingSignature = errors.New("missing signature")

	// ErrMalformedHeader reports a signature header that is present but not
	// well formed: repeated, too long, bad encoding, or a public key that is
	// not a user key (such errors also match ErrInvalidUserKey).
	ErrMalformedHeader = errors.New("malformed signature header")

	// ErrClockSkew reports a request whose timestamp is further from the
	// verifier's clock than the allowed skew, in either direction.
	ErrClockSkew = errors.New("request timestamp outside allowed clock skew")

	// ErrBadSignature reports a signature that does not verify against the
	// claimed public key and the canonical form of the request.
	ErrBadSignature = errors.New("bad signature")
)

// Error codes of ErrorBody.Code and of the Nats-Service-Error-Code header.
const (
	// CodeBadRequest (400): malformed request or invalid value.
	CodeBadRequest = 400
	// CodeUnauthenticated (401): missing or invalid signature, unregistered
	// or revoked signer, replayed nonce, clock skew.
	CodeUnauthenticated = 401
	// CodeForbidden (403): not owner or admin, refused by policy, or no
	// sealed key for the caller.
	CodeForbidden = 403
	// CodeNotFound (404): no such user, room, member or key.
	CodeNotFound = 404
	// CodeConflict (409): duplicate, or stale epoch.
	CodeConflict = 409
	// CodeTooLarge (413): request or blob too large.
	CodeTooLarge = 413
	// CodeTooManyRequests (429): rate limited; retry after the delay that
	// HeaderRetryAfter and ErrorBody.RetryAfterMs give. The request was not
	// processed.
	CodeTooManyRequests = 429
	// CodeUnavailable (503): backend unavailable; the service failed closed.
	CodeUnavailable = 503
)

// HeaderRetryAfter is set on a CodeTooManyRequests reply: how long to wait
// before the request can succeed, in whole milliseconds (decimal, at least
// 1), like HTTP's Retry-After. ErrorBody.RetryAfterMs carries the same
// value.
const HeaderRetryAfter = "Unibus-Retry-After-Ms"

// ErrorBody is the JSON body of every control-plane error reply, sent along
// with micro's Nats-Service-Error and Nats-Service-Error-Code headers. Error
// is for humans and never carries internal details.
type ErrorBody struct {
	// Error is a human-readable message.
	Error string `json:"error"`
	// Code is one of the Code… constants.
	Code int `json:"code"`
	// RetryAfterMs, on a CodeTooManyRequests reply, is how long to wait
	// before retrying, in milliseconds (the HeaderRetryAfter header).
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

// Error is a control-plane error: a wire code (one of the Code…
// constants) and a message for humans. The Err… sentinels below are
// Errors: errors.Is matches them by code, whatever the message.
type Error struct {
	Code    int
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with e's code.
func (e *Error) Is(target error) bool { return HasCode(target, e.Code) }

// HasCode reports whether err itself is an *Error with code: the Is of
// the services' and the client's own error types.
func HasCode(err error, code int) bool {
	t, ok := err.(*Error)
	return ok && t.Code == code
}

// Sentinels of the wire codes: ErrBadRequest matches every *Error with
// CodeBadRequest, and so on (see the codes for what they mean).
var (
	ErrBadRequest      = &Error{CodeBadRequest, "bad request"}
	ErrUnauthenticated = &Error{CodeUnauthenticated, "unauthenticated"}
	ErrForbidden       = &Error{CodeForbidden, "forbidden"}
	ErrNotFound        = &Error{CodeNotFound, "not found"}
	ErrConflict        = &Error{CodeConflict, "conflict"}
	ErrTooLarge        = &Error{CodeTooLarge, "too large"}
	ErrTooManyRequests = &Error{CodeTooManyRequests, "too many requests"}
	ErrUnavailable     = &Error{CodeUnavailable, "service unavailable"}
)

// maxQuotedLen bounds how much of a rejected value an error message repeats.
const maxQuotedLen = 64

// invalidError is a rejected value: the kind of value (a sentinel), the
// value itself and the reason. errors.Is matches it against kind and, if
// set, also.
type invalidError struct {
	kind   error
	value  string
	reason string
	hide   bool  // never repeat the value (it may be a secret)
	also   error // an additional sentinel the error matches, or nil
}

func (e *invalidError) Error() string {
	if e.hide {
		return e.kind.Error() + ": " + e.reason
	}
	return e.kind.Error() + " " + quote(e.value) + ": " + e.reason
}

func (e *invalidError) Unwrap() []error {
	if e.also == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.also}
}

// quote quotes s for an error message, truncating long values.
func quote(s string) string {
	if len(s) <= maxQuotedLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuotedLen]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
