package authcallout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// usersBucket is the users bucket as the bus's tester reaches it, for
// changes no store call makes (taking an admin's flag away).
func (b *kickBus) usersBucket(t testing.TB) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(b.dial(b.tester, "users bucket"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, kvstore.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// setAdmin rewrites user pub's record with its admin flag set to admin,
// every other field as it was.
func setAdmin(t testing.TB, kv jetstream.KeyValue, pub string, admin bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	var record map[string]any
	if err := json.Unmarshal(e.Value(), &record); err != nil {
		t.Fatal(err)
	}
	record["admin"] = admin
	value, err := json.Marshal(record)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, pub, value, e.Revision()); err != nil {
		t.Fatal(err)
	}
}

// TestKicksCoalescePerUser: a burst of admin changes of one user makes far
// fewer kicks than changes, at most one per KickDelay (counted by the
// watcher and by the user's own connection), and the last change is still
// acted on: the user ends with the rights of its last flag.
func TestKicksCoalescePerUser(t *testing.T) {
	const changes = 101 // odd: the last one makes the user an admin
	b := startKickBus(t)
	w := b.watch(t, authcallout.WatcherConfig{})
	u := addUser(t, b.store, "flipper")
	users := b.usersBucket(t)
	var disconnects atomic.Int64
	nc, err := nats.Connect(b.url, append(nodetest.ConnectOptions(u),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.IgnoreAuthErrorAbort(), quietErrors(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { disconnects.Add(1) }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	probes := 0
	// mayDiscover reports whether the user may publish to micro discovery,
	// which admins alone may: a publish to a subject of its own is not
	// refused by the time the server answers a flush (the connection
	// records a refusal before it reads the answer).
	mayDiscover := func() bool {
		probes++
		subject := strings.TrimSuffix(subjects.ServiceAPIAll, ">") + "PING.probe" + strconv.Itoa(probes)
		if nc.Publish(subject, nil) != nil || nc.Flush() != nil {
			return false
		}
		last := nc.LastError()
		return last == nil || !strings.Contains(last.Error(), strconv.Quote(subject))
	}
	if mayDiscover() {
		t.Fatal("a user who is not an admin may use micro discovery")
	}

	start := time.Now()
	for i := range changes {
		setAdmin(t, users, u.PublicKey(), i%2 == 0)
	}
	elapsed := time.Since(start)
	waitFor(t, 10*time.Second, "the user gets its admin rights", mayDiscover)
	waitFor(t, 10*time.Second, "kicks done", func() bool { return w.Stats().Pending == 0 })
	s := w.Stats()
	t.Logf("%d admin changes made in %s, %d seen: %d kicks (%d coalesced), %d disconnections of the user",
		changes, elapsed.Round(time.Millisecond), s.Changes, s.Attempts, s.Coalesced, disconnects.Load())
	if s.Changes < changes/2 {
		t.Fatalf("only %d of %d changes seen: the burst was not one", s.Changes, changes)
	}
	// At most one kick starts per KickDelay (counted from the first change
	// it carries), and the last may follow the burst.
	if limit := int64(elapsed/authcallout.KickDelay) + 2; s.Attempts > limit || s.Attempts > s.Changes/4 {
		t.Fatalf("%d changes seen in %s made %d kicks, want at most %d and far fewer than the changes", s.Changes, elapsed, s.Attempts, limit)
	}
	if s.Attempts < 1 || disconnects.Load() > s.Attempts || s.Revocations != 0 {
		t.Fatalf("%d kicks (%d revocations) and %d disconnections of the user", s.Attempts, s.Revocations, disconnects.Load())
	}
	if s.Coalesced < s.Changes-2*s.Attempts {
		t.Fatalf("%d coalesced of %d changes with %d kicks", s.Coalesced, s.Changes, s.Attempts)
	}
}

// TestMembershipChangesCauseNoKick: rooms created, members added and
// removed, invitations made, accepted and canceled disconnect no one and
// give the watcher no work, while a revocation made after them is acted
// on.
func TestMembershipChangesCauseNoKick(t *testing.T) {
	b := startKickBus(t)
	w := b.watch(t, authcallout.WatcherConfig{})
	owner := addUser(t, b.store, "owner")
	member := addUser(t, b.store, "member")
	sentinel := addUser(t, b.store, "sentinel")
	conns := append(rawConnectMany(t, b.url, member, 3), rawConnectMany(t, b.url, owner, 2)...)
	revoked := rawConnectMany(t, b.url, sentinel, 2)

	ctx := context.Background()
	for range 5 {
		room := newCleartextRoom(t, b.store, owner)
		if _, err := b.store.AddMember(ctx, room, member.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
		if err := b.store.RemoveMember(ctx, room, member.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	for _, accept := range []bool{true, false} {
		room := newCleartextRoom(t, b.store, owner)
		r, err := b.store.GetRoom(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.store.Invite(ctx, room, member.PublicKey(), r.Epoch, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
		if accept {
			_, err = b.store.AcceptInvitation(ctx, room, member.PublicKey())
		} else {
			_, err = b.store.CancelInvitation(ctx, room, member.PublicKey())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := b.store.RevokeUser(ctx, sentinel.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if open := countOpen(revoked, start.Add(10*time.Second)); open != 0 {
		t.Fatalf("%d connections of the revoked sentinel open after 10s", open)
	}
	waitFor(t, 10*time.Second, "the revocation settled", func() bool { return w.Stats().Pending == 0 })
	if s := w.Stats(); s.Changes != 1 || s.Attempts != 1 || s.Revocations != 1 || s.Disconnected != int64(len(revoked)) {
		t.Fatalf("stats %+v, want the revocation alone seen and acted on", s)
	}
	// A kick of a membership change, were there one, could follow the
	// revocation's (the index is watched apart from the users): wait a
	// kick delay more.
	if open := countOpen(conns, time.Now().Add(2*authcallout.KickDelay)); open != len(conns) {
		t.Fatalf("%d of %d connections of members closed by membership changes", len(conns)-open, len(conns))
	}
}

// quietErrors drops a connection's asynchronous errors, for connections
// whose refusals are expected.
func quietErrors() nats.Option {
	return nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
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
