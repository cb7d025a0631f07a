package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// The hostile-server harness: an operator who controls the servers and the
// buckets writes state behind the owner's back, through the store user's
// connection (node.StoreConn, which kvstore.Store uses). It can deny
// service; these tests check that it can never add a reader to an
// encrypted room nor choose its key, and that members say so clearly.

// hostileWait bounds the waits of these tests on a loaded machine.
const hostileWait = 15 * time.Second

// encKey loads the encryption key of a peer of b (every peer's key file is
// under b.keys).
func (b *bus) encKey(t *testing.T, id *identity.Identity) *e2e.EncryptionKey {
	t.Helper()
	k, err := e2e.LoadEncryptionKey(filepath.Join(b.keys, id.PublicKey()+".enc"))
	if err != nil {
		t.Fatalf("load encryption key of %s: %v", id.PublicKey(), err)
	}
	return k
}

// sealedTo seals roomKey to id's encryption key for room and epoch, with a
// grant signed by granter (the operator cannot sign as the owner).
func (b *bus) sealedTo(t *testing.T, id, granter *identity.Identity, roomID string, epoch uint64, roomKey []byte) kvstore.SealedKey {
	t.Helper()
	sealed, err := e2e.SealRoomKey(b.encKey(t, id).PublicKey(), roomID, epoch, id.PublicKey(), roomKey)
	if err != nil {
		t.Fatal(err)
	}
	grant, err := e2e.SignGrant(granter, roomID, epoch, id.PublicKey(), roomKey)
	if err != nil {
		t.Fatal(err)
	}
	return kvstore.SealedKey{Sealed: sealed, Grant: grant}
}

// rewriteRoom changes a room's record in the rooms bucket as raw JSON, as
// an operator with the bucket's credentials would.
func rewriteRoom(t *testing.T, b *bus, roomID string, change func(m map[string]any)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	js, err := jetstream.New(b.Node.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, kvstore.BucketRooms)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(e.Value()))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	change(m)
	v, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, roomID, v); err != nil {
		t.Fatal(err)
	}
}

// sealerOf returns a sealer whose frames carry grant, for raw frames that
// the client API would refuse to make.
func sealerOf(t *testing.T, id *identity.Identity, roomID string, epoch uint64, roomKey, grant []byte) *e2e.Sealer {
	t.Helper()
	s, err := e2e.NewSealer(e2e.SealerConfig{Identity: id, Room: roomID, Epoch: epoch, RoomKey: roomKey, Grant: grant})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publishUntilRejected sends frames of s with c's raw connection until
// in rejects one with an error matching every one of want; no frame of s
// may be delivered.
func publishUntilRejected(t *testing.T, c *client.Conn, roomID string, s *e2e.Sealer, in *inbox, want ...error) error {
	t.Helper()
	nc, subject := c.NATS(), sendSubject(t, c, roomID)
	deadline := time.Now().Add(hostileWait)
	for time.Now().Before(deadline) {
		_, wire, err := s.Seal(e2e.Message{Payload: []byte("from the operator")}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(subject, wire); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-in.msgs:
			t.Fatalf("a frame from %s was delivered: %q", m.Sender, m.Data)
		case err := <-in.rejects:
			for _, w := range want {
				if !errors.Is(err, w) {
					t.Fatalf("rejected with %v, want it to match %v", err, w)
				}
			}
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("no frame rejected within %s", hostileWait)
	return nil
}

// TestHostileServerGhostMember: the operator adds a ghost to the member and
// index buckets with a room key of its choosing sealed to it. The honest
// owner's rekey refuses, naming the ghost, and seals nothing; the ghost's
// frames are refused by members; the owner's Remove evicts it.
func TestHostileServerGhostMember(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, ghost := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "ghost")
	ghostPub := ghost.Identity().PublicKey()
	room := roomWith(ctx, t, alice, "team", subjects.ModeE2E, bob)
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "before")

	// Behind alice's back: the ghost as a member, with a key the operator
	// chose and a grant the ghost signed itself.
	operatorKey := e2e.NewRoomKey()
	ghostKey := b.sealedTo(t, ghost.Identity(), ghost.Identity(), room.RoomID, room.Epoch, operatorKey)
	if _, err := b.Node.Store.AddMember(ctx, room.RoomID, ghostPub, subjects.RoleMember, room.Epoch, ghostKey); err != nil {
		t.Fatalf("add the ghost through the store: %v", err)
	}

	// The owner's rekey refuses, naming the ghost, and seals nothing.
	_, err := alice.Rekey(ctx, room.RoomID)
	if !errors.Is(err, client.ErrUntrustedMember) || !errors.Is(err, e2e.ErrBadGrant) || !strings.Contains(err.Error(), ghostPub) {
		t.Fatalf("rekey with a ghost = %v, want ErrUntrustedMember naming %s", err, ghostPub)
	}
	stored, err := b.Node.Store.GetRoom(ctx, room.RoomID)
	if err != nil || stored.Epoch != room.Epoch || stored.KeyClaim > room.Epoch {
		t.Fatalf("room after the refused rekey: epoch %d, claim %d, %v; want epoch %d untouched", stored.Epoch, stored.KeyClaim, err, room.Epoch)
	}

	// The only room key the ghost can get is the operator's; the ghost's
	// own client refuses it, and its hand-made frames are refused by bob
	// before any decryption.
	if _, err := ghost.Publish(ctx, room.RoomID, []byte("hi")); !errors.Is(err, client.ErrUnauthenticatedKey) {
		t.Fatalf("ghost's publish = %v, want ErrUnauthenticatedKey", err)
	}
	resp, err := ghost.RoomKey(ctx, room.RoomID, room.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e2e.OpenRoomKey(b.encKey(t, ghost.Identity()), room.RoomID, room.Epoch, ghostPub, resp.SealedKey)
	if err != nil || !bytes.Equal(got, operatorKey) {
		t.Fatalf("the ghost's key = %x, %v; want the operator's", got, err)
	}
	s := sealerOf(t, ghost.Identity(), room.RoomID, room.Epoch, got, resp.Grant)
	publishUntilRejected(t, ghost, room.RoomID, s, bobIn, e2e.ErrNotMember, e2e.ErrBadGrant)

	// Removing the ghost rekeys the room for the members alone.
	after, err := alice.Remove(ctx, room.RoomID, ghostPub)
	if err != nil {
		t.Fatalf("remove the ghost: %v", err)
	}
	if m := publishUntilReceived(t, alice, room.RoomID, bobIn, "ghost gone"); m.Epoch != after.Epoch {
		t.Fatalf("bob read epoch %d, want %d", m.Epoch, after.Epoch)
	}
	if _, err := b.Node.Store.GetRoomKey(ctx, room.RoomID, after.Epoch, ghostPub); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("the ghost's key of the new epoch: %v, want none", err)
	}
}

// TestHostileServerSubstitutedKey is the reported attack: an operator
// starts epoch 2 with its own room key, writing the room record at epoch 2
// and a key sealed to every member. Members refuse the key with a clear
// error, send nothing under it, and read nothing the operator sends.
func TestHostileServerSubstitutedKey(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := roomWith(ctx, t, alice, "team", subjects.ModeE2E, bob)
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "before")
	raw := rawDeliveries(t, alice, room.RoomID)

	// The operator has a member identity of its own (added behind the
	// owner's back) to publish with, and moves the room to the next epoch
	// with its own key, sealed to everyone, with grants it signs itself.
	operator := b.peer(t, "operator")
	opPub := operator.Identity().PublicKey()
	if _, err := b.Node.Store.AddMember(ctx, room.RoomID, opPub, subjects.RoleMember, room.Epoch,
		b.sealedTo(t, operator.Identity(), operator.Identity(), room.RoomID, room.Epoch, e2e.NewRoomKey())); err != nil {
		t.Fatal(err)
	}
	stored, err := b.Node.Store.GetRoom(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	next := stored.NextEpoch()
	operatorKey := e2e.NewRoomKey()
	keys := map[string]kvstore.SealedKey{}
	for _, c := range []*client.Conn{alice, bob, operator} {
		keys[c.Identity().PublicKey()] = b.sealedTo(t, c.Identity(), operator.Identity(), room.RoomID, next, operatorKey)
	}
	if _, err := b.Node.Store.RekeyTo(ctx, room.RoomID, room.Epoch, next, keys); err != nil {
		t.Fatalf("the operator's rekey: %v", err)
	}

	// A member's new device refuses the room key, saying why.
	bob2 := b.connect(t, bob.Identity())
	if _, err := bob2.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrUnauthenticatedKey) || !errors.Is(err, e2e.ErrBadGrant) {
		t.Fatalf("subscribe after the substitution = %v, want ErrUnauthenticatedKey", err)
	}

	// The operator's frames of its epoch are refused by bob's live
	// subscription, which looked at the new epoch and refused its key.
	opGrant := keys[opPub].Grant
	s := sealerOf(t, operator.Identity(), room.RoomID, next, operatorKey, opGrant)
	publishUntilRejected(t, operator, room.RoomID, s, bobIn, client.ErrUnauthenticatedKey)

	// Members who look at the room now see its new epoch, and publish
	// nothing under the operator's key.
	for _, c := range []*client.Conn{alice, bob} {
		if _, err := c.GetRoom(ctx, room.RoomID); err != nil {
			t.Fatalf("get room: %v", err)
		}
		if _, err := c.Publish(ctx, room.RoomID, []byte("secret")); !errors.Is(err, client.ErrUnauthenticatedKey) {
			t.Fatalf("publish after the substitution = %v, want ErrUnauthenticatedKey", err)
		}
	}
	if err := alice.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := raw.NextMsg(500 * time.Millisecond)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f, err := e2e.Decode(msg.Data)
		if err != nil || f.Sender == opPub {
			continue
		}
		if p, err := e2e.Open(f, operatorKey); err == nil {
			t.Fatalf("the operator read %q from %s", p, f.Sender)
		}
		if f.Epoch == next {
			t.Fatalf("%s sealed a frame in the operator's epoch %d", f.Sender, next)
		}
	}
}

// TestHostileServerRollback: a room record rolled back to an older epoch
// than one whose key a member holds from the owner is refused.
func TestHostileServerRollback(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := roomWith(ctx, t, alice, "team", subjects.ModeE2E, bob)
	rekeyed, err := alice.Rekey(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	bobIn := subscribe(t, bob, room.RoomID) // bob now holds the key of rekeyed.Epoch
	aliceIn := subscribe(t, alice, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "at the new epoch")

	rewriteRoom(t, b, room.RoomID, func(m map[string]any) { m["epoch"] = room.Epoch })
	if _, err := bob.GetRoom(ctx, room.RoomID); !errors.Is(err, client.ErrEpochRollback) {
		t.Fatalf("get room rolled back to epoch %d = %v, want ErrEpochRollback", room.Epoch, err)
	}
	if _, err := bob.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrEpochRollback) {
		t.Fatalf("subscribe to a room rolled back = %v, want ErrEpochRollback", err)
	}
	// Bob keeps the epoch he verified.
	if m := publishUntilReceived(t, bob, room.RoomID, aliceIn, "still at the new epoch"); m.Epoch != rekeyed.Epoch {
		t.Fatalf("bob published at epoch %d, want %d", m.Epoch, rekeyed.Epoch)
	}
}

// TestHostileServerReplacedOwner: a room record whose owner was replaced no
// longer matches its ID, and members refuse it: whoever the server names
// as owner, its grants admit no one.
func TestHostileServerReplacedOwner(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, mallory := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "mallory")
	room := roomWith(ctx, t, alice, "team", subjects.ModeE2E, bob)
	bobIn := subscribe(t, bob, room.RoomID)
	publishUntilReceived(t, alice, room.RoomID, bobIn, "before")

	// The store hides a record whose salt does not derive its ID from its
	// owner, so the operator drops the salt too (as a room made before
	// salts existed): only the client's own check stands in its way.
	rewriteRoom(t, b, room.RoomID, func(m map[string]any) {
		m["owner"] = mallory.Identity().PublicKey()
		delete(m, "salt")
	})
	if _, err := bob.GetRoom(ctx, room.RoomID); !errors.Is(err, client.ErrUntrustedRoom) || !errors.Is(err, subjects.ErrInvalidRoomID) {
		t.Fatalf("get room with a replaced owner = %v, want ErrUntrustedRoom", err)
	}
	bob2 := b.connect(t, bob.Identity())
	if _, err := bob2.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil); !errors.Is(err, client.ErrUntrustedRoom) {
		t.Fatalf("subscribe to a room with a replaced owner = %v, want ErrUntrustedRoom", err)
	}
}
