package svc_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

func TestRoomsCreate(t *testing.T) {
	e := newEnv(t)
	t.Run("e2e", func(t *testing.T) {
		key, g := sealedKey(t), grant(t)
		id, salt := subjects.NewRoomID(e.alice.pub, subjects.ModeE2E)
		got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: id, Salt: salt, Name: "ops", SealedKey: key, Grant: g})
		want, err := subjects.Room(id)
		if err != nil || got.RoomID != id || got.Subject != want || got.Mode != subjects.ModeE2E || got.History != subjects.HistoryKeep || got.HistoryMaxAge != "" ||
			got.Owner != e.alice.pub || !bytes.Equal(got.Salt, salt) || got.Epoch != 1 || got.NextEpoch != 2 || got.Name != "ops" || got.CreatedAt.IsZero() {
			t.Fatalf("created %+v (subject %s, %v)", got, want, err)
		}
		if err := subjects.CheckRoomOwner(got.RoomID, got.Owner, got.Mode, got.Salt); err != nil {
			t.Errorf("the reply does not prove its owner: %v", err)
		}
		if again := call[subjects.RoomInfo](t, e.alice, subjects.RoomsGet, subjects.RoomRequest{RoomID: id}); !reflect.DeepEqual(again, got) {
			t.Errorf("get = %+v, want %+v", again, got)
		}
		k := call[subjects.KeyResponse](t, e.alice, subjects.RoomsKey, subjects.KeyRequest{RoomID: got.RoomID})
		if k.Epoch != 1 || !bytes.Equal(k.SealedKey, key) || !bytes.Equal(k.Grant, g) {
			t.Errorf("owner's key %+v, want the sealed key and grant it created the room with", k)
		}
		before := e.snapshot(t)
		again := subjects.CreateRoomRequest{RoomID: id, Salt: salt, SealedKey: key, Grant: g}
		wantError(t, e.alice.request(t, subjects.RoomsCreate, again), subjects.CodeConflict, "room "+id+" already exists")
		// Bob cannot even try: the ID is alice's.
		wantError(t, e.bob.request(t, subjects.RoomsCreate, again), subjects.CodeBadRequest, "room_id must be made from your own key")
		e.unchanged(t, before)
	})
	t.Run("cleartext", func(t *testing.T) {
		got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone})
		if subjects.ValidateRoomID(got.RoomID) != nil || got.Mode != subjects.ModeCleartext || got.History != subjects.HistoryNone || got.Epoch != 0 || got.NextEpoch != 0 {
			t.Fatalf("created %+v", got)
		}
		if err := subjects.CheckRoomOwner(got.RoomID, e.alice.pub, got.Mode, got.Salt); err != nil {
			t.Errorf("the ID the service made does not name its owner: %v", err)
		}
		id, salt := subjects.NewRoomID(e.alice.pub, subjects.ModeCleartext)
		if got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: id, Salt: salt, Mode: subjects.ModeCleartext}); got.RoomID != id || !bytes.Equal(got.Salt, salt) {
			t.Fatalf("created %+v, want room %s with its salt", got, id)
		}
	})
	t.Run("history", func(t *testing.T) {
		for _, tc := range []struct {
			req         subjects.CreateRoomRequest
			history     string
			maxAge      string
			storedAgeOf string
		}{
			{subjects.CreateRoomRequest{Mode: subjects.ModeCleartext}, subjects.HistoryKeep, "", ""},
			{subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryKeep, HistoryMaxAge: "72h"}, subjects.HistoryKeep, "72h0m0s", "72h"},
			{subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "1m"}, subjects.HistoryKeep, "1m0s", "1m"},
			{subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "720h"}, subjects.HistoryKeep, "720h0m0s", "720h"},
			{subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone}, subjects.HistoryNone, "", ""},
		} {
			got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, tc.req)
			if got.History != tc.history || got.HistoryMaxAge != tc.maxAge {
				t.Errorf("create %+v: history %q, max age %q; want %q, %q", tc.req, got.History, got.HistoryMaxAge, tc.history, tc.maxAge)
			}
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			stored, err := e.store.GetRoom(ctx, got.RoomID)
			cancel()
			want, _ := time.ParseDuration(cmp.Or(tc.storedAgeOf, "0s"))
			if err != nil || stored.History != tc.history || stored.HistoryMaxAge != want {
				t.Errorf("stored room %+v (%v): want history %q and max age %s", stored, err, tc.history, want)
			}
			if again := call[subjects.RoomInfo](t, e.alice, subjects.RoomsGet, subjects.RoomRequest{RoomID: got.RoomID}); !reflect.DeepEqual(again, got) {
				t.Errorf("get = %+v, want %+v", again, got)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		// A registered user that has not published an encryption key.
		fresh := e.newIdentity(t, "fresh")
		call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: fresh.pub})
		e.connect(t, fresh)
		ownID, ownSalt := subjects.NewRoomID(e.alice.pub, subjects.ModeE2E)
		bobsID, bobsSalt := subjects.NewRoomID(e.bob.pub, subjects.ModeE2E)
		freshID, freshSalt := subjects.NewRoomID(fresh.pub, subjects.ModeE2E)
		k, g := []byte("k"), grant(t)

		before := e.snapshot(t)
		for _, tc := range []struct {
			name string
			from *user
			req  subjects.CreateRoomRequest
			want string
		}{
			{"e2e without a room ID", e.alice, subjects.CreateRoomRequest{SealedKey: k, Grant: g}, "needs room_id and salt"},
			{"bad room ID", e.alice, subjects.CreateRoomRequest{RoomID: "a.*", Salt: ownSalt, SealedKey: k, Grant: g}, "room_id"},
			{"a room ID that reads as a name", e.alice, subjects.CreateRoomRequest{RoomID: "ops", Salt: ownSalt, SealedKey: k, Grant: g}, "room_id must be made from your own key"},
			{"room ID without salt", e.alice, subjects.CreateRoomRequest{RoomID: ownID, SealedKey: k, Grant: g}, "room_id needs its salt"},
			{"salt without room ID", e.alice, subjects.CreateRoomRequest{Salt: ownSalt, Mode: subjects.ModeCleartext}, "salt without room_id"},
			{"wrong salt", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: bobsSalt, SealedKey: k, Grant: g}, "not derived from its owner's key, mode and salt"},
			{"short salt", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt[:8], SealedKey: k, Grant: g}, "salt of 8 bytes, want 16"},
			{"someone else's room ID", e.alice, subjects.CreateRoomRequest{RoomID: bobsID, Salt: bobsSalt, SealedKey: k, Grant: g}, "room_id must be made from your own key"},
			{"someone else's cleartext room ID", e.alice, subjects.CreateRoomRequest{RoomID: bobsID, Salt: bobsSalt, Mode: subjects.ModeCleartext}, "room_id must be made from your own key"},
			{"e2e without a sealed key", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt, Grant: g}, "needs sealed_key"},
			{"e2e without a grant", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt, SealedKey: k}, "grant is required"},
			{"e2e grant too short", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt, SealedKey: k, Grant: g[:63]}, "grant is 63 bytes, want 64"},
			{"e2e grant too long", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt, SealedKey: k, Grant: append(bytes.Clone(g), 0)}, "grant is 65 bytes, want 64"},
			{"cleartext with a sealed key", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, SealedKey: k}, "omit sealed_key"},
			{"cleartext with a grant", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, Grant: g}, "omit grant"},
			{"bad mode", e.alice, subjects.CreateRoomRequest{Mode: "secret", SealedKey: k}, `mode must be "e2e" or "cleartext"`},
			{"bad history", e.alice, subjects.CreateRoomRequest{History: "forever", SealedKey: k}, `history must be "keep"`},
			{"history in capitals", e.alice, subjects.CreateRoomRequest{History: "KEEP", SealedKey: k}, `history must be "keep"`},
			{"max age without history", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone, HistoryMaxAge: "1h"}, "history_max_age goes with history"},
			{"max age not a duration", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "a week"}, "not a Go duration"},
			{"max age in days", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "7d"}, "not a Go duration"},
			{"max age too short", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "59s"}, "history_max_age must be from 1m0s to 720h0m0s"},
			{"max age negative", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "-1h"}, "history_max_age must be from"},
			{"max age beyond the deployment's", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "721h"}, "history_max_age must be from 1m0s to 720h0m0s"},
			{"max age too long a text", e.alice, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: strings.Repeat("1", 40) + "h"}, "give a Go duration"},
			{"huge sealed key", e.alice, subjects.CreateRoomRequest{RoomID: ownID, Salt: ownSalt, SealedKey: make([]byte, svc.MaxSealedKeyBytes+1), Grant: g}, "over the limit"},
			{"long name", e.alice, subjects.CreateRoomRequest{Name: string(bytes.Repeat([]byte("n"), svc.MaxNameBytes+1)), SealedKey: k}, "name is"},
			{"no encryption key", fresh, subjects.CreateRoomRequest{RoomID: freshID, Salt: freshSalt, SealedKey: k, Grant: g}, "users.setkey"},
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
	id, salt := subjects.NewRoomID(e.alice.pub, subjects.ModeE2E)
	aliceGrant, bobGrant := grant(t), grant(t)
	room := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: id, Salt: salt, SealedKey: sealedKey(t), Grant: aliceGrant})
	invite := subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, SealedKey: sealedKey(t), Grant: bobGrant}
	if err := subjects.SignOwner(e.alice.kp, &invite); err != nil {
		t.Fatal(err)
	}
	call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, invite)
	e.accept(t, e.bob, room)
	alice := withBinding(subjects.MemberInfo{Pub: e.alice.pub, Role: subjects.RoleOwner, JoinedEpoch: 1, Grant: aliceGrant}, e.alice)
	bob := withBinding(subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleMember, JoinedEpoch: 1, Grant: bobGrant}, e.bob)
	for _, u := range []*user{e.alice, e.bob} {
		if got := call[subjects.RoomInfo](t, u, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}); !reflect.DeepEqual(got, room) {
			t.Errorf("%s: get = %+v, want %+v", u.name, got, room)
		}
		got := call[subjects.MembersResponse](t, u, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
		if want := []subjects.MemberInfo{alice, bob}; !reflect.DeepEqual(got.Members, want) {
			t.Errorf("%s: members = %+v, want %+v", u.name, got.Members, want)
		}
	}
	t.Run("one user", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			from *user
			pub  string
			want []subjects.MemberInfo
		}{
			{"a member", e.alice, e.bob.pub, []subjects.MemberInfo{bob}},
			{"a member, spelled in lower case", e.alice, strings.ToLower(e.bob.pub), []subjects.MemberInfo{bob}},
			{"the owner", e.bob, e.alice.pub, []subjects.MemberInfo{alice}},
			{"itself", e.bob, e.bob.pub, []subjects.MemberInfo{bob}},
			{"a registered non-member", e.bob, e.carol.pub, []subjects.MemberInfo{}},
			{"an unregistered key", e.bob, e.newIdentity(t, "nobody").pub, []subjects.MemberInfo{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := call[subjects.MembersResponse](t, tc.from, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: tc.pub})
				if !reflect.DeepEqual(got.Members, tc.want) {
					t.Errorf("members with pub = %+v, want %+v", got.Members, tc.want)
				}
			})
		}
		wantError(t, e.alice.request(t, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: "bob"}), subjects.CodeBadRequest, "pub")
		wantError(t, e.carol.request(t, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.alice.pub}), subjects.CodeForbidden, "you are not a member of room "+room.RoomID)
	})
	t.Run("grants follow the epoch", func(t *testing.T) {
		req := rekeyRequest(t, e.alice, room, e.alice, e.bob)
		rekeyed := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRekey, req)
		got := call[subjects.MembersResponse](t, e.bob, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
		if len(got.Members) != 2 || !bytes.Equal(got.Members[0].Grant, req.Grants[e.alice.pub]) || !bytes.Equal(got.Members[1].Grant, req.Grants[e.bob.pub]) {
			t.Errorf("members at epoch %d = %+v, want the grants of the rekey", rekeyed.Epoch, got.Members)
		}
		one := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.bob.pub})
		if len(one.Members) != 1 || !bytes.Equal(one.Members[0].Grant, req.Grants[e.bob.pub]) {
			t.Errorf("bob at epoch %d = %+v, want the grant of the rekey", rekeyed.Epoch, one.Members)
		}
	})
	t.Run("cleartext", func(t *testing.T) {
		clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
		e.invite(t, e.alice, clear, e.bob)
		got := call[subjects.MembersResponse](t, e.bob, subjects.RoomsMembers, subjects.MembersRequest{RoomID: clear.RoomID})
		want := []subjects.MemberInfo{
			withBinding(subjects.MemberInfo{Pub: e.alice.pub, Role: subjects.RoleOwner}, e.alice),
			withBinding(subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleMember}, e.bob),
		}
		if !reflect.DeepEqual(got.Members, want) {
			t.Errorf("cleartext members = %+v, want %+v", got.Members, want)
		}
	})
	for _, subject := range []string{subjects.RoomsGet, subjects.RoomsMembers, subjects.RoomsLeave, subjects.RoomsKey} {
		wantError(t, e.carol.request(t, subject, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "you are not a member of room "+room.RoomID)
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{RoomID: "nosuchroom"}), subjects.CodeNotFound, "room nosuchroom not found")
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{RoomID: "a.*"}), subjects.CodeBadRequest, "room_id")
		wantError(t, e.alice.request(t, subject, subjects.RoomRequest{}), subjects.CodeBadRequest, "room_id is required")
	}
}

// TestRevokedMember: a revoked member is no longer a member for anyone
// who asks, and a rekey leaves it out, so that it gets no key of a later
// epoch: the revocation sticks even though its member record stays.
func TestRevokedMember(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	e.invite(t, e.alice, room, e.carol)
	e.revoke(t, e.carol, e.admin)

	got := call[subjects.MembersResponse](t, e.bob, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
	if len(got.Members) != 2 || got.Members[0].Pub != e.alice.pub || got.Members[1].Pub != e.bob.pub {
		t.Errorf("members = %+v, want alice and bob without the revoked carol", got.Members)
	}
	if got := call[subjects.MembersResponse](t, e.bob, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.carol.pub}); len(got.Members) != 0 {
		t.Errorf("members with pub of the revoked carol = %+v, want none", got.Members)
	}

	before := e.snapshot(t)
	wantError(t, e.alice.request(t, subjects.RoomsRekey, rekeyRequest(t, e.alice, room, e.alice, e.bob, e.carol)),
		subjects.CodeConflict, "1 for non-members or revoked users")
	e.unchanged(t, before)
	rekeyed := e.rekey(t, e.alice, room, e.alice, e.bob)
	if rekeyed.Epoch != room.NextEpoch {
		t.Fatalf("rekeyed without the revoked member: %+v", rekeyed)
	}
	// The next rekey leaves carol out as well; so does a removal's.
	rekeyed = e.rekey(t, e.alice, rekeyed, e.alice, e.bob)
	remove := subjects.RemoveRequest{RoomID: room.RoomID, Pub: e.bob.pub, Rekey: &subjects.RekeyBundle{
		FromEpoch: rekeyed.Epoch, ToEpoch: rekeyed.NextEpoch,
		Keys:   map[string][]byte{e.alice.pub: sealedKey(t)},
		Grants: map[string][]byte{e.alice.pub: grant(t)},
	}}
	if err := subjects.SignOwner(e.alice.kp, &remove); err != nil {
		t.Fatal(err)
	}
	if got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, remove); got.Epoch != rekeyed.NextEpoch {
		t.Errorf("removed bob with a rekey for alice alone: %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for _, epoch := range []uint64{room.NextEpoch, rekeyed.Epoch, rekeyed.NextEpoch} {
		if _, err := e.store.GetRoomKey(ctx, room.RoomID, epoch, e.carol.pub); !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("the revoked carol's key of epoch %d: %v, want none", epoch, err)
		}
	}
}

func TestRoomsMine(t *testing.T) {
	e := newEnv(t)
	r := e.carol.request(t, subjects.RoomsMine, nil)
	if string(r.Data) != `{"rooms":[],"invitations":[]}` {
		t.Errorf("mine with no rooms = %s, want an empty list", r.Data)
	}
	a := e.createRoom(t, e.alice, subjects.ModeE2E)
	b := call[subjects.RoomInfo](t, e.bob, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone})
	e.invite(t, e.bob, b, e.alice)
	got := call[subjects.MineResponse](t, e.alice, subjects.RoomsMine, nil)
	want := map[string]subjects.RoomRef{
		a.RoomID: {RoomID: a.RoomID, Subject: a.Subject, Epoch: 1, History: subjects.HistoryKeep, Role: subjects.RoleOwner, Mode: subjects.ModeE2E, Name: a.Name, Owner: e.alice.pub, Salt: a.Salt},
		b.RoomID: {RoomID: b.RoomID, Subject: b.Subject, Epoch: 0, History: subjects.HistoryNone, Role: subjects.RoleMember, Mode: subjects.ModeCleartext, Name: b.Name, Owner: e.bob.pub, Salt: b.Salt},
	}
	if len(got.Rooms) != 2 || got.Rooms[0].RoomID > got.Rooms[1].RoomID {
		t.Fatalf("mine = %+v, want 2 rooms sorted by ID", got)
	}
	for _, ref := range got.Rooms {
		if err := subjects.CheckRoomOwner(ref.RoomID, ref.Owner, ref.Mode, ref.Salt); err != nil {
			t.Errorf("room %s does not prove its owner: %v", ref.RoomID, err)
		}
		if !reflect.DeepEqual(ref, want[ref.RoomID]) {
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
	if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}); len(got.Members) != 1 {
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
	if k1.RoomID != room.RoomID || k1.Epoch != 1 || len(k1.SealedKey) == 0 || len(k1.Grant) != subjects.GrantLen {
		t.Fatalf("key = %+v", k1)
	}
	req := rekeyRequest(t, e.alice, room, e.alice, e.bob)
	rekeyed := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRekey, req)
	latest := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	old := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: 1})
	if latest.Epoch != rekeyed.Epoch || !bytes.Equal(old.SealedKey, k1.SealedKey) || bytes.Equal(latest.SealedKey, old.SealedKey) {
		t.Errorf("latest %d, old %d: keys per epoch are mixed up", latest.Epoch, old.Epoch)
	}
	if !bytes.Equal(latest.SealedKey, req.Keys[e.bob.pub]) || !bytes.Equal(latest.Grant, req.Grants[e.bob.pub]) || !bytes.Equal(old.Grant, k1.Grant) {
		t.Errorf("the key of epoch %d is not the sealed key and grant of the rekey, or the grants per epoch are mixed up", latest.Epoch)
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
	g := grant(t)
	good := subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, SealedKey: key, Grant: g}
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
		{"stale epoch", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 7, SealedKey: key, Grant: g}), subjects.CodeConflict, "is at epoch 1, not 7"},
		{"no sealed key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, Grant: g}), subjects.CodeBadRequest, "sealed_key is required"},
		{"no grant", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, SealedKey: key}), subjects.CodeBadRequest, "grant is required"},
		{"grant too short", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.bob.pub, Epoch: 1, SealedKey: key, Grant: g[:32]}), subjects.CodeBadRequest, "grant is 32 bytes, want 64"},
		{"grant changed after signing", e.alice, func() subjects.InviteRequest {
			r := signed(e.alice, good)
			r.Grant = grant(t)
			return r
		}(), subjects.CodeUnauthenticated, "owner_sig"},
		{"unregistered invitee", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: stranger.pub, Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeNotFound, "is not registered"},
		{"revoked invitee", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: revoked.pub, Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeForbidden, "revoked"},
		{"invitee without encryption key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: noEncKey.pub, Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeConflict, "encryption key"},
		{"the owner", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: e.alice.pub, Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeConflict, "already a member"},
		{"no such room", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: "nosuchroom", Pub: e.bob.pub, Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeNotFound, "room nosuchroom not found"},
		{"bad invitee key", e.alice, signed(e.alice, subjects.InviteRequest{RoomID: room.RoomID, Pub: "bob", Epoch: 1, SealedKey: key, Grant: g}), subjects.CodeBadRequest, "pub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.from.request(t, subjects.RoomsInvite, tc.req), tc.code, tc.want)
		})
	}
	e.unchanged(t, before)

	got := call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, signed(e.alice, good))
	if !reflect.DeepEqual(got, subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleInvited, JoinedEpoch: 1}) {
		t.Fatalf("invited %+v", got)
	}
	wantError(t, e.alice.request(t, subjects.RoomsInvite, signed(e.alice, good)), subjects.CodeConflict, "already invited", "has not answered yet")
	e.accept(t, e.bob, room)
	if k := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID}); !bytes.Equal(k.SealedKey, key) || !bytes.Equal(k.Grant, g) {
		t.Errorf("bob's key is not the one the owner sealed and granted")
	}
	wantError(t, e.alice.request(t, subjects.RoomsInvite, signed(e.alice, good)), subjects.CodeConflict, "already a member")

	t.Run("cleartext", func(t *testing.T) {
		clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
		req := signed(e.alice, subjects.InviteRequest{RoomID: clear.RoomID, Pub: e.carol.pub, Epoch: 1, SealedKey: key})
		wantError(t, e.alice.request(t, subjects.RoomsInvite, req), subjects.CodeBadRequest, "omit sealed_key, grant and epoch")
		req = signed(e.alice, subjects.InviteRequest{RoomID: clear.RoomID, Pub: e.carol.pub, Grant: g})
		wantError(t, e.alice.request(t, subjects.RoomsInvite, req), subjects.CodeBadRequest, "omit sealed_key, grant and epoch")
		if got := call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, signed(e.alice, subjects.InviteRequest{RoomID: clear.RoomID, Pub: e.carol.pub})); got.Role != subjects.RoleInvited || got.JoinedEpoch != 0 {
			t.Errorf("invited %+v", got)
		}
	})
}

// withBinding is m with u's encryption key and binding, as the members
// list shows them.
func withBinding(m subjects.MemberInfo, u *user) subjects.MemberInfo {
	m.EncKey, m.EncKeySig, m.EncKeyVersion, m.EncKeyIssuedAt = u.encKey, u.encKeySig, 1, u.encKeyIssuedAt
	return m
}
