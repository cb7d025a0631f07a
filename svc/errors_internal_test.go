package svc

import (
	"errors"
	"testing"

	"github.com/unibus/unibus/subjects"
)

// TestErrorIs: an *Error matches the sentinel of its code, whatever its
// message and cause, and no other.
func TestErrorIs(t *testing.T) {
	err := error(forbidden("only the room owner may %s", "invite"))
	if !errors.Is(err, subjects.ErrForbidden) || errors.Is(err, subjects.ErrNotFound) {
		t.Errorf("%v: matches ErrForbidden %v, ErrNotFound %v", err, errors.Is(err, subjects.ErrForbidden), errors.Is(err, subjects.ErrNotFound))
	}
	cause := errors.New("store down")
	err = storeError(cause, storeMessages{})
	if !errors.Is(err, subjects.ErrUnavailable) || !errors.Is(err, cause) {
		t.Errorf("%v: matches ErrUnavailable %v, its cause %v", err, errors.Is(err, subjects.ErrUnavailable), errors.Is(err, cause))
	}
}
