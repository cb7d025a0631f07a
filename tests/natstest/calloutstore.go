package natstest

import (
	"context"
	"time"

	"github.com/unibus/unibus/kvstore"
)

// CalloutBackend is what the auth callout reads from its store: the
// method set of authcallout.Store, declared here so that the fakes below
// serve the callout's own tests (package authcallout) without an import
// cycle.
type CalloutBackend interface {
	GetUserFromLeader(ctx context.Context, pub string) (kvstore.User, error)
}

// MemoryCalloutStore is an in-memory callout store: Users by public key
// (any other key is kvstore.ErrNotFound).
type MemoryCalloutStore struct {
	Users map[string]kvstore.User
}

var _ CalloutBackend = MemoryCalloutStore{}

// GetUserFromLeader returns the user pub, or kvstore.ErrNotFound.
func (m MemoryCalloutStore) GetUserFromLeader(_ context.Context, pub string) (kvstore.User, error) {
	u, ok := m.Users[pub]
	if !ok {
		return kvstore.User{}, kvstore.ErrNotFound
	}
	return u, nil
}

// SlowCalloutStore delays every user read of the store it wraps by Delay,
// or until the read's context ends (a store too slow for the callout's
// deadline).
type SlowCalloutStore struct {
	CalloutBackend
	Delay time.Duration
}

// GetUserFromLeader waits Delay, then reads through the wrapped store.
func (s SlowCalloutStore) GetUserFromLeader(ctx context.Context, pub string) (kvstore.User, error) {
	select {
	case <-time.After(s.Delay):
	case <-ctx.Done():
		return kvstore.User{}, ctx.Err()
	}
	return s.CalloutBackend.GetUserFromLeader(ctx, pub)
}
