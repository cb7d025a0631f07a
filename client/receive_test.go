package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// roomsRequests returns how many requests to subject (a rooms endpoint)
// the node's rooms service has received.
func roomsRequests(t *testing.T, b *bus, subject string) int {
	t.Helper()
	for _, ep := range b.Node.Services().Rooms().Stats().Endpoints {
		if ep.Subject == subject {
			return ep.NumRequests
		}
	}
	t.Fatalf("no endpoint %s", subject)
	return 0
}

// TestFutureEpochFloodRefreshesOncePerSecond: a member floods a room with
// frames of a huge epoch, and the server delivers as many with a garbage
// signature (the router refuses those from members). A
// subscriber checks each signature first (the forgeries cost no request)
// and refreshes the room at most once a second however many validly signed
// ones arrive; the flood delays none of its rejections beyond that, and a
// real rekey afterwards still reaches it.
func TestFutureEpochFloodRefreshesOncePerSecond(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, unlimitedSends)
	alice, bob, mallory := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "mallory")
	room, err := alice.CreateRoom(ctx, "team", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{bob, mallory} {
		if _, err := alice.Invite(ctx, room.RoomID, c.Identity().PublicKey()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Accept(ctx, room.RoomID); err != nil {
			t.Fatal(err)
		}
	}
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, mallory, room.RoomID, bobIn, "mallory is in")

	const perKind = 300
	s := sealerOf(t, mallory.Identity(), room.RoomID, 1<<40, e2e.NewRoomKey(), make([]byte, e2e.GrantSize))
	deliveries, err := subjects.Deliver(bob.Identity().PublicKey(), room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	forgedDelivery := func(wire []byte) {
		t.Helper()
		m := nats.NewMsg(deliveries)
		m.Header.Set(subjects.HeaderSeq, "0")
		m.Header.Set(subjects.HeaderPrev, "0")
		m.Data = wire
		if err := b.Node.RouterConn.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	send := func(wire []byte) {
		t.Helper()
		// Acknowledged, so that none is lost to the router's queues.
		for {
			resp, err := mallory.NATS().Request(sendSubject(t, mallory, room.RoomID), wire, hostileWait)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Header.Get("Nats-Service-Error-Code") != "503" {
				return
			}
		}
	}
	gets := roomsRequests(t, b, subjects.RoomsGet)
	start := time.Now()
	for range perKind {
		f, wire, err := s.Seal(e2e.Message{Payload: []byte("x")}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		send(wire)
		f.Sig[0] ^= 1
		forged, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		forgedDelivery(forged)
	}
	if err := b.Node.RouterConn.Flush(); err != nil {
		t.Fatal(err)
	}
	future, forged := 0, 0
	deadline := time.After(30 * time.Second)
	for future+forged < 2*perKind {
		select {
		case err := <-bobIn.rejects:
			switch {
			case errors.Is(err, e2e.ErrBadSignature):
				forged++
			case errors.Is(err, e2e.ErrFutureEpoch):
				future++
			default:
				t.Fatalf("rejected with %v", err)
			}
		case m := <-bobIn.msgs:
			t.Fatalf("delivered %q", m.Data)
		case <-deadline:
			t.Fatalf("%d future and %d forged frames rejected within 30s, want %d of each", future, forged, perKind)
		}
	}
	elapsed := time.Since(start)
	if future != perKind || forged != perKind {
		t.Fatalf("%d future and %d forged frames rejected, want %d of each", future, forged, perKind)
	}
	// One refresh may start at once, then at most one per second.
	refreshes := roomsRequests(t, b, subjects.RoomsGet) - gets
	if limit := int(elapsed/time.Second) + 2; refreshes > limit {
		t.Fatalf("%d rooms.get requests for %d frames in %s, want at most %d", refreshes, 2*perKind, elapsed, limit)
	}
	t.Logf("%d frames rejected in %s with %d room refreshes", 2*perKind, elapsed, refreshes)

	// A real rekey still reaches bob.
	after, err := alice.Rekey(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	if m := publishUntilReceived(t, alice, room.RoomID, bobIn, "after the flood"); m.Epoch != after.Epoch {
		t.Fatalf("bob read epoch %d, want %d", m.Epoch, after.Epoch)
	}
}

// TestCleartextMembershipCheck: in a cleartext room a receiver asks the
// service about a new sender alone, once, however many frames it sends;
// a reconnect drops the answer, and the next frame asks again (the
// internal tests of the key ring cover expiry and non-members).
func TestCleartextMembershipCheck(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, carol := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "carol")
	room, err := alice.CreateRoom(ctx, "public", subjects.ModeCleartext)
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
	asked := roomsRequests(t, b, subjects.RoomsMembers)
	publishUntilReceived(t, carol, room.RoomID, bobIn, "first")
	for range 20 {
		if _, err := carol.Publish(ctx, room.RoomID, []byte("more")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, bobIn, "more")
	}
	if n := roomsRequests(t, b, subjects.RoomsMembers) - asked; n != 1 {
		t.Fatalf("%d membership requests for one new sender, want 1", n)
	}

	reconnects := bob.NATS().Stats().Reconnects
	if err := bob.NATS().ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(hostileWait)
	for bob.NATS().Stats().Reconnects == reconnects || !bob.NATS().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("bob did not reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	publishUntilReceived(t, carol, room.RoomID, bobIn, "after the reconnect")
	if n := roomsRequests(t, b, subjects.RoomsMembers) - asked; n != 2 {
		t.Fatalf("%d membership requests after a reconnect, want 2", n)
	}
}
