package client_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// bus is a TLS node with the callout on and signed requests enforced
// (nodetest.Bus), with the client tests' ways to connect to it.
type bus struct {
	*nodetest.Bus
	keys string // the identities' encryption key files, one per identity
}

func newBus(t *testing.T) *bus {
	t.Helper()
	return &bus{Bus: nodetest.NewBus(t), keys: t.TempDir()}
}

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

// publishUntilReceived publishes data until in receives it (a new member's
// permissions arrive with a reconnect, shortly after the invite).
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
	room, err := alice.CreateRoom(ctx, "secret", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}

	// A registered non-member may not subscribe the room subject.
	violations := make(chan error, 8)
	mc := mallory.NATS()
	mc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
	if _, err := mc.SubscribeSync(room.Subject); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("non-member subscription error = %v, want a permissions violation", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("non-member subscribed the room subject without a permissions violation")
	}

	// A raw subscriber on the subject (what the server relays) sees frames
	// whose payload is ciphertext.
	raw, err := alice.NATS().SubscribeSync(room.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	in := subscribe(t, bob, room.RoomID)
	secret := "the launch code is 0000"
	publishUntilReceived(t, alice, room.RoomID, in, secret)
	msg, err := raw.NextMsg(2 * time.Second)
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

func TestThreadsReactionsAndReplays(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room, err := alice.CreateRoom(ctx, "chat", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	aliceIn := subscribe(t, alice, room.RoomID)
	bobIn := subscribe(t, bob, room.RoomID)
	parent := publishUntilReceived(t, alice, room.RoomID, bobIn, "question?")
	// Drain alice's own copies.
	for len(aliceIn.msgs) > 0 {
		<-aliceIn.msgs
	}

	replyID, err := bob.PublishReply(ctx, room.RoomID, parent.ID, []byte("answer"))
	if err != nil {
		t.Fatal(err)
	}
	reactID, err := bob.React(ctx, room.RoomID, parent.ID, "👍")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]func(client.Message) bool{
		replyID: func(m client.Message) bool {
			return m.Type == e2e.TypeMsg && m.Thread == parent.ID && m.ReplyTo == parent.ID && string(m.Data) == "answer"
		},
		reactID: func(m client.Message) bool {
			return m.Type == e2e.TypeReact && m.ReplyTo == parent.ID && m.Thread == "" && string(m.Data) == "👍"
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

	// A captured frame replayed on the subject is dropped, not delivered.
	raw, err := alice.NATS().SubscribeSync(room.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Publish(ctx, room.RoomID, []byte("once")); err != nil {
		t.Fatal(err)
	}
	captured, err := raw.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, bobIn, "once")
	for len(bobIn.rejects) > 0 {
		<-bobIn.rejects
	}
	if err := alice.NATS().Publish(room.Subject, captured.Data); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bobIn.rejects:
		if !errors.Is(err, e2e.ErrReplay) {
			t.Fatalf("replay rejected with %v, want ErrReplay", err)
		}
	case m := <-bobIn.msgs:
		t.Fatalf("replayed frame delivered: %+v", m)
	case <-time.After(3 * time.Second):
		t.Fatal("replayed frame neither delivered nor rejected")
	}

	// Garbage and a forged frame are rejected too.
	if err := alice.NATS().Publish(room.Subject, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bobIn.rejects:
		if !errors.Is(err, e2e.ErrMalformedFrame) {
			t.Fatalf("garbage rejected with %v, want ErrMalformedFrame", err)
		}
	case m := <-bobIn.msgs:
		t.Fatalf("garbage delivered: %+v", m)
	case <-time.After(3 * time.Second):
		t.Fatal("garbage neither delivered nor rejected")
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

	raw, err := alice.NATS().SubscribeSync(room.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
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
	room, err := first.CreateRoom(ctx, "race", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
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

// TestPublishRightAfterCreate: CreateRoom returns once the connection has
// the room's permissions, so the first publish is delivered.
func TestPublishRightAfterCreate(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice := b.peer(t, "alice")
	room, err := alice.CreateRoom(ctx, "solo", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	in := subscribe(t, alice, room.RoomID)
	if _, err := alice.Publish(ctx, room.RoomID, []byte("first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, in, "first")
	if err := alice.NATS().LastError(); err != nil {
		t.Fatalf("connection error after the first publish: %v", err)
	}
}

// TestSubscribeRightAfterInvite: a member who subscribes the moment the
// invite is answered, before the bus has refreshed its permissions, gets
// a subscription that is live when Subscribe returns, so the very next
// message arrives (one publish, no retry). A non-member's subscription is
// refused with ErrForbidden.
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
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: the first message after Subscribe returned was lost", round)
		}
	}
	carol := b.peer(t, "carol")
	room, err := alice.CreateRoom(ctx, "closed", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member subscribe: %v, want ErrForbidden", err)
	}
}
