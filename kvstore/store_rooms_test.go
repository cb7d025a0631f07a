package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// roomCases are the store suite's cases of this file (see TestStore).
var roomCases = []storeCase{
	{"RoomsLifecycle", testRoomsLifecycle},
	{"CleartextRoom", testCleartextRoom},
	{"InvalidRoomInputStoresNothing", testInvalidRoomInputStoresNothing},
	{"NotFound", testNotFound},
	{"RekeyToEpoch", testRekeyToEpoch},
	{"ConcurrentRekeysOneWinner", testConcurrentRekeysOneWinner},
	{"Counts", testCounts},
}

func testRoomsLifecycle(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t), natstest.NewUserKey(t)
	id, salt := subjects.NewRoomID(owner, subjects.ModeE2E)

	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Name: "ops", Mode: subjects.ModeE2E, History: "none", Owner: owner, Salt: salt}, sealedKey("k1-owner"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	wantSubject, _ := subjects.Room(id)
	if room.Epoch != 1 || room.Subject != wantSubject || room.Owner != owner || !bytes.Equal(room.Salt, salt) {
		t.Fatalf("created room = %+v", room)
	}
	if got, err := st.GetRoom(ctx, id); err != nil || !bytes.Equal(got.Salt, salt) {
		t.Fatalf("room read back = %+v, %v; want its salt", got, err)
	}
	if k, err := st.GetRoomKey(ctx, id, 1, owner); err != nil || !reflect.DeepEqual(k, sealedKey("k1-owner")) {
		t.Fatalf("owner's key = %+v, %v; want the sealed key and grant it was created with", k, err)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("duplicate create = %v, want ErrExists", err)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: bob}, sealedKey("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("create over another's room = %v, want ErrExists", err)
	}

	// Invite bob with a key for the current epoch; a stale epoch conflicts.
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 7, sealedKey("k7-bob")); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("invite with wrong epoch = %v, want ErrConflict", err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, kvstore.SealedKey{}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("invite without key = %v, want ErrInvalid", err)
	}
	m, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, sealedKey("k1-bob"))
	if err != nil || m.Role != subjects.RoleMember || m.JoinedEpoch != 1 {
		t.Fatalf("invite bob = %+v, %v", m, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, sealedKey("k1-bob")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("second invite = %v, want ErrExists", err)
	}
	if _, err := st.AddMember(ctx, id, carol, subjects.RoleMember, 1, sealedKey("k1-carol")); err != nil {
		t.Fatalf("invite carol: %v", err)
	}

	members, err := st.ListMembers(ctx, id)
	if err != nil || len(members) != 3 {
		t.Fatalf("members = %+v, %v; want 3", members, err)
	}
	roles := map[string]string{}
	for _, m := range members {
		roles[m.Pub] = m.Role
	}
	if roles[owner] != subjects.RoleOwner || roles[bob] != subjects.RoleMember || roles[carol] != subjects.RoleMember {
		t.Fatalf("roles = %v", roles)
	}

	mine, err := st.ListRoomsForEndpoint(ctx, owner)
	if err != nil || len(mine) != 1 {
		t.Fatalf("owner's rooms = %+v, %v", mine, err)
	}
	want := kvstore.RoomRef{RoomID: id, Subject: wantSubject, Epoch: 1, History: "none", Role: subjects.RoleOwner, Mode: subjects.ModeE2E, Name: "ops", Owner: owner, Salt: salt}
	if !reflect.DeepEqual(mine[0], want) {
		t.Fatalf("owner's room ref = %+v, want %+v", mine[0], want)
	}

	key, err := st.GetRoomKey(ctx, id, 1, bob)
	if err != nil || !reflect.DeepEqual(key, sealedKey("k1-bob")) {
		t.Fatalf("bob's key = %q, %v", key, err)
	}

	// Remove carol, rekey for the rest: carol has no key at the new epoch.
	if err := st.RemoveMember(ctx, id, carol); err != nil {
		t.Fatalf("remove carol: %v", err)
	}
	if err := st.RemoveMember(ctx, id, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("remove carol again = %v, want ErrNotFound", err)
	}
	if refs, err := st.ListRoomsForEndpoint(ctx, carol); err != nil || refs == nil || len(refs) != 0 {
		t.Fatalf("carol's rooms after removal = %#v, %v; want empty, non-nil", refs, err)
	}
	// Keys that still include carol no longer cover the members.
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("a"), bob: sealedKey("b"), carol: sealedKey("c")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey including a removed member = %v, want ErrConflict", err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2-owner"), bob: sealedKey("k2-bob")})
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	if epoch <= 1 {
		t.Fatalf("new epoch %d not after 1", epoch)
	}
	latestEpoch, latest, err := latestRoomKey(ctx, st, id, bob)
	if err != nil || latestEpoch != epoch || !reflect.DeepEqual(latest, sealedKey("k2-bob")) {
		t.Fatalf("latest for bob = %d %q %v; want %d k2-bob", latestEpoch, latest, err, epoch)
	}
	if _, _, err := latestRoomKey(ctx, st, id, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("latest for removed carol = %v, want ErrNotFound", err)
	}
	// The old epoch's key is still readable (history); the future is not.
	if k, err := st.GetRoomKey(ctx, id, 1, bob); err != nil || !reflect.DeepEqual(k, sealedKey("k1-bob")) {
		t.Fatalf("old key = %q, %v", k, err)
	}
	if _, err := st.GetRoomKey(ctx, id, epoch+1, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("future epoch key = %v, want ErrNotFound", err)
	}
	// A stale rekey conflicts.
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("x"), bob: sealedKey("y")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("stale rekey = %v, want ErrConflict", err)
	}
	got, err := st.GetRoom(ctx, id)
	if err != nil || got.Epoch != epoch {
		t.Fatalf("room after rekeys = %+v, %v; want epoch %d", got, err, epoch)
	}
}

func testCleartextRoom(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	id := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, sealedKey("k")); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("cleartext with key = %v, want ErrInvalid", err)
	}
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{})
	if err != nil || room.Epoch != 0 {
		t.Fatalf("create cleartext = %+v, %v", room, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
		t.Fatalf("add to cleartext: %v", err)
	}
	if _, err := st.RekeyTo(ctx, id, 0, 0, map[string]kvstore.SealedKey{owner: sealedKey("a"), bob: sealedKey("b")}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("rekey cleartext = %v, want ErrInvalid", err)
	}
	if _, _, err := latestRoomKey(ctx, st, id, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("key of cleartext room = %v, want ErrNotFound", err)
	}
}

func testInvalidRoomInputStoresNothing(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	js := e.js
	owner := natstest.NewUserKey(t)
	ownID, ownSalt := subjects.NewRoomID(owner, subjects.ModeE2E)
	othersID, othersSalt := subjects.NewRoomID(natstest.NewUserKey(t), subjects.ModeE2E)
	for _, tc := range []struct {
		name string
		room kvstore.Room
		key  kvstore.SealedKey
	}{
		{"wildcard id", kvstore.Room{ID: "a.*", Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"full wildcard id", kvstore.Room{ID: ">", Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"space in id", kvstore.Room{ID: "a b", Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"empty id", kvstore.Room{ID: "", Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"bad mode", kvstore.Room{ID: anyRoomID(), Mode: "rot13", Owner: owner}, sealedKey("k")},
		{"bad owner", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: "bob"}, sealedKey("k")},
		{"e2e without key", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, kvstore.SealedKey{}},
		{"e2e without grant", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, kvstore.SealedKey{Sealed: []byte("k")}},
		{"e2e grant too short", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, kvstore.SealedKey{Sealed: []byte("k"), Grant: make([]byte, subjects.GrantLen-1)}},
		{"e2e grant too long", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, kvstore.SealedKey{Sealed: []byte("k"), Grant: make([]byte, subjects.GrantLen+1)}},
		{"e2e grant without key", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, kvstore.SealedKey{Grant: grantOf("g")}},
		{"cleartext with grant", kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{Grant: grantOf("g")}},
		{"another's salted id", kvstore.Room{ID: othersID, Salt: othersSalt, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"wrong salt", kvstore.Room{ID: ownID, Salt: othersSalt, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
		{"short salt", kvstore.Room{ID: ownID, Salt: ownSalt[:subjects.RoomSaltLen-1], Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.CreateRoom(ctx, tc.room, tc.key); !errors.Is(err, kvstore.ErrInvalid) {
				t.Fatalf("CreateRoom = %v, want ErrInvalid", err)
			}
		})
	}
	for _, b := range []string{kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		status, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if status.Values() != 0 {
			t.Errorf("bucket %s holds %d values after refused input", b, status.Values())
		}
	}
}

func testNotFound(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	nobody := natstest.NewUserKey(t)
	ghost := anyRoomID()
	owner := natstest.NewUserKey(t)
	real := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: real, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["GetUser"] = st.GetUser(ctx, nobody)
	_, checks["RevokeUser"] = st.RevokeUser(ctx, nobody)
	_, checks["SetEncryptionKey"] = st.SetEncryptionKey(ctx, nobody, kvstore.EncKeyBinding{Key: []byte("k"), Sig: []byte("s"), Version: 1})
	_, checks["GetRoom"] = st.GetRoom(ctx, ghost)
	_, checks["GetMember(no room)"] = st.GetMember(ctx, ghost, owner)
	_, checks["GetMember(no member)"] = st.GetMember(ctx, real, nobody)
	_, checks["AddMember(no room)"] = st.AddMember(ctx, ghost, nobody, subjects.RoleMember, 1, sealedKey("k"))
	checks["RemoveMember(no room)"] = st.RemoveMember(ctx, ghost, owner)
	checks["RemoveMember(no member)"] = st.RemoveMember(ctx, real, nobody)
	_, checks["ListMembers"] = st.ListMembers(ctx, ghost)
	_, checks["GetRoomKey(no room)"] = st.GetRoomKey(ctx, ghost, 1, owner)
	_, checks["GetRoomKey(no key)"] = st.GetRoomKey(ctx, real, 1, nobody)
	_, _, checks["latestRoomKey(no room)"] = latestRoomKey(ctx, st, ghost, owner)
	_, _, checks["latestRoomKey(no key)"] = latestRoomKey(ctx, st, real, nobody)
	_, checks["RekeyTo(no room)"] = st.RekeyTo(ctx, ghost, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k")})
	for name, err := range checks {
		if !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", name, err)
		}
	}
	refs, err := st.ListRoomsForEndpoint(ctx, nobody)
	if err != nil || refs == nil || len(refs) != 0 {
		t.Fatalf("rooms of nobody = %#v, %v; want empty non-nil slice", refs, err)
	}
}

func testRekeyToEpoch(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner := natstest.NewUserKey(t)
	id := anyRoomID()
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if room.NextEpoch() != 2 {
		t.Fatalf("next epoch of a new room = %d, want 2", room.NextEpoch())
	}
	if _, err := st.RekeyTo(ctx, id, 1, 5, map[string]kvstore.SealedKey{owner: sealedKey("x")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey to a wrong epoch = %v, want ErrConflict", err)
	}
	// A claim that lost (membership mismatch) leaves its number unused.
	if _, err := st.RekeyTo(ctx, id, 1, 2, map[string]kvstore.SealedKey{owner: sealedKey("x"), natstest.NewUserKey(t): sealedKey("y")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey with a non-member = %v, want ErrConflict", err)
	}
	room, err = st.GetRoom(ctx, id)
	if err != nil || room.Epoch != 1 || room.NextEpoch() != 3 {
		t.Fatalf("after a lost claim: epoch %d next %d (%v); want 1 and 3", room.Epoch, room.NextEpoch(), err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 3, map[string]kvstore.SealedKey{owner: sealedKey("k3")})
	if err != nil || epoch != 3 {
		t.Fatalf("rekey to next epoch = %d, %v; want 3", epoch, err)
	}
	if _, key, err := latestRoomKey(ctx, st, id, owner); err != nil || !reflect.DeepEqual(key, sealedKey("k3")) {
		t.Fatalf("latest key = %q, %v", key, err)
	}
}

func testConcurrentRekeysOneWinner(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	for round := range 5 {
		id := anyRoomID()
		if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, sealedKey("k1b")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		epochs := make([]uint64, 2)
		for i := range 2 {
			wg.Go(func() {
				tag := sealedKey(string(rune('a' + i)))
				epochs[i], errs[i] = st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: tag, bob: tag})
			})
		}
		wg.Wait()
		wins, conflicts := 0, 0
		var winner int
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = i
			case errors.Is(err, kvstore.ErrConflict):
				conflicts++
			default:
				t.Fatalf("round %d: rekey %d: %v", round, i, err)
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d winners, %d conflicts; want 1 and 1", round, wins, conflicts)
		}
		// The committed epoch serves exactly the winner's keys.
		epoch, key, err := latestRoomKey(ctx, st, id, bob)
		if err != nil || epoch != epochs[winner] || key.Sealed[0] != byte('a'+winner) || key.Grant[0] != byte('a'+winner) {
			t.Fatalf("round %d: latest = %d %q %v; want winner %d's key at %d", round, epoch, key, err, winner, epochs[winner])
		}
	}
}

// testCounts: CountMembers and CountRoomsForEndpoint count current
// records only (not deleted ones), also past what one direct get returns.
func testCounts(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.Config{Memory: true})
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	id := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	other := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: other, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	count := func(want int) {
		t.Helper()
		if n, err := st.CountMembers(ctx, id); err != nil || n != want {
			t.Fatalf("CountMembers = %d, %v; want %d", n, err, want)
		}
	}
	count(2)
	if n, err := st.CountRoomsForEndpoint(ctx, owner); err != nil || n != 2 {
		t.Fatalf("CountRoomsForEndpoint(owner) = %d, %v; want 2", n, err)
	}
	if err := st.RemoveMember(ctx, id, bob); err != nil {
		t.Fatal(err)
	}
	count(1)
	if n, err := st.CountRoomsForEndpoint(ctx, bob); err != nil || n != 0 {
		t.Fatalf("CountRoomsForEndpoint(bob) after removal = %d, %v; want 0", n, err)
	}
	// Past one multi-last direct get (1024 results).
	for range 1030 {
		if _, err := st.AddMember(ctx, id, natstest.NewUserKey(t), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
	}
	count(1031)

	if _, err := st.CountMembers(ctx, anyRoomID()); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("CountMembers(unknown room) = %v, want ErrNotFound", err)
	}
	if _, err := st.CountMembers(ctx, "r.>"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountMembers(wildcard) = %v, want ErrInvalid", err)
	}
	if _, err := st.CountRoomsForEndpoint(ctx, "U*"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountRoomsForEndpoint(wildcard) = %v, want ErrInvalid", err)
	}
}
