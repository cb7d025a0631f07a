package router

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/unibus/unibus/subjects"
)

// ErrConfigValidation wraps every error of Config validation.
var ErrConfigValidation = errors.New("invalid router configuration")

// refusal is a send the router refuses: the wire code (one of the
// subjects.Code… constants) and a message for the sender, which never
// carries store or Go error text; cause, when set, is logged only.
type refusal struct {
	code    int
	message string
	cause   error
	// retryAfter, on a 429, is how long the sender should wait.
	retryAfter time.Duration
}

// Error returns the code, the message and the cause (for logs).
func (r *refusal) Error() string {
	s := strconv.Itoa(r.code) + " " + r.message
	if r.cause != nil {
		s += ": " + r.cause.Error()
	}
	return s
}

// Unwrap returns the cause.
func (r *refusal) Unwrap() error { return r.cause }

// Is matches the sentinel of the refusal's code (subjects.ErrForbidden…).
func (r *refusal) Is(target error) bool { return subjects.HasCode(target, r.code) }

// retryAfterMs is retryAfter in whole milliseconds, rounded up; 0 when
// there is no hint.
func (r *refusal) retryAfterMs() int64 {
	if r.retryAfter <= 0 {
		return 0
	}
	return int64((r.retryAfter + time.Millisecond - 1) / time.Millisecond)
}

// body is the JSON error body of the reply.
func (r *refusal) body() subjects.ErrorBody {
	return subjects.ErrorBody{Error: r.message, Code: r.code, RetryAfterMs: r.retryAfterMs()}
}

func refuse(code int, cause error, format string, args ...any) *refusal {
	return &refusal{code: code, message: fmt.Sprintf(format, args...), cause: cause}
}

// msgUnavailable is the message of every backend failure.
const msgUnavailable = "the router is temporarily unavailable; retry the send (the same frame is stored once)"
