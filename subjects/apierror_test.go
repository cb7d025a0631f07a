package subjects_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/unibus/unibus/subjects"
)

// TestErrorIs: an *Error matches the sentinel of its code, wrapped or not,
// and no other.
func TestErrorIs(t *testing.T) {
	sentinels := map[int]error{
		subjects.CodeBadRequest: subjects.ErrBadRequest, subjects.CodeUnauthenticated: subjects.ErrUnauthenticated,
		subjects.CodeForbidden: subjects.ErrForbidden, subjects.CodeNotFound: subjects.ErrNotFound,
		subjects.CodeConflict: subjects.ErrConflict, subjects.CodeTooLarge: subjects.ErrTooLarge,
		subjects.CodeTooManyRequests: subjects.ErrTooManyRequests, subjects.CodeUnavailable: subjects.ErrUnavailable,
	}
	for code := range sentinels {
		err := fmt.Errorf("call: %w", &subjects.Error{Code: code, Message: "m"})
		for other, s := range sentinels {
			if got := errors.Is(err, s); got != (other == code) {
				t.Errorf("errors.Is(%d, sentinel of %d) = %v", code, other, got)
			}
		}
	}
	if errors.Is(&subjects.Error{Code: 418}, subjects.ErrBadRequest) || errors.Is(errors.New("forbidden"), subjects.ErrForbidden) {
		t.Error("an unknown code or a plain error matches a sentinel")
	}
}
