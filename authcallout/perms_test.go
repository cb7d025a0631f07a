package authcallout_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// What each kind of connection may publish and subscribe to, on a real
// server with the deployment's NATS configuration and the callout's
// issued permissions. Every refusal is checked twice: the server says so
// (a permissions violation naming the subject), and a witness with every
// right sees nothing go through.

// probe is a connection whose permission errors are collected.
type probe struct {
	nc   *nats.Conn
	errs chan error
}

// probeOptions collect a connection's asynchronous errors into p.
func (p *probe) options() []nats.Option {
	p.errs = make(chan error, 256)
	return []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case p.errs <- err:
		default:
		}
	})}
}

// deploymentProbe connects as one of the deployment's users (or a tester).
func (b *kickBus) deploymentProbe(t testing.TB, kp nkeys.KeyPair, name string) *probe {
	t.Helper()
	p := &probe{}
	p.nc = b.dial(kp, name, p.options()...)
	return p
}

// peerProbe connects id through the callout.
func (b *kickBus) peerProbe(t testing.TB, id *identity.Identity) *probe {
	t.Helper()
	p := &probe{}
	nc, err := nats.Connect(b.url, append(nodetest.ConnectOptions(id), p.options()...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", id.PublicKey(), err)
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	return p
}

// witness is a connection of the bus's tester, which may use any subject.
func (b *kickBus) witness(t testing.TB) *nats.Conn {
	t.Helper()
	return b.dial(b.tester, "witness")
}

// violation waits for the server's permissions violation of op ("Publish"
// or "Subscription") on subject.
func (p *probe) violation(t testing.TB, op, subject string) {
	t.Helper()
	want := op + " to " + strconv.Quote(subject)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-p.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s within 5s", want)
		}
	}
}

// noViolation checks that the server did not refuse op ("Publish" or
// "Subscription") on subject by the time it answers a flush: the
// connection records a refusal (LastError) before it reads the answer.
func (p *probe) noViolation(t testing.TB, op, subject string) {
	t.Helper()
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if last := p.nc.LastError(); last != nil && strings.Contains(last.Error(), op+" to "+strconv.Quote(subject)) {
		t.Fatalf("refused: %v", last)
	}
}

// subscribe subscribes nc to subject and waits until the server has it.
func subscribe(t testing.TB, nc *nats.Conn, subject string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// received reports whether sub got a message once the server has sent
// what it had for it (a round trip on its connection).
func received(t testing.TB, nc *nats.Conn, sub *nats.Subscription) bool {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_, err := sub.NextMsg(50 * time.Millisecond)
	return err == nil
}

// mayPublish checks that p's publish to subject reaches a witness.
func (p *probe) mayPublish(t testing.TB, witness *nats.Conn, subject string) {
	t.Helper()
	sub := subscribe(t, witness, subject)
	if err := p.nc.Publish(subject, []byte("allowed")); err != nil {
		t.Fatal(err)
	}
	p.noViolation(t, "Publish", subject)
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("publish to %s did not arrive: %v", subject, err)
	}
}

// mayNotPublish checks that p's publish to subject is refused and reaches
// no one.
func (p *probe) mayNotPublish(t testing.TB, witness *nats.Conn, subject string) {
	t.Helper()
	sub := subscribe(t, witness, subject)
	if err := p.nc.Publish(subject, []byte("forged")); err != nil {
		t.Fatal(err)
	}
	p.violation(t, "Publish", subject)
	if received(t, witness, sub) {
		t.Fatalf("a refused publish to %s arrived", subject)
	}
}

// maySubscribe checks that p receives on pattern what a witness
// publishes to subject.
func (p *probe) maySubscribe(t testing.TB, witness *nats.Conn, pattern, subject string) {
	t.Helper()
	sub := subscribe(t, p.nc, pattern)
	p.noViolation(t, "Subscription", pattern)
	if err := witness.Publish(subject, []byte("for you")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("subscription to %s got nothing on %s: %v", pattern, subject, err)
	}
}

// mayNotSubscribe checks that p's subscription to pattern is refused and
// gets nothing of what a witness publishes to subject.
func (p *probe) mayNotSubscribe(t testing.TB, witness *nats.Conn, pattern, subject string) {
	t.Helper()
	sub, err := p.nc.SubscribeSync(pattern)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	p.violation(t, "Subscription", pattern)
	if err := witness.Publish(subject, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := witness.Flush(); err != nil {
		t.Fatal(err)
	}
	if received(t, p.nc, sub) {
		t.Fatalf("a refused subscription to %s got a message on %s", pattern, subject)
	}
}

// tokenUnder returns the subject token under the wildcard prefix all ("$KV.>"
// and token "x": "$KV.x").
func tokenUnder(all, token string) string { return strings.TrimSuffix(all, ">") + token }

// swap returns subject with its token old replaced by with: a hostile
// variant of a subject the package subjects built.
func swap(subject, old, with string) string {
	tokens := strings.Split(subject, ".")
	for i, tok := range tokens {
		if tok == old {
			tokens[i] = with
		}
	}
	return strings.Join(tokens, ".")
}

// userSubjects are a user's subjects for a room, as package subjects
// builds them.
type userSubjects struct {
	send, sendOf, deliver, deliverOf, events, inboxAll, inbox, roomLog string
}

// subjectsOf returns pub's subjects for room.
func subjectsOf(t testing.TB, pub, room string) userSubjects {
	t.Helper()
	var u userSubjects
	var errs []error
	build := func(out *string, s string, err error) {
		*out = s
		errs = append(errs, err)
	}
	s, err := subjects.Send(room, pub)
	build(&u.send, s, err)
	s, err = subjects.SendOf(pub)
	build(&u.sendOf, s, err)
	s, err = subjects.Deliver(pub, room)
	build(&u.deliver, s, err)
	s, err = subjects.DeliverOf(pub)
	build(&u.deliverOf, s, err)
	s, err = subjects.Events(pub)
	build(&u.events, s, err)
	s, err = subjects.InboxAll(pub)
	build(&u.inboxAll, s, err)
	s, err = subjects.InboxPrefix(pub)
	build(&u.inbox, s+".reply", err)
	s, err = subjects.Room(room)
	build(&u.roomLog, s, err)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestDeploymentUserPermissions: the router user receives sends and
// publishes deliveries and inbox replies, and nothing else: not into
// state, the room log, events or sends, and it hears no control-plane
// request nor anyone's deliveries. The store user alone writes the room
// log and the events; the services' responder writes neither, nor
// deliveries.
func TestDeploymentUserPermissions(t *testing.T) {
	b := startKickBus(t)
	w := b.witness(t)
	pub := nodetest.NewIdentity(t).PublicKey()
	room, _ := subjects.NewRoomID(pub, subjects.ModeE2E)
	u := subjectsOf(t, pub, room)
	usersKey := tokenUnder(subjects.KVAll, kvstore.BucketUsers+".x")
	jsInfo := tokenUnder(subjects.JetStreamAll, "API.INFO")

	t.Run("router", func(t *testing.T) {
		r := b.deploymentProbe(t, b.keys.RouterUser, "router")
		// Its work: every send, in the queue group; deliveries and replies.
		sends, err := r.nc.QueueSubscribeSync(subjects.SendAll, subjects.RouterQueue)
		if err != nil {
			t.Fatal(err)
		}
		r.noViolation(t, "Subscription", subjects.SendAll)
		if err := w.Publish(u.send, []byte("frame")); err != nil {
			t.Fatal(err)
		}
		if m, err := sends.NextMsg(5 * time.Second); err != nil || m.Subject != u.send {
			t.Fatalf("the router did not receive the send: %v", err)
		}
		r.mayPublish(t, w, u.deliver)
		r.mayPublish(t, w, u.inbox)
		r.maySubscribe(t, w, subjects.ServiceAPIAll, tokenUnder(subjects.ServiceAPIAll, "PING"))
		// Nothing else.
		for _, subject := range []string{usersKey, jsInfo, tokenUnder(subjects.ObjectStoreAll, "blobs.x"), u.roomLog, u.events, u.send, subjects.UsersList} {
			r.mayNotPublish(t, w, subject)
		}
		for _, tc := range []struct{ pattern, subject string }{
			{subjects.UsersAll, subjects.UsersList},
			{subjects.RoomsAll, subjects.RoomsMine},
			{subjects.BlobsAll, subjects.BlobsGet},
			{subjects.DeliverAll, u.deliver},
			{subjects.EventsAll, u.events},
			{subjects.RoomLogAll, u.roomLog},
			{subjects.KVAll, usersKey},
			{">", subjects.UsersList},
		} {
			r.mayNotSubscribe(t, w, tc.pattern, tc.subject)
		}
	})

	t.Run("store", func(t *testing.T) {
		s := b.deploymentProbe(t, b.keys.StoreUser, "store")
		s.mayPublish(t, w, u.roomLog)
		s.mayPublish(t, w, u.events)
		for _, subject := range []string{u.deliver, u.send, u.inbox} {
			s.mayNotPublish(t, w, subject)
		}
		s.mayNotSubscribe(t, w, subjects.SendAll, u.send)
		s.mayNotSubscribe(t, w, subjects.RoomsAll, subjects.RoomsMine)
	})

	t.Run("services", func(t *testing.T) {
		s := b.deploymentProbe(t, b.keys.ServiceUser, "services")
		s.mayPublish(t, w, u.inbox)
		for _, subject := range []string{u.roomLog, u.events, u.deliver, u.send, usersKey, jsInfo} {
			s.mayNotPublish(t, w, subject)
		}
		s.mayNotSubscribe(t, w, subjects.SendAll, u.send)
		s.mayNotSubscribe(t, w, subjects.DeliverAll, u.deliver)
	})
}

// TestPeerPermissions is the hostile peer against the permissions the
// callout issues: it may send only as itself and read only its own
// deliveries, events and inbox. It cannot write a room's log, forge a
// delivery or an event for anyone (itself included), send as another
// user, or listen to anyone else's deliveries, events or sends, by any
// pattern.
func TestPeerPermissions(t *testing.T) {
	b := startKickBus(t)
	w := b.witness(t)
	mallory, alice := addUser(t, b.store, "mallory"), addUser(t, b.store, "alice")
	m := b.peerProbe(t, mallory)
	room, _ := subjects.NewRoomID(alice.PublicKey(), subjects.ModeE2E)
	me, other := subjectsOf(t, mallory.PublicKey(), room), subjectsOf(t, alice.PublicKey(), room)

	t.Run("allowed", func(t *testing.T) {
		m.mayPublish(t, w, me.send)
		m.maySubscribe(t, w, me.deliverOf, me.deliver)
		m.maySubscribe(t, w, me.deliver, me.deliver)
		m.maySubscribe(t, w, me.events, me.events)
		m.maySubscribe(t, w, me.inboxAll, me.inbox)
	})

	t.Run("publish", func(t *testing.T) {
		for _, subject := range []string{
			me.roomLog,
			other.deliver,
			me.deliver,
			other.events,
			me.events,
			other.send,
			// A send subject with a token more, or the room left out.
			me.send + ".x",
			strings.Replace(me.send, room+".", "", 1),
			other.inbox,
			tokenUnder(subjects.JetStreamAll, "API.STREAM.LIST"),
			tokenUnder(subjects.KVAll, kvstore.BucketUsers+"."+mallory.PublicKey()),
			tokenUnder(subjects.ServiceAPIAll, "PING"),
		} {
			t.Run(subject, func(t *testing.T) { m.mayNotPublish(t, w, subject) })
		}
	})

	t.Run("subscribe", func(t *testing.T) {
		for _, tc := range []struct{ pattern, subject string }{
			{other.deliver, other.deliver},
			{other.deliverOf, other.deliver},
			{swap(other.deliver, alice.PublicKey(), "*"), other.deliver},
			{subjects.DeliverAll, other.deliver},
			{other.events, other.events},
			{swap(other.events, alice.PublicKey(), "*"), other.events},
			{subjects.EventsAll, other.events},
			{subjects.SendAll, other.send},
			{other.sendOf, other.send},
			{me.sendOf, me.send},
			{swap(other.send, alice.PublicKey(), "*"), other.send},
			{me.roomLog, me.roomLog},
			{subjects.RoomLogAll, me.roomLog},
			{other.inboxAll, other.inbox},
			{strings.Split(subjects.SendAll, ".")[0] + ".>", other.deliver},
			{">", other.deliver},
		} {
			t.Run(tc.pattern, func(t *testing.T) { m.mayNotSubscribe(t, w, tc.pattern, tc.subject) })
		}
	})
}
