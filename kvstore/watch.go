package kvstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AccessChange says that what a user may do on the bus changed: it was
// revoked, or gained or lost admin. Joining or leaving a room changes no
// permission (a member's rights are patterns on its own key; the routing
// service checks membership), so it is no access change.
type AccessChange struct {
	Pub    string
	Reason string
	// At is when the watcher saw the change: connections that start later
	// already see it.
	At time.Time
}

// Reasons of an AccessChange.
const (
	ReasonRevoked = "revoked"
	ReasonAdmin   = "admin changed"
)

// AccessWatcher follows the users bucket and reports every change of a
// user's access. It owns one goroutine, stopped by Stop.
type AccessWatcher struct {
	store   *Store
	changes chan AccessChange
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	users   jetstream.KeyWatcher
}

// WatchAccess starts an AccessWatcher. Changes made before it started are
// not reported.
func (s *Store) WatchAccess(ctx context.Context) (*AccessWatcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	users, err := s.users.WatchAll(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch users: %w", err)
	}
	w := &AccessWatcher{store: s, changes: make(chan AccessChange, 256), cancel: cancel, users: users}
	w.wg.Go(func() { w.run(ctx) })
	return w, nil
}

// Changes delivers access changes; it is closed by Stop.
func (w *AccessWatcher) Changes() <-chan AccessChange { return w.changes }

// Stop stops watching and waits for the goroutine to end.
func (w *AccessWatcher) Stop() {
	w.cancel()
	_ = w.users.Stop()
	w.wg.Wait()
}

type userState struct{ revoked, admin bool }

func (w *AccessWatcher) run(ctx context.Context) {
	defer close(w.changes)
	known := map[string]userState{}
	initial := true
	emit := func(c AccessChange) bool {
		c.At = time.Now()
		select {
		case w.changes <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.users.Updates():
			if !ok {
				return
			}
			if e == nil {
				initial = false
				continue
			}
			pub := e.Key()
			// A deleted user, or a record that is not valid (see
			// decodeRecord), is as good as revoked.
			now := userState{revoked: true}
			if e.Operation() == jetstream.KeyValuePut {
				if u, err := decodeRecord[User](w.store, BucketUsers, pub, e.Value()); err == nil {
					now = userState{revoked: u.Revoked(), admin: u.Admin}
				}
			}
			before, seen := known[pub]
			known[pub] = now
			if initial || !seen {
				continue
			}
			switch {
			case now.revoked && !before.revoked:
				if !emit(AccessChange{Pub: pub, Reason: ReasonRevoked}) {
					return
				}
			case now.admin != before.admin:
				if !emit(AccessChange{Pub: pub, Reason: ReasonAdmin}) {
					return
				}
			}
		}
	}
}
