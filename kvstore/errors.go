package kvstore

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means there is no such record: user, room, member, sealed
	// key. It is storage-agnostic; callers never see jetstream's errors.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record that must be unique already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means a compare-and-set lost: a stale epoch, a concurrent
	// rekey, or membership that changed under the caller.
	ErrConflict = errors.New("conflict")
	// ErrInvalid wraps every validation failure of an argument (bad key,
	// room ID, mode, empty sealed key). Nothing is stored.
	ErrInvalid = errors.New("invalid argument")
	// ErrStaleBinding means an encryption-key binding whose version is
	// not above the registered one; it matches ErrConflict.
	ErrStaleBinding = fmt.Errorf("stale encryption-key binding: %w", ErrConflict)
	// ErrReplay means a nonce was already claimed within its window.
	ErrReplay = errors.New("nonce already used")
	// ErrInvalidRecord means a stored value is not a valid record for its
	// key (see records.go): it is treated as absent, and every error that
	// matches it matches ErrNotFound too.
	ErrInvalidRecord = fmt.Errorf("invalid record, treated as absent: %w", ErrNotFound)
	// ErrConfigValidation wraps every error of Config validation.
	ErrConfigValidation = errors.New("invalid store configuration")
	// ErrInvalidQuery means a history or events request that asks for
	// nothing sensible (a negative or too large limit, Last together with
	// From, Since or Until, Until below From): nothing is read. It matches
	// ErrInvalid (400 on the control plane).
	ErrInvalidQuery = fmt.Errorf("invalid query: %w", ErrInvalid)
	// ErrNotMember means the user is not a current member of the room
	// (MembershipView.Check): not its owner or a member, or revoked. It
	// does not match ErrNotFound: the room exists.
	ErrNotMember = errors.New("not a member")
	// ErrViewUnavailable means a MembershipView cannot answer: it has not
	// loaded, or its watch of the buckets broke or was stopped. Its
	// callers fail closed (503).
	ErrViewUnavailable = errors.New("membership view unavailable")
)
