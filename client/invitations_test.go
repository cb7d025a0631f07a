package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// TestInvitationIsAProposal: an invitation gives the invitee nothing (no
// room in its list, no subscription, no key) until it accepts; then it
// reads the room. A declined invitation cannot be accepted.
func TestInvitationIsAProposal(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room, err := alice.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	invited, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if invited.Role != subjects.RoleInvited {
		t.Fatalf("invited %+v, want role %q", invited, subjects.RoleInvited)
	}
	if refs, err := bob.ListMyRooms(ctx); err != nil || len(refs) != 0 {
		t.Fatalf("bob's rooms before accepting = %+v, %v; want none", refs, err)
	}
	invs, err := bob.Invitations(ctx)
	if err != nil || len(invs) != 1 || invs[0].RoomID != room.RoomID || invs[0].Owner != alice.Identity().PublicKey() || invs[0].Name != "ops" {
		t.Fatalf("bob's invitations = %+v, %v", invs, err)
	}
	if _, err := bob.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("subscribe before accepting = %v, want ErrForbidden", err)
	}
	if _, err := bob.RoomKey(ctx, room.RoomID, 0); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("room key before accepting = %v, want ErrForbidden", err)
	}

	info, err := bob.Accept(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	if info.RoomID != room.RoomID || info.Owner != alice.Identity().PublicKey() {
		t.Fatalf("accepted %+v", info)
	}
	if invs, err := bob.Invitations(ctx); err != nil || len(invs) != 0 {
		t.Errorf("bob's invitations after accepting = %+v, %v", invs, err)
	}
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "welcome")

	// Declined.
	other, err := alice.CreateRoom(ctx, "other", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, other.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if inv, err := bob.Decline(ctx, other.RoomID); err != nil || inv.RoomID != other.RoomID {
		t.Fatalf("decline = %+v, %v", inv, err)
	}
	if _, err := bob.Accept(ctx, other.RoomID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("accept after declining = %v, want ErrNotFound", err)
	}
	if _, err := bob.Decline(ctx, other.RoomID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("decline twice = %v, want ErrNotFound", err)
	}
	if refs, err := bob.ListMyRooms(ctx); err != nil || len(refs) != 1 {
		t.Errorf("bob's rooms = %+v, %v; want the accepted one", refs, err)
	}
}

// TestInviteeAcceptsAfterRekey: the owner's rekey seals to a pending
// invitee (its grant of the current key verifies like a member's), so an
// invitee invited at epoch 1 that accepts after the rekey to epoch 2 reads
// the frames of epoch 2. An invitee the owner removes is no longer
// invited, and the rekey that goes with it leaves it out.
func TestInviteeAcceptsAfterRekey(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, carol, dave := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "carol"), b.peer(t, "dave")
	room, err := alice.CreateRoom(ctx, "team", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{bob, carol, dave} {
		if _, err := alice.Invite(ctx, room.RoomID, c.Identity().PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	rekeyed, err := alice.Rekey(ctx, room.RoomID)
	if err != nil {
		t.Fatalf("rekey with pending invitees: %v", err)
	}
	if rekeyed.Epoch != room.Epoch+1 {
		t.Fatalf("rekeyed to epoch %d, want %d", rekeyed.Epoch, room.Epoch+1)
	}
	removed, err := alice.Remove(ctx, room.RoomID, dave.Identity().PublicKey())
	if err != nil {
		t.Fatalf("remove a pending invitee: %v", err)
	}
	if _, err := dave.Accept(ctx, room.RoomID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("accept after the owner removed the invitation = %v, want ErrNotFound", err)
	}
	if _, err := b.Node.Store.GetRoomKey(ctx, room.RoomID, removed.Epoch, dave.Identity().PublicKey()); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the removed invitee's key of epoch %d = %v, want none", removed.Epoch, err)
	}

	accepted, err := carol.Accept(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	if accepted.Epoch != removed.Epoch {
		t.Fatalf("carol accepted at epoch %d, want %d", accepted.Epoch, removed.Epoch)
	}
	carolIn := subscribe(t, carol, room.RoomID)
	if m := publishUntilReceived(t, alice, room.RoomID, carolIn, "after the rekeys"); m.Epoch != removed.Epoch {
		t.Errorf("carol read a frame of epoch %d, want %d", m.Epoch, removed.Epoch)
	}
	bobIn := subscribe(t, bob, room.RoomID)
	if m := publishUntilReceived(t, carol, room.RoomID, bobIn, "from carol"); m.Sender != carol.Identity().PublicKey() {
		t.Errorf("bob got %+v, want carol's frame", m)
	}
}

// TestHostileServerGhostInvitation: an operator adds a pending invitation
// behind the owner's back, with a key of its choosing. The owner's rekey
// refuses to seal to it (ErrUntrustedMember, naming it), and Remove
// cancels it with a rekey for the rest.
func TestHostileServerGhostInvitation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	b := newBus(t)
	alice, ghost := b.peer(t, "alice"), b.peer(t, "ghost")
	ghostPub := ghost.Identity().PublicKey()
	room, err := alice.CreateRoom(ctx, "team", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	ghostKey := b.sealedTo(t, ghost.Identity(), ghost.Identity(), room.RoomID, room.Epoch, e2e.NewRoomKey())
	if _, err := b.Node.Store.Invite(ctx, room.RoomID, ghostPub, room.Epoch, ghostKey); err != nil {
		t.Fatalf("invite the ghost through the store: %v", err)
	}
	if _, err := alice.Rekey(ctx, room.RoomID); !errors.Is(err, client.ErrUntrustedMember) || !strings.Contains(err.Error(), ghostPub) {
		t.Fatalf("rekey with a ghost invitee = %v, want ErrUntrustedMember naming %s", err, ghostPub)
	}
	after, err := alice.Remove(ctx, room.RoomID, ghostPub)
	if err != nil {
		t.Fatalf("remove the ghost invitee: %v", err)
	}
	if _, err := b.Node.Store.GetInvitation(ctx, room.RoomID, ghostPub); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the ghost's invitation after Remove = %v, want gone", err)
	}
	if _, err := b.Node.Store.GetRoomKey(ctx, room.RoomID, after.Epoch, ghostPub); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the ghost's key of epoch %d = %v, want none", after.Epoch, err)
	}
}

// TestInvitationsCheckTheOwner: an invitation whose owner is not the one
// its room ID names (an operator's rewrite; the store keeps one without a
// salt) is refused by Invitations with ErrUntrustedRoom.
func TestInvitationsCheckTheOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	b := newBus(t)
	alice, bob, mallory := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "mallory")
	room, err := alice.CreateRoom(ctx, "team", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(b.Node.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, kvstore.BucketInvitations)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := json.Marshal(kvstore.Invitation{
		RoomID: room.RoomID, Pub: bob.Identity().PublicKey(), InvitedBy: mallory.Identity().PublicKey(), Owner: mallory.Identity().PublicKey(),
		Epoch: room.Epoch, Mode: subjects.ModeE2E, Name: "team", InvitedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, bob.Identity().PublicKey()+"."+room.RoomID, forged); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Invitations(ctx); !errors.Is(err, client.ErrUntrustedRoom) || !errors.Is(err, subjects.ErrInvalidRoomID) {
		t.Fatalf("invitations with a forged owner = %v, want ErrUntrustedRoom", err)
	}
}
