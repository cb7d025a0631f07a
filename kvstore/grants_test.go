package kvstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/testio"
)

// grantCases are the store suite's cases of this file (see TestStore).
var grantCases = []storeCase{
	{"GrantsKeptBesideKeys", testGrantsKeptBesideKeys},
	{"KeysWithoutGrantRefused", testKeysWithoutGrantRefused},
	{"RekeySkipsRevokedMembers", testRekeySkipsRevokedMembers},
}

// testGrantsKeptBesideKeys: each sealed key is stored with its grant and
// read back with it, by GetRoomKey and by RoomGrants, epoch by epoch.
func testGrantsKeptBesideKeys(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	id, salt := subjects.NewRoomID(owner, subjects.ModeE2E)
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1-owner"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	grants, err := st.RoomGrants(ctx, room)
	if want := map[string][]byte{owner: grantOf("k1-owner"), bob: grantOf("k1-bob")}; err != nil || !reflect.DeepEqual(grants, want) {
		t.Fatalf("grants of epoch 1 = %x, %v; want %x", grants, err, want)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2-owner"), bob: sealedKey("k2-bob")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		epoch uint64
		pub   string
		want  kvstore.SealedKey
	}{
		{1, owner, sealedKey("k1-owner")},
		{1, bob, sealedKey("k1-bob")},
		{epoch, owner, sealedKey("k2-owner")},
		{epoch, bob, sealedKey("k2-bob")},
	} {
		if got, err := st.GetRoomKey(ctx, id, tc.epoch, tc.pub); err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("key of epoch %d for %s = %+v, %v; want %+v", tc.epoch, tc.pub, got, err, tc.want)
		}
	}
	if room, err = st.GetRoom(ctx, id); err != nil || room.Epoch != epoch {
		t.Fatalf("room after the rekey = %+v, %v; want epoch %d", room, err, epoch)
	}
	grants, err = st.RoomGrants(ctx, room)
	if want := map[string][]byte{owner: grantOf("k2-owner"), bob: grantOf("k2-bob")}; err != nil || !reflect.DeepEqual(grants, want) {
		t.Errorf("grants of epoch %d = %x, %v; want %x", epoch, grants, err, want)
	}
	// A cleartext room has no grants; a bad ID is invalid.
	clear, err := st.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{})
	if err != nil {
		t.Fatal(err)
	}
	if grants, err := st.RoomGrants(ctx, clear); err != nil || len(grants) != 0 {
		t.Errorf("grants of a cleartext room = %x, %v; want none", grants, err)
	}
	if _, err := st.RoomGrants(ctx, kvstore.Room{ID: "a.*", Mode: subjects.ModeE2E, Epoch: 1}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("grants of a wildcard room = %v, want ErrInvalid", err)
	}
}

// testKeysWithoutGrantRefused: no write of a sealed key without its grant
// (or with a grant of the wrong length) stores anything.
func testKeysWithoutGrantRefused(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	id, salt := subjects.NewRoomID(owner, subjects.ModeE2E)
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1")); err != nil {
		t.Fatal(err)
	}
	clear := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: clear, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	before := bucketSeqs(t, e)
	for name, key := range map[string]kvstore.SealedKey{
		"no grant":        {Sealed: []byte("k")},
		"short grant":     {Sealed: []byte("k"), Grant: make([]byte, subjects.GrantLen-1)},
		"long grant":      {Sealed: []byte("k"), Grant: make([]byte, subjects.GrantLen+1)},
		"grant, no key":   {Grant: grantOf("g")},
		"neither of them": {},
	} {
		if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, key); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("AddMember with %s = %v, want ErrInvalid", name, err)
		}
		if _, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: key}); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("RekeyTo with %s = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2"), bob: {Sealed: []byte("k2")}}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("RekeyTo with one grant missing = %v, want ErrInvalid", err)
	}
	if _, err := st.AddMember(ctx, clear, bob, subjects.RoleMember, 0, kvstore.SealedKey{Grant: grantOf("g")}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("AddMember to a cleartext room with a grant = %v, want ErrInvalid", err)
	}
	if after := bucketSeqs(t, e); !reflect.DeepEqual(after, before) {
		t.Errorf("refused writes changed the buckets: %v → %v", before, after)
	}
}

// testRekeySkipsRevokedMembers: a revoked user whose member record stays
// is not a member a rekey must cover, and a rekey that includes it is
// refused, so that it gets no key of a later epoch.
func testRekeySkipsRevokedMembers(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t), natstest.NewUserKey(t)
	for _, pub := range []string{owner, bob, carol} {
		if _, err := st.AddUser(ctx, kvstore.User{Pub: pub}); err != nil {
			t.Fatal(err)
		}
	}
	id := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1")); err != nil {
		t.Fatal(err)
	}
	for _, pub := range []string{bob, carol} {
		if _, err := st.AddMember(ctx, id, pub, subjects.RoleMember, 1, sealedKey("k1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.RevokeUser(ctx, carol); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("x"), bob: sealedKey("x"), carol: sealedKey("x")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey including the revoked carol = %v, want ErrConflict", err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2"), bob: sealedKey("k2")})
	if err != nil {
		t.Fatalf("rekey without the revoked carol: %v", err)
	}
	if _, err := st.GetRoomKey(ctx, id, epoch, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the revoked carol's key of epoch %d = %v, want none", epoch, err)
	}
	// Her member record is still there (the services leave her out).
	if _, err := st.GetMember(ctx, id, carol); err != nil {
		t.Errorf("carol's member record: %v", err)
	}
}

// bucketSeqs is the last sequence of every room bucket: any write moves it.
func bucketSeqs(t *testing.T, e *storeEnv) map[string]uint64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]uint64{}
	for _, b := range []string{kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys, kvstore.BucketInvitations} {
		s, err := e.js.Stream(ctx, streamOf(b))
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[b] = info.State.LastSeq
	}
	return out
}

// TestLegacyRoomKeys: a room key stored before grants existed, the bare
// sealed bytes, reads back with an empty grant (clients refuse it); a
// value with the header of a granted key but too short for a grant and a
// sealed key is an invalid record, treated as absent.
func TestLegacyRoomKeys(t *testing.T) {
	ctx := context.Background()
	logs := &testio.Buffer{}
	cfg := kvstore.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	st, js := openStore(t, cfg)
	owner, bob, carol := newUserKey(t), newUserKey(t), newUserKey(t)
	id := anyRoomID()
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := js.KeyValue(ctx, kvstore.BucketRoomKeys)
	if err != nil {
		t.Fatal(err)
	}
	// Legacy values: binary HPKE output, and one that starts like the
	// header without being it.
	legacy := append([]byte{0x01, 0xfe}, bytes.Repeat([]byte{0x5a}, 1100)...)
	almost := []byte(sealedKeyHeader[:len(sealedKeyHeader)-1] + "2 and more")
	// A grant and no sealed key.
	bad := append([]byte(sealedKeyHeader), grantOf("g")...)
	for pub, v := range map[string][]byte{owner: legacy, bob: almost, carol: bad} {
		if _, err := keys.Put(ctx, id+".1."+pub, v); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := st.GetRoomKey(ctx, id, 1, owner); err != nil || !bytes.Equal(got.Sealed, legacy) || got.Grant != nil {
		t.Errorf("legacy key = %+v, %v; want the bare bytes and no grant", got, err)
	}
	if got, err := st.GetRoomKey(ctx, id, 1, bob); err != nil || !bytes.Equal(got.Sealed, almost) || got.Grant != nil {
		t.Errorf("legacy key that starts almost like the header = %+v, %v; want the bare bytes and no grant", got, err)
	}
	if _, err := st.GetRoomKey(ctx, id, 1, carol); !errors.Is(err, kvstore.ErrInvalidRecord) || !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("key with a grant and no sealed key = %v, want ErrInvalidRecord (not found)", err)
	}
	grants, err := st.RoomGrants(ctx, room)
	if want := map[string][]byte{owner: nil, bob: nil}; err != nil || !reflect.DeepEqual(grants, want) {
		t.Errorf("grants = %x, %v; want empty grants for the legacy keys and none for the invalid one", grants, err)
	}
	if !strings.Contains(logs.String(), "invalid record treated as absent") {
		t.Error("the invalid key was not logged")
	}
}

// sealedKeyHeader starts the value of a room key stored with its grant.
const sealedKeyHeader = "unibus-sealed-key-v1"

// TestRoomKeyFormat pins the value of a room-key entry: the header, the
// grant and the sealed key, as another implementation would read them.
func TestRoomKeyFormat(t *testing.T) {
	ctx := context.Background()
	st, js := openStore(t, kvstore.DefaultConfig())
	owner := newUserKey(t)
	id := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1")); err != nil {
		t.Fatal(err)
	}
	keys, err := js.KeyValue(ctx, kvstore.BucketRoomKeys)
	if err != nil {
		t.Fatal(err)
	}
	e, err := keys.Get(ctx, id+".1."+owner)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat([]byte(sealedKeyHeader), grantOf("k1"), []byte("k1"))
	if !bytes.Equal(e.Value(), want) {
		t.Errorf("stored value %q, want %q", e.Value(), want)
	}
}

// TestSwappedRoomOwner: a room record whose owner was swapped behind the
// store's back (the ID names another owner) is not served; a room stored
// without a salt, by a test or an older version, still is.
func TestSwappedRoomOwner(t *testing.T) {
	ctx := context.Background()
	st, js := openStore(t, kvstore.DefaultConfig())
	owner, mallory := newUserKey(t), newUserKey(t)
	id, salt := subjects.NewRoomID(owner, subjects.ModeE2E)
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	unsalted, err := st.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	// mallory, made a member by the same hand, to see what ListRoomsForEndpoint serves.
	if _, err := st.AddMember(ctx, id, mallory, subjects.RoleMember, 1, sealedKey("k1")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, unsalted.ID, mallory, subjects.RoleMember, 1, sealedKey("k1")); err != nil {
		t.Fatal(err)
	}
	rooms, err := js.KeyValue(ctx, kvstore.BucketRooms)
	if err != nil {
		t.Fatal(err)
	}
	swap := func(r kvstore.Room) {
		t.Helper()
		r.Owner = mallory
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rooms.Put(ctx, r.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	swap(room)
	swap(unsalted)

	if _, err := st.GetRoom(ctx, id); !errors.Is(err, kvstore.ErrInvalidRecord) || !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("GetRoom of the swapped salted room = %v, want ErrInvalidRecord (not found)", err)
	}
	if got, err := st.GetRoom(ctx, unsalted.ID); err != nil || got.Owner != mallory {
		t.Errorf("GetRoom of the unsalted room = %+v, %v; want it served (nothing proves its owner)", got, err)
	}
	refs, err := st.ListRoomsForEndpoint(ctx, mallory)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].RoomID != unsalted.ID {
		t.Errorf("mallory's rooms = %+v, want only the unsalted one", refs)
	}
	// Nor can the store be made to write such a record.
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeE2E, Owner: mallory}, sealedKey("k1")); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CreateRoom of another's ID = %v, want ErrInvalid", err)
	}
}
