package kvstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

var invitationCases = []storeCase{
	{"InvitationsGrantNothing", testInvitationsGrantNothing},
	{"InvitationRefusals", testInvitationRefusals},
	{"RekeyCoversInvitees", testRekeyCoversInvitees},
	{"AcceptCompletesAfterCrash", testAcceptCompletesAfterCrash},
	{"InvitationExpiryAndForgery", testInvitationExpiryAndForgery},
	{"OutdatedInvitation", testOutdatedInvitation},
}

// invitationRoom makes an encrypted room with an owner-bound ID and
// returns it with its owner.
func invitationRoom(t *testing.T, st *suiteStore) (kvstore.Room, string) {
	t.Helper()
	owner := natstest.NewUserKey(t)
	id, salt := subjects.NewRoomID(owner, subjects.ModeE2E)
	room, err := st.CreateRoom(context.Background(), kvstore.Room{ID: id, Salt: salt, Name: "ops", Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	return room, owner
}

// putRaw writes v (JSON) under key in bucket behind the store's back.
func (s *suiteStore) putRaw(t *testing.T, bucket, key string, v any) {
	t.Helper()
	defer s.synced()
	ctx := context.Background()
	kv, err := s.e.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		t.Fatal(err)
	}
}

// deleteRaw deletes key in bucket behind the store's back.
func (s *suiteStore) deleteRaw(t *testing.T, bucket, key string) {
	t.Helper()
	defer s.synced()
	ctx := context.Background()
	kv, err := s.e.js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// testInvitationsGrantNothing: an invitation writes no member record and
// no index entry, so nothing that grants access (the callout's leader
// read included) or counts against the invitee's quota sees it; it is
// listed for the invitee and for the room. Accepting it makes the member,
// with the invitation's epoch, and removes it.
func testInvitationsGrantNothing(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, owner := invitationRoom(t, st)
	bob := natstest.NewUserKey(t)
	before := time.Now().Add(-time.Second)
	inv, err := st.Invite(ctx, room.ID, bob, room.Epoch, sealedKey("k1-bob"))
	if err != nil {
		t.Fatal(err)
	}
	want := kvstore.Invitation{RoomID: room.ID, Pub: bob, InvitedBy: owner, Epoch: 1, InvitedAt: inv.InvitedAt, Name: "ops", Mode: subjects.ModeE2E, Owner: owner, Salt: room.Salt}
	if !reflect.DeepEqual(inv, want) || inv.InvitedAt.Before(before) || !inv.ExpiresAt().Equal(inv.InvitedAt.Add(kvstore.InvitationTTL)) {
		t.Fatalf("invitation %+v, want %+v", inv, want)
	}

	if _, err := st.GetMember(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("invitee's membership = %v, want none", err)
	}
	if refs, err := st.ListRoomsForEndpoint(ctx, bob); err != nil || len(refs) != 0 {
		t.Errorf("ListRoomsForEndpoint(invitee) = %+v, %v; want no room", refs, err)
	}
	if n, err := st.CountRoomsForEndpoint(ctx, bob); err != nil || n != 0 {
		t.Errorf("invitee's room count = %d, %v; want 0", n, err)
	}
	if members, err := st.ListMembers(ctx, room.ID); err != nil || len(members) != 1 {
		t.Errorf("members = %+v, %v; want the owner alone", members, err)
	}
	if got, err := st.GetInvitation(ctx, room.ID, bob); err != nil || !reflect.DeepEqual(got, inv) {
		t.Errorf("GetInvitation = %+v, %v", got, err)
	}
	if got, err := st.ListInvitations(ctx, bob); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], inv) {
		t.Errorf("ListInvitations(invitee) = %+v, %v", got, err)
	}
	if got, err := st.ListRoomInvitations(ctx, room.ID); err != nil || len(got) != 1 || got[0].Pub != bob {
		t.Errorf("ListRoomInvitations = %+v, %v", got, err)
	}
	if n, err := st.CountRoomInvitations(ctx, room.ID); err != nil || n != 1 {
		t.Errorf("CountRoomInvitations = %d, %v; want 1", n, err)
	}
	if k, err := st.GetRoomKey(ctx, room.ID, 1, bob); err != nil || string(k.Sealed) != "k1-bob" {
		t.Errorf("the invitee's sealed key = %q, %v", k.Sealed, err)
	}

	m, err := st.AcceptInvitation(ctx, room.ID, bob)
	if err != nil {
		t.Fatal(err)
	}
	if m.RoomID != room.ID || m.Pub != bob || m.Role != subjects.RoleMember || m.JoinedEpoch != 1 {
		t.Errorf("member %+v", m)
	}
	refs, err := st.ListRoomsForEndpoint(ctx, bob)
	if err != nil || len(refs) != 1 || refs[0].RoomID != room.ID || refs[0].Role != subjects.RoleMember {
		t.Errorf("rooms of the new member = %+v, %v", refs, err)
	}
	if _, err := st.GetInvitation(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the accepted invitation = %v, want gone", err)
	}
	if got, err := st.ListInvitations(ctx, bob); err != nil || len(got) != 0 {
		t.Errorf("invitations after accepting = %+v, %v", got, err)
	}
	// Accepting again is the same member; cancelling, nothing to cancel.
	seqs := bucketSeqs(t, e)
	if again, err := st.AcceptInvitation(ctx, room.ID, bob); err != nil || again != m {
		t.Errorf("accept again = %+v, %v; want %+v", again, err, m)
	}
	if _, err := st.CancelInvitation(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("cancel after accepting = %v, want not found", err)
	}
	if after := bucketSeqs(t, e); !reflect.DeepEqual(after, seqs) {
		t.Errorf("a repeated accept or a cancel of nothing wrote: %v → %v", seqs, after)
	}

	// Cancelled, an invitation is gone, and its invitee has nothing.
	carol := natstest.NewUserKey(t)
	if _, err := st.Invite(ctx, room.ID, carol, 1, sealedKey("k1-carol")); err != nil {
		t.Fatal(err)
	}
	if got, err := st.CancelInvitation(ctx, room.ID, carol); err != nil || got.Pub != carol {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	if _, err := st.AcceptInvitation(ctx, room.ID, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("accept after cancel = %v, want not found", err)
	}
	if _, err := st.GetMember(ctx, room.ID, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("carol's membership after cancel = %v, want none", err)
	}

	// A cleartext room: no key, epoch 0.
	id, salt := subjects.NewRoomID(owner, subjects.ModeCleartext)
	clear, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{})
	if err != nil {
		t.Fatal(err)
	}
	if inv, err := st.Invite(ctx, clear.ID, carol, 0, kvstore.SealedKey{}); err != nil || inv.Epoch != 0 || inv.Mode != subjects.ModeCleartext {
		t.Fatalf("cleartext invitation = %+v, %v", inv, err)
	}
	if m, err := st.AcceptInvitation(ctx, clear.ID, carol); err != nil || m.JoinedEpoch != 0 {
		t.Errorf("cleartext accept = %+v, %v", m, err)
	}
}

// testInvitationRefusals: what an invitation refuses stores nothing.
func testInvitationRefusals(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, owner := invitationRoom(t, st)
	bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t)
	if _, err := st.Invite(ctx, room.ID, bob, 1, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, room.ID, carol, subjects.RoleMember, 1, sealedKey("k1-carol")); err != nil {
		t.Fatal(err)
	}
	seqs := bucketSeqs(t, e)
	for _, tc := range []struct {
		name  string
		room  string
		pub   string
		epoch uint64
		key   kvstore.SealedKey
		want  error
	}{
		{"pending", room.ID, bob, 1, sealedKey("again"), kvstore.ErrAlreadyInvited},
		{"a member", room.ID, carol, 1, sealedKey("again"), kvstore.ErrAlreadyMember},
		{"the owner", room.ID, owner, 1, sealedKey("again"), kvstore.ErrAlreadyMember},
		{"another epoch", room.ID, natstest.NewUserKey(t), 2, sealedKey("k2"), kvstore.ErrConflict},
		{"no sealed key", room.ID, natstest.NewUserKey(t), 1, kvstore.SealedKey{Grant: grantOf("g")}, kvstore.ErrInvalid},
		{"no grant", room.ID, natstest.NewUserKey(t), 1, kvstore.SealedKey{Sealed: []byte("k")}, kvstore.ErrInvalid},
		{"no such room", anyRoomID(), natstest.NewUserKey(t), 1, sealedKey("k"), kvstore.ErrNotFound},
		{"bad room ID", "a.b", natstest.NewUserKey(t), 1, sealedKey("k"), kvstore.ErrInvalid},
		{"bad invitee", room.ID, "bob", 1, sealedKey("k"), kvstore.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.Invite(ctx, tc.room, tc.pub, tc.epoch, tc.key); !errors.Is(err, tc.want) {
				t.Errorf("Invite = %v, want %v", err, tc.want)
			}
		})
	}
	if errors.Is(kvstore.ErrAlreadyInvited, kvstore.ErrAlreadyMember) || !errors.Is(kvstore.ErrAlreadyInvited, kvstore.ErrExists) || !errors.Is(kvstore.ErrAlreadyMember, kvstore.ErrExists) {
		t.Error("ErrAlreadyInvited and ErrAlreadyMember must be told apart and both match ErrExists")
	}
	if after := bucketSeqs(t, e); !reflect.DeepEqual(after, seqs) {
		t.Errorf("refused invitations wrote: %v → %v", seqs, after)
	}
	if k, err := st.GetRoomKey(ctx, room.ID, 1, bob); err != nil || string(k.Sealed) != "k1-bob" {
		t.Errorf("the pending invitee's key = %q, %v; want the first invitation's", k.Sealed, err)
	}
	for _, tc := range []struct {
		name, room, pub string
		want            error
	}{
		{"no invitation", room.ID, natstest.NewUserKey(t), kvstore.ErrNotFound},
		{"no such room", anyRoomID(), bob, kvstore.ErrNotFound},
		{"bad room ID", "a.*", bob, kvstore.ErrInvalid},
		{"bad invitee", room.ID, "bob", kvstore.ErrInvalid},
	} {
		t.Run("accept "+tc.name, func(t *testing.T) {
			if _, err := st.AcceptInvitation(ctx, tc.room, tc.pub); !errors.Is(err, tc.want) {
				t.Errorf("AcceptInvitation = %v, want %v", err, tc.want)
			}
			if _, err := st.CancelInvitation(ctx, tc.room, tc.pub); !errors.Is(err, tc.want) {
				t.Errorf("CancelInvitation = %v, want %v", err, tc.want)
			}
		})
	}
	if after := bucketSeqs(t, e); !reflect.DeepEqual(after, seqs) {
		t.Errorf("refused answers wrote: %v → %v", seqs, after)
	}
}

// testRekeyCoversInvitees: a rekey must seal to the pending invitees as to
// the members, and an invitee that accepts after it holds both epochs'
// keys.
func testRekeyCoversInvitees(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, owner := invitationRoom(t, st)
	bob := natstest.NewUserKey(t)
	if _, err := st.Invite(ctx, room.ID, bob, 1, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	seqs := bucketSeqs(t, e)
	if _, err := st.RekeyTo(ctx, room.ID, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey without the invitee = %v, want ErrConflict", err)
	}
	// The refused rekey claimed an epoch number and nothing else.
	seqs[kvstore.BucketRooms]++
	if after := bucketSeqs(t, e); !reflect.DeepEqual(after, seqs) {
		t.Errorf("the refused rekey wrote: %v → %v", seqs, after)
	}
	epoch, err := st.RekeyTo(ctx, room.ID, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2"), bob: sealedKey("k2-bob")})
	if err != nil {
		t.Fatal(err)
	}
	grants, err := st.RoomGrants(ctx, kvstore.Room{ID: room.ID, Mode: subjects.ModeE2E, Epoch: epoch})
	if err != nil || len(grants[bob]) != subjects.GrantLen {
		t.Errorf("grants of epoch %d = %v, %v; want the invitee's", epoch, grants, err)
	}
	m, err := st.AcceptInvitation(ctx, room.ID, bob)
	if err != nil {
		t.Fatal(err)
	}
	if m.JoinedEpoch != 1 {
		t.Errorf("joined at epoch %d, want 1 (the invitation's)", m.JoinedEpoch)
	}
	for want, ep := range map[string]uint64{"k1-bob": 1, "k2-bob": epoch} {
		if k, err := st.GetRoomKey(ctx, room.ID, ep, bob); err != nil || string(k.Sealed) != want {
			t.Errorf("bob's key of epoch %d = %q, %v; want %q", ep, k.Sealed, err, want)
		}
	}
	// A member now, it must be covered as one; a cancelled invitee not.
	carol := natstest.NewUserKey(t)
	if _, err := st.Invite(ctx, room.ID, carol, epoch, sealedKey("k2-carol")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CancelInvitation(ctx, room.ID, carol); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RekeyTo(ctx, room.ID, epoch, 0, map[string]kvstore.SealedKey{owner: sealedKey("k3"), bob: sealedKey("k3"), carol: sealedKey("k3")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Errorf("rekey including a cancelled invitee = %v, want ErrConflict", err)
	}
	r, err := st.GetRoom(ctx, room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RekeyTo(ctx, room.ID, r.Epoch, 0, map[string]kvstore.SealedKey{owner: sealedKey("k3"), bob: sealedKey("k3")}); err != nil {
		t.Errorf("rekey of the owner and the new member: %v", err)
	}
}

// testAcceptCompletesAfterCrash: an acceptance that crashed after writing
// the member record is completed by the retry; a member record without an
// index entry and without an invitation (a removal that crashed after
// deleting the index) is never completed into access.
func testAcceptCompletesAfterCrash(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, _ := invitationRoom(t, st)
	bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t)
	if _, err := st.Invite(ctx, room.ID, bob, 1, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	// The first write of an acceptance, and then a crash.
	st.putRaw(t, kvstore.BucketMembers, room.ID+"."+bob, kvstore.Member{RoomID: room.ID, Pub: bob, Role: subjects.RoleMember, JoinedEpoch: 1, AddedAt: time.Now().UTC()})
	if refs, err := st.ListRoomsForEndpoint(ctx, bob); err != nil || len(refs) != 0 {
		t.Fatalf("half-accepted: rooms %+v, %v; want none", refs, err)
	}
	if _, err := st.AcceptInvitation(ctx, room.ID, bob); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if refs, err := st.ListRoomsForEndpoint(ctx, bob); err != nil || len(refs) != 1 {
		t.Errorf("after the retry: rooms %+v, %v; want the room", refs, err)
	}
	if _, err := st.GetInvitation(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the invitation after the retry = %v, want gone", err)
	}

	// carol, a member whose removal crashed after the index went.
	if _, err := st.AddMember(ctx, room.ID, carol, subjects.RoleMember, 1, sealedKey("k1-carol")); err != nil {
		t.Fatal(err)
	}
	st.deleteRaw(t, kvstore.BucketRoomsByMember, carol+"."+room.ID)
	if _, err := st.AcceptInvitation(ctx, room.ID, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("accept by a half-removed member = %v, want not found", err)
	}
	if refs, err := st.ListRoomsForEndpoint(ctx, carol); err != nil || len(refs) != 0 {
		t.Errorf("the half-removed member's rooms = %+v, %v; want none", refs, err)
	}
}

// testInvitationExpiryAndForgery: an invitation the bucket still holds
// past kvstore.InvitationTTL, or one whose content does not fit its key or
// was not made by the room's owner, is absent: not read, listed, accepted
// or covered by a rekey, and a new invitation replaces it.
func testInvitationExpiryAndForgery(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, owner := invitationRoom(t, st)
	bob, mallory := natstest.NewUserKey(t), natstest.NewUserKey(t)
	valid := func(pub string) kvstore.Invitation {
		return kvstore.Invitation{RoomID: room.ID, Pub: pub, InvitedBy: owner, Epoch: 1, InvitedAt: time.Now().UTC(), Mode: subjects.ModeE2E, Owner: owner, Salt: room.Salt}
	}
	expired := valid(bob)
	expired.InvitedAt = time.Now().Add(-kvstore.InvitationTTL - time.Minute).UTC()
	st.putRaw(t, kvstore.BucketInvitations, bob+"."+room.ID, expired)
	forgeries := map[string]kvstore.Invitation{}
	byMallory := valid(natstest.NewUserKey(t))
	byMallory.InvitedBy = mallory
	forgeries["invited by someone else"] = byMallory
	otherRoom := valid(natstest.NewUserKey(t))
	otherRoom.RoomID = anyRoomID()
	forgeries["of another room"] = otherRoom
	swapped := valid(natstest.NewUserKey(t))
	swapped.Owner, swapped.InvitedBy = mallory, mallory
	forgeries["with an owner its salt does not name"] = swapped
	noTime := valid(natstest.NewUserKey(t))
	noTime.InvitedAt = time.Time{}
	forgeries["without a time"] = noTime
	for _, inv := range forgeries {
		st.putRaw(t, kvstore.BucketInvitations, inv.Pub+"."+room.ID, inv)
	}
	for name, inv := range map[string]kvstore.Invitation{"expired": expired, "invited by someone else": byMallory, "of another room": otherRoom,
		"with an owner its salt does not name": swapped, "without a time": noTime} {
		if _, err := st.GetInvitation(ctx, room.ID, inv.Pub); !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("%s: GetInvitation = %v, want not found", name, err)
		}
		if _, err := st.AcceptInvitation(ctx, room.ID, inv.Pub); !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("%s: AcceptInvitation = %v, want not found", name, err)
		}
	}
	if got, err := st.ListRoomInvitations(ctx, room.ID); err != nil || len(got) != 0 {
		t.Errorf("ListRoomInvitations = %+v, %v; want none", got, err)
	}
	if got, err := st.ListInvitations(ctx, bob); err != nil || len(got) != 0 {
		t.Errorf("ListInvitations(bob) = %+v, %v; want none", got, err)
	}
	if _, err := st.RekeyTo(ctx, room.ID, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2")}); err != nil {
		t.Fatalf("rekey of the owner alone: %v", err)
	}
	r, err := st.GetRoom(ctx, room.ID)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := st.Invite(ctx, room.ID, bob, r.Epoch, sealedKey("k2-bob"))
	if err != nil || !inv.InvitedAt.After(expired.InvitedAt) {
		t.Fatalf("invite over an expired invitation = %+v, %v", inv, err)
	}
	if _, err := st.AcceptInvitation(ctx, room.ID, bob); err != nil {
		t.Errorf("accept the new invitation: %v", err)
	}
}

// testOutdatedInvitation: an invitation whose invitee holds no key of the
// room's current epoch cannot be accepted (ErrInvitationStale, matching
// ErrConflict); it is removed and no member is left behind.
func testOutdatedInvitation(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	room, owner := invitationRoom(t, st)
	bob := natstest.NewUserKey(t)
	if _, err := st.RekeyTo(ctx, room.ID, 1, 0, map[string]kvstore.SealedKey{owner: sealedKey("k2")}); err != nil {
		t.Fatal(err)
	}
	// An invitation of epoch 1 that a rekey to epoch 2 did not cover (it
	// lost a race, or the invitee was revoked meanwhile).
	st.putRaw(t, kvstore.BucketInvitations, bob+"."+room.ID, kvstore.Invitation{
		RoomID: room.ID, Pub: bob, InvitedBy: owner, Epoch: 1, InvitedAt: time.Now().UTC(), Mode: subjects.ModeE2E, Owner: owner, Salt: room.Salt,
	})
	if _, err := st.AcceptInvitation(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrInvitationStale) || !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("accept an outdated invitation = %v, want ErrInvitationStale", err)
	}
	if _, err := st.GetMember(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("membership after the outdated acceptance = %v, want none", err)
	}
	if _, err := st.GetInvitation(ctx, room.ID, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("the outdated invitation = %v, want removed", err)
	}
}
