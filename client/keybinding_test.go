package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// putUserRecord writes a user record into the users bucket behind the
// services' back, as an operator with the bucket's credentials would.
func putUserRecord(t *testing.T, b *bus, u kvstore.User) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	js, err := jetstream.New(b.Node.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, kvstore.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, u.Pub, j); err != nil {
		t.Fatal(err)
	}
}

// TestHostileServerOldEncryptionKey: a member replaces its encryption key
// (perhaps because the old one was stolen); the operator then serves the
// old key and its old, validly signed binding again. An owner that has
// seen the newer binding refuses to seal to the old key.
func TestHostileServerOldEncryptionKey(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	bobPub := bob.Identity().PublicKey()

	v1, err := b.Node.Store.GetUser(ctx, bobPub)
	if err != nil || v1.EncKeyVersion != 1 {
		t.Fatalf("bob's first binding: %+v, %v", v1, err)
	}
	// Connecting again with the same key file registers nothing new.
	b.connect(t, bob.Identity())
	if again, err := b.Node.Store.GetUser(ctx, bobPub); err != nil || again.EncKeyVersion != 1 {
		t.Fatalf("reconnecting bumped the binding: %+v, %v", again, err)
	}

	first, err := alice.CreateRoom(ctx, "first", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, first.RoomID, bobPub); err != nil {
		t.Fatalf("invite with bob's first key: %v", err)
	}
	if err := bob.ReplaceEncryptionKey(ctx, filepath.Join(t.TempDir(), "bob-new.enc")); err != nil {
		t.Fatal(err)
	}
	v2, err := b.Node.Store.GetUser(ctx, bobPub)
	if err != nil || v2.EncKeyVersion != 2 {
		t.Fatalf("bob's replaced binding: %+v, %v", v2, err)
	}
	second, err := alice.CreateRoom(ctx, "second", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, second.RoomID, bobPub); err != nil {
		t.Fatalf("invite with bob's new key: %v", err)
	}

	// The operator rolls bob's record back to the old key.
	putUserRecord(t, b, v1)
	third, err := alice.CreateRoom(ctx, "third", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Invite(ctx, third.RoomID, bobPub)
	if !errors.Is(err, client.ErrKeyRollback) {
		t.Fatalf("invite with the replayed old key = %v, want ErrKeyRollback", err)
	}
	if ms, err := b.Node.Store.ListMembers(ctx, third.RoomID); err != nil || len(ms) != 1 {
		t.Fatalf("the refused invitation stored members: %+v, %v", ms, err)
	}
	// The rekey path checks bindings too.
	if _, err := alice.Rekey(ctx, second.RoomID); !errors.Is(err, client.ErrKeyRollback) {
		t.Fatalf("rekey with the replayed old key = %v, want ErrKeyRollback", err)
	}
}

// TestUnnumberedBindingRegisteredAgain: a key registered before bindings
// were numbered (version 0) verifies nowhere, so an owner refuses to seal
// to it, and the member's next connection registers it again, numbered.
func TestUnnumberedBindingRegisteredAgain(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	bobPub := bob.Identity().PublicKey()
	u, err := b.Node.Store.GetUser(ctx, bobPub)
	if err != nil {
		t.Fatal(err)
	}
	u.EncKeyVersion = 0
	putUserRecord(t, b, u)

	room, err := alice.CreateRoom(ctx, "r", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bobPub); !errors.Is(err, subjects.ErrBadSignature) {
		t.Fatalf("invite with an unnumbered binding = %v, want ErrBadSignature", err)
	}
	b.connect(t, bob.Identity())
	if u, err := b.Node.Store.GetUser(ctx, bobPub); err != nil || u.EncKeyVersion != 1 {
		t.Fatalf("after reconnecting: %+v, %v", u, err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bobPub); err != nil {
		t.Fatalf("invite after the key was registered again: %v", err)
	}
}

// TestHostileServerModeDowngrade: the operator presents an encrypted room
// as a cleartext one to a client meeting it for the first time, so that
// the client would publish in the clear. The room's ID binds its mode, so
// the client refuses the room instead.
func TestHostileServerModeDowngrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := roomWith(ctx, t, alice, "team", subjects.ModeE2E, bob)
	// The store hides a record whose salt does not derive its ID, so the
	// operator drops the salt too; the epoch goes to 0 as in a cleartext
	// room.
	rewriteRoom(t, b, room.RoomID, func(m map[string]any) {
		m["mode"] = subjects.ModeCleartext
		m["epoch"] = 0
		delete(m, "salt")
	})
	fresh := b.connect(t, bob.Identity())
	if _, err := fresh.GetRoom(ctx, room.RoomID); !errors.Is(err, client.ErrUntrustedRoom) {
		t.Fatalf("get a room presented as cleartext = %v, want ErrUntrustedRoom", err)
	}
	if _, err := fresh.Publish(ctx, room.RoomID, []byte("secret")); !errors.Is(err, client.ErrUntrustedRoom) {
		t.Fatalf("publish into a room presented as cleartext = %v, want ErrUntrustedRoom", err)
	}
	// With the salt kept, the store itself refuses to serve the record.
	rewriteRoom(t, b, room.RoomID, func(m map[string]any) { m["salt"] = room.Salt })
	if _, err := b.connect(t, bob.Identity()).GetRoom(ctx, room.RoomID); err == nil {
		t.Fatal("a room whose mode does not match its ID was served")
	}
}
