package svc

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// ErrConfigValidation wraps every error that Config validation reports.
var ErrConfigValidation = errors.New("invalid control-plane configuration")

// Error is a control-plane error as it goes on the wire: a code (one of the
// subjects.Code… constants) and a message written for humans, which never
// carries store or Go error text. Cause, when set, is the internal reason;
// it is logged, never sent.
type Error struct {
	Code    int
	Message string
	Cause   error
	// RetryAfter, on a 429, is how long the caller should wait before
	// retrying; it goes on the wire as subjects.HeaderRetryAfter and
	// ErrorBody.RetryAfterMs.
	RetryAfter time.Duration
}

// Error returns the message and, when set, the cause (for logs).
func (e *Error) Error() string {
	if e.Cause == nil {
		return strconv.Itoa(e.Code) + " " + e.Message
	}
	return strconv.Itoa(e.Code) + " " + e.Message + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is the sentinel of e's code, so that
// errors.Is(err, subjects.ErrForbidden) holds for every 403.
func (e *Error) Is(target error) bool { return subjects.HasCode(target, e.Code) }

// Body returns the JSON error body sent with the reply.
func (e *Error) Body() subjects.ErrorBody {
	return subjects.ErrorBody{Error: e.Message, Code: e.Code, RetryAfterMs: e.retryAfterMs()}
}

// retryAfterMs is RetryAfter in whole milliseconds, rounded up so that a
// caller who waits that long finds a token; 0 when there is no hint.
func (e *Error) retryAfterMs() int64 {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int64((e.RetryAfter + time.Millisecond - 1) / time.Millisecond)
}

func newError(code int, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Cause: cause}
}

func badRequest(format string, args ...any) *Error {
	return newError(subjects.CodeBadRequest, nil, format, args...)
}

func unauthenticated(cause error, format string, args ...any) *Error {
	return newError(subjects.CodeUnauthenticated, cause, format, args...)
}

func forbidden(format string, args ...any) *Error {
	return newError(subjects.CodeForbidden, nil, format, args...)
}

func notFound(format string, args ...any) *Error {
	return newError(subjects.CodeNotFound, nil, format, args...)
}

func conflict(cause error, format string, args ...any) *Error {
	return newError(subjects.CodeConflict, cause, format, args...)
}

// msgUnavailable is the message of every backend failure.
const msgUnavailable = "the service is temporarily unavailable; retry later"

// storeMessages are the human messages for the outcomes of one store call.
// An empty message falls back to a generic one.
type storeMessages struct {
	notFound string // kvstore.ErrNotFound → 404, or notFoundCode
	// notFoundCode replaces 404 where a missing record means the caller
	// may not do something: 401 (an unregistered signer), 403 (not a
	// member, no sealed key).
	notFoundCode int
	exists       string // kvstore.ErrExists → 409
	conflict     string // kvstore.ErrConflict → 409
	invalid      string // kvstore.ErrInvalid → 400
}

// storeError maps an error of a kvstore call to the wire error: the only
// place that knows the store's sentinels. Anything it does not recognize is
// a backend failure (503, fail closed). The store's text is kept as the
// cause, for logs only.
func storeError(err error, m storeMessages) *Error {
	pick := func(msg, fallback string) string {
		if msg != "" {
			return msg
		}
		return fallback
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kvstore.ErrNotFound):
		code := subjects.CodeNotFound
		if m.notFoundCode != 0 {
			code = m.notFoundCode
		}
		return newError(code, err, "%s", pick(m.notFound, "not found"))
	case errors.Is(err, kvstore.ErrExists):
		return newError(subjects.CodeConflict, err, "%s", pick(m.exists, "already exists"))
	case errors.Is(err, kvstore.ErrConflict):
		return newError(subjects.CodeConflict, err, "%s", pick(m.conflict, "the record changed during the request; fetch it again and retry"))
	case errors.Is(err, kvstore.ErrInvalid):
		return newError(subjects.CodeBadRequest, err, "%s", pick(m.invalid, "invalid request"))
	case errors.Is(err, kvstore.ErrReplay):
		return newError(subjects.CodeUnauthenticated, err, "request nonce already used (replay)")
	default:
		return newError(subjects.CodeUnavailable, err, msgUnavailable)
	}
}

// asError turns any handler error into an *Error: an *Error is kept, a
// store error is mapped, anything else is an internal failure (503).
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return storeError(err, storeMessages{})
}
