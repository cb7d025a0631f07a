package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// bus is a TLS node with the callout on and signed requests enforced
// (nodetest.Bus), with the client tests' ways to connect to it.
type bus struct {
	*nodetest.Bus
	keys string // the identities' encryption key files, one per identity
}

func newBus(t *testing.T, opts ...nodetest.Option) *bus {
	t.Helper()
	return &bus{Bus: nodetest.NewBus(t, opts...), keys: t.TempDir()}
}

// unlimitedSends lifts the router's per-member send rate, for tests that
// send in bulk.
func unlimitedSends(c *node.Config) { c.Router.SendRate = -1 }

// peer registers an identity, connects it over TLS pinned to the bus's CA
// and registers its encryption key.
func (b *bus) peer(t *testing.T, name string) *client.Conn {
	t.Helper()
	id := nodetest.AddUser(t, b.Node, name, false)
	return b.connect(t, id)
}

func (b *bus) connect(t *testing.T, id *identity.Identity) *client.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := client.Connect(ctx, b.Node.ClientURL(), id, client.WithCA(b.CA), client.WithName(id.PublicKey()[:8]))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Every connection of an identity (its devices) shares its key file.
	keyPath := filepath.Join(b.keys, id.PublicKey()+".enc")
	if err := c.SetEncryptionKey(ctx, keyPath); err != nil {
		t.Fatalf("set encryption key: %v", err)
	}
	return c
}

// roomWith creates a room of owner's named name in mode, and makes
// members members of it: each invited by owner and accepting.
func roomWith(ctx context.Context, t *testing.T, owner *client.Conn, name, mode string, members ...*client.Conn) subjects.RoomInfo {
	t.Helper()
	room, err := owner.CreateRoom(ctx, name, mode)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if _, err := owner.Invite(ctx, room.RoomID, m.Identity().PublicKey()); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Accept(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	return room
}

// inbox collects delivered messages and rejections of one subscription.
type inbox struct {
	msgs    chan client.Message
	rejects chan error
}

func subscribe(t *testing.T, c *client.Conn, roomID string) *inbox {
	t.Helper()
	in := &inbox{msgs: make(chan client.Message, 64), rejects: make(chan error, 64)}
	sub, err := c.Subscribe(context.Background(), roomID,
		func(m client.Message) { in.msgs <- m },
		func(err error) { in.rejects <- err })
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return in
}

// publishUntilReceived publishes data until in receives it (a frame a
// subscription refused, e.g. of an epoch it is still fetching the key of,
// is not retried).
func publishUntilReceived(t *testing.T, c *client.Conn, roomID string, in *inbox, data string) client.Message {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.Publish(ctx, roomID, []byte(data)); err != nil {
			t.Fatalf("publish: %v", err)
		}
		select {
		case m := <-in.msgs:
			if string(m.Data) == data {
				return m
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%q not received within 10s", data)
	return client.Message{}
}

func TestSecureBusEndToEnd(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")

	room, err := alice.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}

	// Bob discovers the room without knowing its ID.
	refs, err := bob.ListMyRooms(ctx)
	if err != nil || len(refs) != 1 || refs[0].RoomID != room.RoomID || refs[0].Role != subjects.RoleMember {
		t.Fatalf("bob's rooms = %+v, %v", refs, err)
	}
	mine, err := alice.ListMyRooms(ctx)
	if err != nil || len(mine) != 1 || mine[0].Role != subjects.RoleOwner {
		t.Fatalf("alice's rooms = %+v, %v", mine, err)
	}

	in := subscribe(t, bob, refs[0].RoomID)
	got := publishUntilReceived(t, alice, room.RoomID, in, "hello bob")
	if got.Sender != alice.Identity().PublicKey() || got.Type != e2e.TypeMsg || got.Epoch != room.Epoch {
		t.Fatalf("received %+v", got)
	}
}

func TestEavesdroppersSeeOnlyCiphertext(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	mallory := b.peer(t, "mallory")
	room := roomWith(ctx, t, alice, "secret", subjects.ModeE2E, bob)

	// A registered non-member may subscribe neither the room's subject
	// (only the store writes there) nor a member's deliveries.
	bobDeliveries, err := subjects.Deliver(bob.Identity().PublicKey(), room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan error, 8)
	mc := mallory.NATS()
	mc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
	for _, subject := range []string{room.Subject, bobDeliveries} {
		if _, err := mc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("non-member subscription to %s: error %v, want a permissions violation", subject, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("non-member subscribed %s without a permissions violation", subject)
		}
	}
	// Mallory's own Subscribe is refused by the log.
	if _, err := mallory.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member Subscribe = %v, want ErrForbidden", err)
	}

	// A raw subscriber to a member's deliveries (what the server relays)
	// sees frames whose payload is ciphertext.
	raw := rawDeliveries(t, alice, room.RoomID)
	in := subscribe(t, bob, room.RoomID)
	secret := "the launch code is 0000"
	publishUntilReceived(t, alice, room.RoomID, in, secret)
	msg, err := raw.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg.Data, []byte(secret)) || bytes.Contains(msg.Data, []byte("launch")) {
		t.Fatalf("plaintext visible on the wire: %s", msg.Data)
	}
	f, err := e2e.Decode(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Nonce) == 0 || f.Clear || bytes.Contains(f.CT, []byte(secret)) {
		t.Fatalf("frame is not sealed: %+v", f)
	}
}

// rawDeliveries subscribes c's own deliveries of a room with its raw
// connection: the frames as the server relays them.
func rawDeliveries(t *testing.T, c *client.Conn, roomID string) *nats.Subscription {
	t.Helper()
	subject, err := subjects.Deliver(c.Identity().PublicKey(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.NATS().SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// sendSubject is the subject c sends a room's frames on.
func sendSubject(t *testing.T, c *client.Conn, roomID string) string {
	t.Helper()
	subject, err := subjects.Send(roomID, c.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return subject
}

func TestThreadsReactionsAndReplays(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := roomWith(ctx, t, alice, "chat", subjects.ModeE2E, bob)
	aliceIn := subscribe(t, alice, room.RoomID)
	bobIn := subscribe(t, bob, room.RoomID)
	parent := publishUntilReceived(t, alice, room.RoomID, bobIn, "question?")
	// Drain alice's own copies.
	for len(aliceIn.msgs) > 0 {
		<-aliceIn.msgs
	}

	reply, err := bob.PublishReply(ctx, room.RoomID, parent.ID, []byte("answer"))
	if err != nil {
		t.Fatal(err)
	}
	react, err := bob.React(ctx, room.RoomID, parent.ID, "👍")
	if err != nil {
		t.Fatal(err)
	}
	if reply.Seq == 0 || react.Seq <= reply.Seq || reply.Duplicate || react.Duplicate {
		t.Fatalf("acknowledgements %+v then %+v, want ascending sequences of new frames", reply, react)
	}
	want := map[string]func(client.Message) bool{
		reply.ID: func(m client.Message) bool {
			return m.Type == e2e.TypeMsg && m.Thread == parent.ID && m.ReplyTo == parent.ID && string(m.Data) == "answer" && m.Seq == reply.Seq
		},
		react.ID: func(m client.Message) bool {
			return m.Type == e2e.TypeReact && m.ReplyTo == parent.ID && m.Thread == "" && string(m.Data) == "👍" && m.Seq == react.Seq
		},
	}
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-aliceIn.msgs:
			check, ok := want[m.ID]
			if !ok {
				continue
			}
			if !check(m) || m.Sender != bob.Identity().PublicKey() {
				t.Fatalf("message %s arrived as %+v", m.ID, m)
			}
			delete(want, m.ID)
		case <-deadline:
			t.Fatalf("not received: %v", want)
		}
	}

	// A captured frame sent again is stored once and not delivered again:
	// the routing service answers that it is a duplicate.
	raw := rawDeliveries(t, alice, room.RoomID)
	once, err := alice.Publish(ctx, room.RoomID, []byte("once"))
	if err != nil {
		t.Fatal(err)
	}
	captured, err := raw.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bobIn, "once")
	for len(bobIn.rejects) > 0 {
		<-bobIn.rejects
	}
	ackMsg, err := alice.NATS().Request(sendSubject(t, alice, room.RoomID), captured.Data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ack subjects.SendAck
	if err := json.Unmarshal(ackMsg.Data, &ack); err != nil || ack.ID != once.ID || ack.Seq != once.Seq || !ack.Duplicate {
		t.Fatalf("the frame sent again: %s (%v), want a duplicate of %+v", ackMsg.Data, err, once)
	}

	// A server that delivers it once more (as the router) gets it dropped
	// by the subscription: one frame, one delivery.
	redeliver := func(seq, prev uint64, data []byte) {
		t.Helper()
		subject, err := subjects.Deliver(bob.Identity().PublicKey(), room.RoomID)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(subject)
		m.Header.Set(subjects.HeaderSeq, strconv.FormatUint(seq, 10))
		m.Header.Set(subjects.HeaderPrev, strconv.FormatUint(prev, 10))
		m.Data = data
		if err := b.Node.RouterConn.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	redeliver(once.Seq, once.Seq-1, captured.Data)
	// Under a sequence of its own, too (seq 0: not stored).
	redeliver(0, 0, captured.Data)
	// Garbage is rejected.
	redeliver(0, 0, []byte("garbage"))
	select {
	case err := <-bobIn.rejects:
		if !errors.Is(err, e2e.ErrMalformedFrame) {
			t.Fatalf("garbage rejected with %v, want ErrMalformedFrame", err)
		}
	case m := <-bobIn.msgs:
		t.Fatalf("replayed frame delivered: %+v", m)
	case <-time.After(5 * time.Second):
		t.Fatal("garbage neither delivered nor rejected")
	}
	if len(bobIn.msgs) != 0 {
		t.Fatalf("replayed frame delivered: %+v", <-bobIn.msgs)
	}

	// The routing service refuses garbage from a member.
	resp, err := alice.NATS().Request(sendSubject(t, alice, room.RoomID), []byte("garbage"), 5*time.Second)
	if err != nil || resp.Header.Get("Nats-Service-Error-Code") != "400" {
		t.Fatalf("garbage sent: %v %v, want a 400", resp, err)
	}
}

func waitFor(t *testing.T, in *inbox, data string) client.Message {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-in.msgs:
			if string(m.Data) == data {
				return m
			}
		case <-deadline:
			t.Fatalf("%q not received", data)
		}
	}
}

func TestRemovalRekeysTheRoom(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, carol := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "carol")
	room, err := alice.CreateRoom(ctx, "team", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{bob, carol} {
		if _, err := alice.Invite(ctx, room.RoomID, c.Identity().PublicKey()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Accept(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "before")

	raw := rawDeliveries(t, alice, room.RoomID)
	after, err := alice.Remove(ctx, room.RoomID, carol.Identity().PublicKey())
	if err != nil {
		t.Fatalf("remove: %v", err)
	}
	if after.Epoch <= room.Epoch {
		t.Fatalf("epoch after removal %d, want > %d", after.Epoch, room.Epoch)
	}
	got := publishUntilReceived(t, alice, room.RoomID, bobIn, "after")
	if got.Epoch != after.Epoch {
		t.Fatalf("bob read epoch %d, want %d", got.Epoch, after.Epoch)
	}

	// Carol gets no key for the new epoch and cannot open its frames with
	// the key she had.
	if _, err := carol.ListMyRooms(ctx); err != nil {
		t.Fatal(err)
	}
	var frame e2e.Frame
	for {
		msg, err := raw.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatal("no frame of the new epoch captured")
		}
		if frame, err = e2e.Decode(msg.Data); err == nil && frame.Epoch == after.Epoch {
			break
		}
	}
	oldKeyOfCarol := e2e.NewRoomKey() // she never had the new one; any old key fails
	if _, err := e2e.Open(frame, oldKeyOfCarol); err == nil {
		t.Fatal("a key other than the new epoch's opened the frame")
	}
	refs, err := carol.ListMyRooms(ctx)
	if err != nil || len(refs) != 0 {
		t.Fatalf("carol still lists %+v, %v", refs, err)
	}
	if _, err := carol.RoomKey(ctx, room.RoomID, after.Epoch); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("removed member's key request = %v, want ErrForbidden", err)
	}
	if k, err := bob.RoomKey(ctx, room.RoomID, 0); err != nil || k.Epoch != after.Epoch || len(k.SealedKey) == 0 {
		t.Fatalf("bob's current key = %+v, %v", k, err)
	}
	if _, err := carol.Publish(ctx, room.RoomID, []byte("let me in")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("removed member publish = %v, want ErrForbidden", err)
	}
}

func TestConcurrentRekeysOneWinsRetrySucceeds(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	owner := nodetest.AddUser(t, b.Node, "owner", false)
	first, second := b.connect(t, owner), b.connect(t, owner)
	bob := b.peer(t, "bob")
	room := roomWith(ctx, t, first, "race", subjects.ModeE2E, bob)
	// Both devices know the room before racing.
	if _, err := second.GetRoom(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	// The two rekeys race; on a loaded machine one may finish before the
	// other reads the room, and then both win, one after the other. Race
	// again (a bounded number of times) until the two meet.
	loser := -1
	for attempt := 1; loser < 0; attempt++ {
		if attempt > 20 {
			t.Fatal("20 pairs of concurrent rekeys never conflicted")
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		epochs := make([]uint64, 2)
		for i, c := range []*client.Conn{first, second} {
			wg.Go(func() {
				info, err := c.Rekey(ctx, room.RoomID)
				errs[i], epochs[i] = err, info.Epoch
			})
		}
		wg.Wait()
		wins, conflicts := 0, 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, client.ErrConflict):
				conflicts++
				loser = i
			default:
				t.Fatalf("rekey %d: %v", i, err)
			}
		}
		switch {
		case wins == 1 && conflicts == 1:
		case wins == 2 && epochs[0] != epochs[1]:
			t.Logf("attempt %d: the rekeys ran one after the other (epochs %v)", attempt, epochs)
		default:
			t.Fatalf("%d wins and %d conflicts (epochs %v, %v), want one of each, or two wins of distinct epochs", wins, conflicts, epochs, errs)
		}
	}
	retrier := []*client.Conn{first, second}[loser]
	info, err := retrier.Rekey(ctx, room.RoomID)
	if err != nil {
		t.Fatalf("retry after conflict: %v", err)
	}
	bobIn := subscribe(t, bob, room.RoomID)
	got := publishUntilReceived(t, retrier, room.RoomID, bobIn, "after the race")
	if got.Epoch != info.Epoch {
		t.Fatalf("message of epoch %d, room at %d", got.Epoch, info.Epoch)
	}
}

// TestPublishRightAfterCreate: no permission refresh stands between
// CreateRoom and the first publish, which is delivered.
func TestPublishRightAfterCreate(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice := b.peer(t, "alice")
	room, err := alice.CreateRoom(ctx, "solo", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	in := subscribe(t, alice, room.RoomID)
	sent, err := alice.Publish(ctx, room.RoomID, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, in, "first"); m.ID != sent.ID || m.Seq != sent.Seq || sent.Seq == 0 {
		t.Fatalf("received %+v for %+v", m, sent)
	}
	if err := alice.NATS().LastError(); err != nil {
		t.Fatalf("connection error after the first publish: %v", err)
	}
}

// TestSubscribeRightAfterInvite: membership is the router's, not the
// connection's permissions: a member who subscribes the moment it accepts
// gets the very next message (one publish, no retry), its connection is
// never dropped for it, and a non-member's subscription is refused with
// ErrForbidden.
func TestSubscribeRightAfterInvite(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice := b.peer(t, "alice")
	for round := range 3 {
		bob := b.peer(t, "bob")
		room, err := alice.CreateRoom(ctx, "r", subjects.ModeE2E)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Accept(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
		in := subscribe(t, bob, room.RoomID)
		if _, err := alice.Publish(ctx, room.RoomID, []byte("first")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-in.msgs:
			if string(m.Data) != "first" {
				t.Fatalf("round %d: got %q", round, m.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the first message after Subscribe returned was lost", round)
		}
		if n := bob.NATS().Stats().Reconnects; n != 0 {
			t.Fatalf("round %d: bob reconnected %d times", round, n)
		}
	}
	if n := alice.NATS().Stats().Reconnects; n != 0 {
		t.Fatalf("alice reconnected %d times", n)
	}
	carol := b.peer(t, "carol")
	room, err := alice.CreateRoom(ctx, "closed", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member subscribe: %v, want ErrForbidden", err)
	}
	if _, err := carol.Publish(ctx, room.RoomID, []byte("hi")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member publish: %v, want ErrForbidden", err)
	}
}
