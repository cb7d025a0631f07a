package kvstore_test

import (
	"context"
	"errors"
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
	id := subjects.NewRoomID()

	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Name: "ops", Mode: subjects.ModeE2E, History: "none", Owner: owner}, []byte("k1-owner"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	wantSubject, _ := subjects.Room(id)
	if room.Epoch != 1 || room.Subject != wantSubject || room.Owner != owner {
		t.Fatalf("created room = %+v", room)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("duplicate create = %v, want ErrExists", err)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: bob}, []byte("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("create over another's room = %v, want ErrExists", err)
	}

	// Invite bob with a key for the current epoch; a stale epoch conflicts.
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 7, []byte("k7-bob")); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("invite with wrong epoch = %v, want ErrConflict", err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, nil); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("invite without key = %v, want ErrInvalid", err)
	}
	m, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1-bob"))
	if err != nil || m.Role != subjects.RoleMember || m.JoinedEpoch != 1 {
		t.Fatalf("invite bob = %+v, %v", m, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1-bob")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("second invite = %v, want ErrExists", err)
	}
	if _, err := st.AddMember(ctx, id, carol, subjects.RoleMember, 1, []byte("k1-carol")); err != nil {
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
	want := kvstore.RoomRef{RoomID: id, Subject: wantSubject, Epoch: 1, History: "none", Role: subjects.RoleOwner, Mode: subjects.ModeE2E, Name: "ops", Owner: owner}
	if mine[0] != want {
		t.Fatalf("owner's room ref = %+v, want %+v", mine[0], want)
	}

	key, err := st.GetRoomKey(ctx, id, 1, bob)
	if err != nil || string(key) != "k1-bob" {
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
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string][]byte{owner: []byte("a"), bob: []byte("b"), carol: []byte("c")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey including a removed member = %v, want ErrConflict", err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 0, map[string][]byte{owner: []byte("k2-owner"), bob: []byte("k2-bob")})
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	if epoch <= 1 {
		t.Fatalf("new epoch %d not after 1", epoch)
	}
	latestEpoch, latest, err := latestRoomKey(ctx, st, id, bob)
	if err != nil || latestEpoch != epoch || string(latest) != "k2-bob" {
		t.Fatalf("latest for bob = %d %q %v; want %d k2-bob", latestEpoch, latest, err, epoch)
	}
	if _, _, err := latestRoomKey(ctx, st, id, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("latest for removed carol = %v, want ErrNotFound", err)
	}
	// The old epoch's key is still readable (history); the future is not.
	if k, err := st.GetRoomKey(ctx, id, 1, bob); err != nil || string(k) != "k1-bob" {
		t.Fatalf("old key = %q, %v", k, err)
	}
	if _, err := st.GetRoomKey(ctx, id, epoch+1, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("future epoch key = %v, want ErrNotFound", err)
	}
	// A stale rekey conflicts.
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string][]byte{owner: []byte("x"), bob: []byte("y")}); !errors.Is(err, kvstore.ErrConflict) {
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
	id := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, []byte("k")); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("cleartext with key = %v, want ErrInvalid", err)
	}
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, nil)
	if err != nil || room.Epoch != 0 {
		t.Fatalf("create cleartext = %+v, %v", room, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, nil); err != nil {
		t.Fatalf("add to cleartext: %v", err)
	}
	if _, err := st.RekeyTo(ctx, id, 0, 0, map[string][]byte{owner: []byte("a"), bob: []byte("b")}); !errors.Is(err, kvstore.ErrInvalid) {
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
	for _, tc := range []struct {
		name string
		room kvstore.Room
		key  []byte
	}{
		{"wildcard id", kvstore.Room{ID: "a.*", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"full wildcard id", kvstore.Room{ID: ">", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"space in id", kvstore.Room{ID: "a b", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"empty id", kvstore.Room{ID: "", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"bad mode", kvstore.Room{ID: subjects.NewRoomID(), Mode: "rot13", Owner: owner}, []byte("k")},
		{"bad owner", kvstore.Room{ID: subjects.NewRoomID(), Mode: subjects.ModeE2E, Owner: "bob"}, []byte("k")},
		{"e2e without key", kvstore.Room{ID: subjects.NewRoomID(), Mode: subjects.ModeE2E, Owner: owner}, nil},
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
	ghost := subjects.NewRoomID()
	owner := natstest.NewUserKey(t)
	real := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: real, Mode: subjects.ModeE2E, Owner: owner}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["GetUser"] = st.GetUser(ctx, nobody)
	_, checks["RevokeUser"] = st.RevokeUser(ctx, nobody)
	_, checks["SetEncryptionKey"] = st.SetEncryptionKey(ctx, nobody, []byte("k"), []byte("s"))
	_, checks["GetRoom"] = st.GetRoom(ctx, ghost)
	_, checks["GetMember(no room)"] = st.GetMember(ctx, ghost, owner)
	_, checks["GetMember(no member)"] = st.GetMember(ctx, real, nobody)
	_, checks["AddMember(no room)"] = st.AddMember(ctx, ghost, nobody, subjects.RoleMember, 1, []byte("k"))
	checks["RemoveMember(no room)"] = st.RemoveMember(ctx, ghost, owner)
	checks["RemoveMember(no member)"] = st.RemoveMember(ctx, real, nobody)
	_, checks["ListMembers"] = st.ListMembers(ctx, ghost)
	_, checks["GetRoomKey(no room)"] = st.GetRoomKey(ctx, ghost, 1, owner)
	_, checks["GetRoomKey(no key)"] = st.GetRoomKey(ctx, real, 1, nobody)
	_, _, checks["latestRoomKey(no room)"] = latestRoomKey(ctx, st, ghost, owner)
	_, _, checks["latestRoomKey(no key)"] = latestRoomKey(ctx, st, real, nobody)
	_, checks["RekeyTo(no room)"] = st.RekeyTo(ctx, ghost, 1, 0, map[string][]byte{owner: []byte("k")})
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
	id := subjects.NewRoomID()
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if room.NextEpoch() != 2 {
		t.Fatalf("next epoch of a new room = %d, want 2", room.NextEpoch())
	}
	if _, err := st.RekeyTo(ctx, id, 1, 5, map[string][]byte{owner: []byte("x")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey to a wrong epoch = %v, want ErrConflict", err)
	}
	// A claim that lost (membership mismatch) leaves its number unused.
	if _, err := st.RekeyTo(ctx, id, 1, 2, map[string][]byte{owner: []byte("x"), natstest.NewUserKey(t): []byte("y")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey with a non-member = %v, want ErrConflict", err)
	}
	room, err = st.GetRoom(ctx, id)
	if err != nil || room.Epoch != 1 || room.NextEpoch() != 3 {
		t.Fatalf("after a lost claim: epoch %d next %d (%v); want 1 and 3", room.Epoch, room.NextEpoch(), err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 3, map[string][]byte{owner: []byte("k3")})
	if err != nil || epoch != 3 {
		t.Fatalf("rekey to next epoch = %d, %v; want 3", epoch, err)
	}
	if _, key, err := latestRoomKey(ctx, st, id, owner); err != nil || string(key) != "k3" {
		t.Fatalf("latest key = %q, %v", key, err)
	}
}

func testConcurrentRekeysOneWinner(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	for round := range 5 {
		id := subjects.NewRoomID()
		if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("k1")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1b")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		epochs := make([]uint64, 2)
		for i := range 2 {
			wg.Go(func() {
				tag := []byte{byte('a' + i)}
				epochs[i], errs[i] = st.RekeyTo(ctx, id, 1, 0, map[string][]byte{owner: tag, bob: tag})
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
		if err != nil || epoch != epochs[winner] || key[0] != byte('a'+winner) {
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
	id := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, nil); err != nil {
		t.Fatal(err)
	}
	other := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: other, Mode: subjects.ModeCleartext, Owner: owner}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, nil); err != nil {
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
		if _, err := st.AddMember(ctx, id, natstest.NewUserKey(t), subjects.RoleMember, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	count(1031)

	if _, err := st.CountMembers(ctx, subjects.NewRoomID()); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("CountMembers(unknown room) = %v, want ErrNotFound", err)
	}
	if _, err := st.CountMembers(ctx, "r.>"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountMembers(wildcard) = %v, want ErrInvalid", err)
	}
	if _, err := st.CountRoomsForEndpoint(ctx, "U*"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountRoomsForEndpoint(wildcard) = %v, want ErrInvalid", err)
	}
}
