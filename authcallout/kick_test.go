package authcallout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestKickerPagesAndCutOff: a user with three pages of connections (page
// of 100), half of them made before the cut-off: one Disconnect closes
// exactly the older half, on every page; one without a cut-off closes the
// rest.
func TestKickerPagesAndCutOff(t *testing.T) {
	b := startKickBus(t)
	u := addUser(t, b.store, "many")
	old := rawConnectMany(t, b.url, u, 150)
	before := time.Now()
	// The cut-off errs on the side of closing by the CONNZ request's
	// transit time (see Kick): the newer connections start well after it.
	time.Sleep(200 * time.Millisecond)
	newer := rawConnectMany(t, b.url, u, 150)
	k := &authcallout.Kicker{Conn: b.sys, PageSize: 100}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := k.Disconnect(ctx, u.PublicKey(), before)
	if err != nil {
		t.Fatalf("disconnect before the cut-off: %v (%+v)", err, rep)
	}
	if rep.Kicked != len(old) || rep.Remaining != 0 || rep.Servers != 1 {
		t.Fatalf("report %+v, want %d kicked on 1 server, none remaining", rep, len(old))
	}
	if open := countOpen(old, time.Now().Add(2*time.Second)); open != 0 {
		t.Fatalf("%d of %d connections older than the cut-off still open", open, len(old))
	}
	if open := countOpen(newer, time.Now().Add(300*time.Millisecond)); open != len(newer) {
		t.Fatalf("%d of %d connections newer than the cut-off closed", len(newer)-open, len(newer))
	}

	rep, err = k.Disconnect(ctx, u.PublicKey(), time.Time{})
	if err != nil || rep.Kicked != len(newer) {
		t.Fatalf("disconnect all: %v (%+v), want %d kicked", err, rep, len(newer))
	}
	if open := countOpen(newer, time.Now().Add(2*time.Second)); open != 0 {
		t.Fatalf("%d connections still open", open)
	}
	// Nothing left: one pass that finds nothing.
	if rep, err := k.Disconnect(ctx, u.PublicKey(), time.Time{}); err != nil || rep.Kicked != 0 || rep.Passes != 1 {
		t.Fatalf("disconnect with nothing open: %v (%+v)", err, rep)
	}
}

// TestRevocationClosesEveryConnection: a revoked user with more
// connections than one CONNZ page is disconnected everywhere by one
// revocation (none survives), and a connection after it is refused.
func TestRevocationClosesEveryConnection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		pageSize    int
		connections int
	}{
		{"page of 100", 100, 300},
		{"default page", 0, authcallout.DefaultKickPageSize + 76},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.connections > 1000 {
				t.Skip("many connections: not in -short")
			}
			b := startKickBus(t)
			w := b.watch(t, authcallout.WatcherConfig{Kicker: &authcallout.Kicker{PageSize: tc.pageSize}})
			u := addUser(t, b.store, "many")
			conns := rawConnectMany(t, b.url, u, tc.connections)

			start := time.Now()
			if _, err := b.store.RevokeUser(context.Background(), u.PublicKey()); err != nil {
				t.Fatal(err)
			}
			if open := countOpen(conns, start.Add(10*time.Second)); open != 0 {
				t.Fatalf("%d of %d connections survived the revocation (%+v)", open, len(conns), w.Stats())
			}
			t.Logf("%d connections closed %s after the revocation", len(conns), time.Since(start).Round(time.Millisecond))
			if _, err := rawConnect(b.url, u); !errors.Is(err, errRefused) {
				t.Fatalf("connect after the revocation: %v, want refused", err)
			}
			waitFor(t, 10*time.Second, "revocation settled", func() bool { return w.Stats().Pending == 0 })
			if s := w.Stats(); s.Disconnected < int64(len(conns)) || s.Revocations < 1 || s.Unkicked != 0 {
				t.Fatalf("stats %+v, want %d disconnected by a revocation", s, len(conns))
			}
		})
	}
}

// TestKicksCoalescePerUser: a burst of membership changes of one user
// makes far fewer kicks than changes, at most one per KickDelay (counted
// by the watcher and by the user's own connection), and the last change
// is still acted on.
//
// Not every change reaches the watcher: the index keeps one message per
// key, and a change superseded before the watch delivers it is skipped by
// JetStream (the next one, which carries the current state, is not). So
// the changes seen are counted, not assumed.
func TestKicksCoalescePerUser(t *testing.T) {
	const changes = 200
	b := startKickBus(t)
	w := b.watch(t, authcallout.WatcherConfig{})
	owner := addUser(t, b.store, "owner")
	member := addUser(t, b.store, "member")
	rooms := []string{newCleartextRoom(t, b.store, owner), newCleartextRoom(t, b.store, owner)}
	var disconnects atomic.Int64
	nc, err := nats.Connect(b.url, append(nodetest.ConnectOptions(member),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.IgnoreAuthErrorAbort(), quietPermissionErrors(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnects.Add(1) }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 10*time.Second, "setup settled", func() bool { s := w.Stats(); return s.Changes == 2 && s.Pending == 0 })
	base := w.Stats()

	ctx := context.Background()
	start := time.Now()
	errs := make(chan error, len(rooms))
	for _, room := range rooms {
		go func() {
			for range changes / len(rooms) / 2 {
				if _, err := b.store.AddMember(ctx, room, member.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
					errs <- err
					return
				}
				if err := b.store.RemoveMember(ctx, room, member.PublicKey()); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range rooms {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The last change: a membership that stays. The member's connection
	// gets the room (kicked after the change, or reconnected after it).
	if _, err := b.store.AddMember(ctx, rooms[0], member.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	room, err := subjects.Room(rooms[0])
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the member uses the room it was added to last", func() bool { return usesRoom(nc, room) })
	waitFor(t, 10*time.Second, "kicks done", func() bool { return w.Stats().Pending == 0 })
	s := w.Stats()
	seen, attempts, coalesced := s.Changes-base.Changes, s.Attempts-base.Attempts, s.Coalesced-base.Coalesced
	t.Logf("%d membership changes made in %s, %d seen: %d kicks (%d coalesced), %d disconnections of the member",
		changes+1, elapsed.Round(time.Millisecond), seen, attempts, coalesced, disconnects.Load())
	if seen < changes/2 {
		t.Fatalf("only %d of %d changes seen: the burst was not one", seen, changes+1)
	}
	// At most one kick starts per KickDelay (counted from the first change
	// it carries), and the last may follow the burst.
	if limit := int64(elapsed/authcallout.KickDelay) + 2; attempts > limit || attempts > seen/4 {
		t.Fatalf("%d changes seen in %s made %d kicks, want at most %d and far fewer than the changes", seen, elapsed, attempts, limit)
	}
	if attempts < 1 || disconnects.Load() > attempts {
		t.Fatalf("%d kicks and %d disconnections of the member", attempts, disconnects.Load())
	}
	if coalesced < seen-2*attempts {
		t.Fatalf("%d coalesced of %d changes with %d kicks", coalesced, seen, attempts)
	}
}

// quietPermissionErrors drops a connection's asynchronous errors, for
// connections whose refused subscriptions are expected (usesRoom).
func quietPermissionErrors() nats.Option {
	return nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
}

// usesRoom reports whether nc may subscribe and publish to room: its own
// message comes back.
func usesRoom(nc *nats.Conn, room string) bool {
	sub, err := nc.SubscribeSync(room)
	if err != nil {
		return false
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Publish(room, []byte("ping")); err != nil {
		return false
	}
	_, err = sub.NextMsg(200 * time.Millisecond)
	return err == nil
}

// TestRevocationJumpsTheQueue: with a backlog of slow membership kicks
// (one worker for them, passes of a quarter second), a revocation is
// acted on at once, not after the backlog.
func TestRevocationJumpsTheQueue(t *testing.T) {
	const members = 30
	b := startKickBus(t)
	w := b.watch(t, authcallout.WatcherConfig{Workers: 2, Kicker: &authcallout.Kicker{Quiet: 250 * time.Millisecond}})
	owner := addUser(t, b.store, "owner")
	room := newCleartextRoom(t, b.store, owner)
	target := addUser(t, b.store, "target")
	conns := rawConnectMany(t, b.url, target, 3)
	waitFor(t, 10*time.Second, "setup settled", func() bool { s := w.Stats(); return s.Changes == 1 && s.Pending == 0 })

	ctx := context.Background()
	for range members {
		m := addUser(t, b.store, "member")
		if _, err := b.store.AddMember(ctx, room, m.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "membership changes seen", func() bool { return w.Stats().Changes == 1+members })

	start := time.Now()
	if _, err := b.store.RevokeUser(ctx, target.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if open := countOpen(conns, start.Add(10*time.Second)); open != 0 {
		t.Fatalf("%d connections of the revoked user open after 10s", open)
	}
	took := time.Since(start)
	backlog := w.Stats().Pending
	t.Logf("revoked user disconnected in %s with %d membership kicks pending", took.Round(time.Millisecond), backlog)
	if took > time.Second {
		t.Fatalf("revoked user disconnected in %s behind the membership kicks, want within 1s", took)
	}
	if backlog < members/2 {
		t.Fatalf("only %d kicks pending: the backlog was too short to show anything", backlog)
	}
}

// TestRevocationRetriesUntilStopped: a revocation that cannot be carried
// out (the kicker's connection is not in the system account, so no server
// answers its listings) is retried, and Stop ends it promptly.
func TestRevocationRetriesUntilStopped(t *testing.T) {
	b := startKickBus(t)
	// A connection of account UNIBUS, whose publishes to $SYS are refused
	// (quietly: the refusals are the point).
	unibus := b.dial(b.keys.ServiceUser, "not system", nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	w, err := authcallout.StartWatcherWithConfig(context.Background(), authcallout.WatcherConfig{
		Store:          b.store,
		Kicker:         &authcallout.Kicker{Conn: unibus, Quiet: 10 * time.Millisecond},
		AttemptTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	u := addUser(t, b.store, "revoked")
	if _, err := b.store.RevokeUser(context.Background(), u.PublicKey()); err != nil {
		w.Stop()
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "revocation retried twice", func() bool { return w.Stats().Retried >= 2 })
	start := time.Now()
	w.Stop()
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Stop took %s while a revocation was being retried", took)
	}
	if s := w.Stats(); s.Revocations < 2 || s.Disconnected != 0 {
		t.Fatalf("stats %+v, want two attempts or more, nothing disconnected", s)
	}
}

func TestWatcherConfigValidation(t *testing.T) {
	b := startKickBus(t)
	for name, cfg := range map[string]authcallout.WatcherConfig{
		"no store":          {Kicker: &authcallout.Kicker{Conn: b.sys}},
		"no kicker":         {Store: b.store},
		"no connection":     {Store: b.store, Kicker: &authcallout.Kicker{}},
		"negative workers":  {Store: b.store, Kicker: &authcallout.Kicker{Conn: b.sys}, Workers: -1},
		"negative page":     {Store: b.store, Kicker: &authcallout.Kicker{Conn: b.sys, PageSize: -1}},
		"negative attempts": {Store: b.store, Kicker: &authcallout.Kicker{Conn: b.sys}, AttemptTimeout: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			w, err := authcallout.StartWatcherWithConfig(context.Background(), cfg)
			if err == nil {
				w.Stop()
			}
			if !errors.Is(err, authcallout.ErrConfigValidation) {
				t.Fatalf("start = %v, want ErrConfigValidation", err)
			}
		})
	}
}
