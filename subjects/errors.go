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
