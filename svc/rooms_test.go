package svc_test

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

func TestRoomsCreate(t *testing.T) {
	e := newEnv(t)
	t.Run("e2e", func(t *testing.T) {
		key, id := sealedKey(t), subjects.NewRoomID()
		got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: id, Name: "ops", SealedKey: key})
		want, err := subjects.Room(id)
		if err != nil || got.RoomID != id || got.Subject != want || got.Mode != subjects.ModeE2E || got.History != subjects.HistoryNone ||
			got.Owner != e.alice.pub || got.Epoch != 1 || got.NextEpoch != 2 || got.Name != "ops" || got.CreatedAt.IsZero() {
			t.Fatalf("created %+v (subject %s, %v)", got, want, err)
		}
		k := call[subjects.KeyResponse](t, e.alice, subjects.RoomsKey, subjects.KeyRequest{RoomID: got.RoomID})
		if k.Epoch != 1 || !bytes.Equal(k.SealedKey, key) {
			t.Errorf("owner's key %+v", k)
		}
		before := e.snapshot(t)
		again := subjects.CreateRoomRequest{RoomID: id, SealedKey: key}
		wantError(t, e.alice.request(t, subjects.RoomsCreate, again), subjects.CodeConflict, "room "+id+" already exists")
		wantError(t, e.bob.request(t, subjects.RoomsCreate, again), subjects.CodeConflict, "room "+id+" already exists")
		e.unchanged(t, before)
	})
	t.Run("cleartext", func(t *testing.T) {
		got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone})
		if subjects.ValidateRoomID(got.RoomID) != nil || got.Mode != subjects.ModeCleartext || got.History != subjects.HistoryNone || got.Epoch != 0 || got.NextEpoch != 0 {
			t.Fatalf("created %+v", got)
		}
		id := subjects.NewRoomID()
		if got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: id, Mode: subjects.ModeCleartext}); got.RoomID != id {
			t.Fatalf("created %+v, want room %s", got, id)
		}
	})
	t.Run("refused", func(t *testing.T) {
		// A registered user that has not published an encryption key.
		fresh := e.newIdentity(t, "fresh")
		call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: fresh.pub})
		e.connect(t, fresh)

		before := e.snapshot(t)
		for _, tc := range []struct {
			name string
			from *user
			req  subjects.CreateRoomRequest
			want string
		}{
			{"e2e without a room ID", e.alice, subjects.CreateRoomRequest{SealedKey: []byte("k")}, "needs room_id"},
			{"bad room ID", e.alice, subjects.CreateRoomRequest{RoomID: "a.*", SealedKey: []byte("k")}, "room_id"},
			{"e2e without a sealed key", e.alice, subjects.CreateRoomRequest{RoomID: subjects.NewRoomID()}, "needs sealed_key"},
			{"cleartext with a sealed key", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, SealedKey: []byte("k")}, "omit sealed_key"},
			{"bad mode", e.alice, subjects.CreateRoomRequest{Mode: "secret", SealedKey: []byte("k")}, `mode must be "e2e" or "cleartext"`},
			{"bad history", e.alice, subjects.CreateRoomRequest{History: "forever", SealedKey: []byte("k")}, "history must be"},
			{"history kept", e.alice, subjects.CreateRoomRequest{History: "keep", SealedKey: []byte("k")}, `history must be "none" (the bus keeps no room history`},
			{"huge sealed key", e.alice, subjects.CreateRoomRequest{RoomID: subjects.NewRoomID(), SealedKey: make([]byte, svc.MaxSealedKeyBytes+1)}, "over the limit"},
			{"long name", e.alice, subjects.CreateRoomRequest{Name: string(bytes.Repeat([]byte("n"), svc.MaxNameBytes+1)), SealedKey: []byte("k")}, "name is"},
			{"no encryption key", fresh, subjects.CreateRoomRequest{RoomID: subjects.NewRoomID(), SealedKey: []byte("k")}, "users.setkey"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, tc.from.request(t, subjects.RoomsCreate, tc.req), subjects.CodeBadRequest, tc.want)
			})
		}
		e.unchanged(t, before)
	})
}

func TestRequireEncryptedRooms(t *testing.T) {
	for _, require := range []bool{true, false} {
		t.Run(fmt.Sprint("require=", require), func(t *testing.T) {
			e := newEnv(t, withConfig(func(c *svc.Config) { c.RequireEncryptedRooms = require }))
			e.createRoom(t, e.alice, subjects.ModeE2E)
			before := e.snapshot(t)
			r := e.alice.request(t, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext})
			if require {
				wantError(t, r, subjects.CodeForbidden, "requires encrypted rooms")
				e.unchanged(t, before)
				return
			}
			if got := decode[subjects.RoomInfo](t, r); got.Mode != subjects.ModeCleartext {
				t.Fatalf("created %+v", got)
			}
		})
	}
}

func TestRoomsGetAndMembers(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	for _, u := range []*user{e.alice, e.bob} {
		if got := call[subjects.RoomInfo](t, u, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}); got != room {
			t.Errorf("%s: get = %+v, want %+v", u.name, got, room)
		}
		got := call[subjects.MembersResponse](t, u, subjects.RoomsMembers, subjects.RoomRequest{RoomID: room.RoomID})
		want := []subjects.MemberInfo{
			{Pub: e.alice.pub, Role: subjects.RoleOwner, JoinedEpoch: 1, EncKey: e.alice.encKey, EncKeySig: e.alice.encKeySig},
			{Pub: e.bob.pub, Role: subjects.RoleMember, JoinedEpoch: 1, EncKey: e.bob.encKey, EncKeySig: e.bob.encKeySig},
		}
		if !reflect.DeepEqual(got.Members, want) {
			t.Errorf("%s: members = %+v, want %+v", u.name, got.Members, want)
		}
	}
	for _, subject := range []string{subjects.RoomsGet, subjects.RoomsMembers, subjects.RoomsLeave, subjects.RoomsKey} {
		wantError(t, e.carol.request(t, subject, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "you are not a member of room "+room.RoomID)
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{RoomID: "nosuchroom"}), subjects.CodeNotFound, "room nosuchroom not found")
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{RoomID: "a.*"}), subjects.CodeBadRequest, "room_id")
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{}), subjects.CodeBadRequest, "room_id is required")
	}
}

func TestRoomsMine(t *testing.T) {
	e := newEnv(t)
	r := e.carol.request(t, subjects.RoomsMine, nil)
	if string(r.Data) != `{"rooms":[]}` {
		t.Errorf("mine with no rooms = %s, want an empty list", r.Data)
	}
	a := e.createRoom(t, e.alice, subjects.ModeE2E)
	b := call[subjects.RoomInfo](t, e.bob, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext})
	e.invite(t, e.bob, b, e.alice)
	got := call[subjects.MineResponse](t, e.alice, subjects.RoomsMine, nil)
	want := map[string]subjects.RoomRef{
		a.RoomID: {RoomID: a.RoomID, Subject: a.Subject, Epoch: 1, History: subjects.HistoryNone, Role: subjects.RoleOwner, Mode: subjects.ModeE2E, Name: a.Name, Owner: e.alice.pub},
		b.RoomID: {RoomID: b.RoomID, Subject: b.Subject, Epoch: 0, History: subjects.HistoryNone, Role: subjects.RoleMember, Mode: subjects.ModeCleartext, Name: b.Name, Owner: e.bob.pub},
	}
	if len(got.Rooms) != 2 || got.Rooms[0].RoomID > got.Rooms[1].RoomID {
		t.Fatalf("mine = %+v, want 2 rooms sorted by ID", got)
	}
	for _, ref := range got.Rooms {
		if ref != want[ref.RoomID] {
			t.Errorf("room %+v, want %+v", ref, want[ref.RoomID])
		}
	}
}

func TestRoomsLeave(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)

	before := e.snapshot(t)
	wantError(t, e.alice.request(t, subjects.RoomsLeave, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeBadRequest, "the owner cannot leave")
	e.unchanged(t, before)

	if got := call[subjects.RoomInfo](t, e.bob, subjects.RoomsLeave, subjects.RoomRequest{RoomID: room.RoomID}); got.RoomID != room.RoomID {
		t.Fatalf("leave = %+v", got)
	}
	// Gone: no access, no room in mine, no longer a member; leaving again
	// is refused like any non-member's request.
	wantError(t, e.bob.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "not a member")
	if got := call[subjects.MineResponse](t, e.bob, subjects.RoomsMine, nil); len(got.Rooms) != 0 {
		t.Errorf("bob's rooms after leaving: %+v", got)
	}
	if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.RoomRequest{RoomID: room.RoomID}); len(got.Members) != 1 {
		t.Errorf("members after leaving: %+v", got)
	}
	wantError(t, e.bob.request(t, subjects.RoomsLeave, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "not a member")
	// Leaving does not rekey.
	if got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}); got.Epoch != 1 {
		t.Errorf("epoch after leaving = %d, want 1", got.Epoch)
	}
}

func TestRoomsKey(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	k1 := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	if k1.RoomID != room.RoomID || k1.Epoch != 1 || len(k1.SealedKey) == 0 {
		t.Fatalf("key = %+v", k1)
	}
	rekeyed := e.rekey(t, e.alice, room, e.alice, e.bob)
	latest := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	old := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: 1})
	if latest.Epoch != rekeyed.Epoch || !bytes.Equal(old.SealedKey, k1.SealedKey) || bytes.Equal(latest.SealedKey, old.SealedKey) {
		t.Errorf("latest %d, old %d: keys per epoch are mixed up", latest.Epoch, old.Epoch)
	}
	// An epoch with no key for the caller: before it joined, or not yet.
	e.invite(t, e.alice, rekeyed, e.carol)
	wantError(t, e.carol.request(t, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: 1}),
		subjects.CodeForbidden, fmt.Sprintf("you have no key for room %s at epoch 1", room.RoomID))
	wantError(t, e.carol.request(t, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: 99}),
		subjects.CodeForbidden, fmt.Sprintf("you have no key for room %s at epoch 99", room.RoomID))

	clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
	wantError(t, e.alice.request(t, subjects.RoomsKey, subjects.KeyRequest{RoomID: clear.RoomID}), subjects.CodeBadRequest, "cleartext")
}

func TestRoomsInvite(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	key := sealedKey(t)
	signed := func(owner *user, req subjects.InviteRequest) subjects.InviteRequest {
		if err := subjects.SignOwner(owner.kp, &req); err != nil {
			t.Fatal(err)
		}
		return req
	}
	good := subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, SealedKey: key}
	noEncKey := e.newIdentity(t, "noenckey")
	call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: noEncKey.pub})
	revoked := e.register(t, "revoked")
	call[subjects.UserInfo](t, e.admin, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: revoked.pub})
	stranger := e.newIdentity(t, "stranger")
	tamperedSig := signed(e.alice, good)
	tamperedSig.SealedKey = sealedKey(t)

	before := e.snapshot(t)
	for _, tc := range []struct {
		name string
		from *user
		req  subjects.InviteRequest
		code int
		want string
	}{
		{"not the owner", e.bob, signed(e.bob, good), subjects.CodeForbidden, "only the room owner may invite"},
		{"not the owner, owner-signed", e.bob, signed(e.alice, good), subjects.CodeForbidden, "only the room owner may invite"},
		{"no owner signature", e.alice, good, subjects.CodeUnauthenticated, "owner_sig"},
		{"owner signature by another key", e.alice, signed(e.bob, good), subjects.CodeUnauthenticated, "owner_sig"},
		{"payload changed after signing", e.alice, tamperedSig, subjects.CodeUnauthenticated, "owner_sig"},
		{"stale epoch", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 7, SealedKey: key}), subjects.CodeConflict, "is at epoch 1, not 7"},
		{"no sealed key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1}), subjects.CodeBadRequest, "sealed_key is required"},
		{"unregistered invitee", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: stranger.pub, Epoch: 1, SealedKey: key}), subjects.CodeNotFound, "is not registered"},
		{"revoked invitee", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: revoked.pub, Epoch: 1, SealedKey: key}), subjects.CodeForbidden, "revoked"},
		{"invitee without encryption key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: noEncKey.pub, Epoch: 1, SealedKey: key}), subjects.CodeConflict, "encryption key"},
		{"the owner", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.alice.pub, Epoch: 1, SealedKey: key}), subjects.CodeConflict, "already a member"},
		{"no such room", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: "nosuchroom", Pub: e.bob.pub, Epoch: 1, SealedKey: key}), subjects.CodeNotFound, "room nosuchroom not found"},
		{"bad invitee key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: "bob", Epoch: 1, SealedKey: key}), subjects.CodeBadRequest, "pub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.from.request(t, subjects.RoomsInvite, tc.req), tc.code, tc.want)
		})
	}
	e.unchanged(t, before)

	got := call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, signed(e.alice, good))
	if !reflect.DeepEqual(got, subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleMember, JoinedEpoch: 1}) {
		t.Fatalf("invited %+v", got)
	}
	if k := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID}); !bytes.Equal(k.SealedKey, key) {
		t.Errorf("bob's key is not the one the owner sealed")
	}
	wantError(t, e.alice.request(t, subjects.RoomsInvite, signed(e.alice, good)), subjects.CodeConflict, "already a member")

	t.Run("cleartext", func(t *testing.T) {
		clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
		req := signed(e.alice, subjects.InviteRequest{RoomID: clear.RoomID, Pub: e.carol.pub, Epoch: 1, SealedKey: key})
		wantError(t, e.alice.request(t, subjects.RoomsInvite, req), subjects.CodeBadRequest, "omit sealed_key")
		call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, signed(e.alice, subjects.InviteRequest{RoomID: clear.RoomID, Pub: e.carol.pub}))
	})
}
