package svc_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/subjects"
)

// rekeyRequest is an owner-signed rekey of room from its epoch, with a
// sealed key and a grant for each of members.
func rekeyRequest(t testing.TB, owner *user, room subjects.RoomInfo, members ...*user) subjects.RekeyRequest {
	t.Helper()
	req := subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: room.Epoch, ToEpoch: room.NextEpoch, Keys: map[string][]byte{}, Grants: map[string][]byte{}}
	for _, m := range members {
		req.Keys[m.pub], req.Grants[m.pub] = sealedKey(t), grant(t)
	}
	if err := subjects.SignOwner(owner.kp, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

// rekey makes the owner rekey room for members.
func (e *env) rekey(t testing.TB, owner *user, room subjects.RoomInfo, members ...*user) subjects.RoomInfo {
	t.Helper()
	return call[subjects.RoomInfo](t, owner, subjects.RoomsRekey, rekeyRequest(t, owner, room, members...))
}

func TestRoomsRekey(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
	resign := func(req subjects.RekeyRequest, f func(*subjects.RekeyRequest)) subjects.RekeyRequest {
		f(&req)
		if err := subjects.SignOwner(e.alice.kp, &req); err != nil {
			t.Fatal(err)
		}
		return req
	}
	good := rekeyRequest(t, e.alice, room, e.alice, e.bob)
	unsignedReq := good
	unsignedReq.OwnerSig = nil

	before := e.snapshot(t)
	for _, tc := range []struct {
		name string
		from *user
		req  subjects.RekeyRequest
		code int
		want string
	}{
		{"not the owner", e.bob, rekeyRequest(t, e.bob, room, e.alice, e.bob), subjects.CodeForbidden, "only the room owner may rekey"},
		{"no owner signature", e.alice, unsignedReq, subjects.CodeUnauthenticated, "owner_sig"},
		{"stale epoch", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.FromEpoch = 5 }), subjects.CodeConflict, "is at epoch 1, not 5"},
		{"sealed for another epoch", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.ToEpoch = 3 }), subjects.CodeConflict, "sealed for epoch 3 but the next epoch of room " + room.RoomID + " is 2"},
		{"no target epoch", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.ToEpoch = 0 }), subjects.CodeBadRequest, "to_epoch is required"},
		{"a member left out", e.alice, rekeyRequest(t, e.alice, room, e.alice), subjects.CodeConflict, "1 missing"},
		{"a non-member included", e.alice, rekeyRequest(t, e.alice, room, e.alice, e.bob, e.carol), subjects.CodeConflict, "1 for non-members"},
		{"no keys", e.alice, rekeyRequest(t, e.alice, room), subjects.CodeBadRequest, "keys is required"},
		{"bad member key", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.Keys = map[string][]byte{"bob": {1}} }), subjects.CodeBadRequest, "keys key"},
		{"empty sealed key", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.Keys = map[string][]byte{e.bob.pub: nil} }), subjects.CodeBadRequest, "is required"},
		{"no grants", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.Grants = nil }), subjects.CodeBadRequest, "grants has no grant for"},
		{"a grant missing", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.Grants = map[string][]byte{e.alice.pub: grant(t)} }), subjects.CodeBadRequest, "grants has no grant for " + e.bob.pub + ", which keys names"},
		{"an extra grant", e.alice, resign(good, func(r *subjects.RekeyRequest) {
			r.Grants = map[string][]byte{e.alice.pub: grant(t), e.bob.pub: grant(t), e.carol.pub: grant(t)}
		}), subjects.CodeBadRequest, "grants has a grant for " + e.carol.pub + ", which keys does not name"},
		{"a grant too short", e.alice, resign(good, func(r *subjects.RekeyRequest) {
			r.Grants = map[string][]byte{e.alice.pub: grant(t), e.bob.pub: make([]byte, subjects.GrantLen-1)}
		}), subjects.CodeBadRequest, "grants[" + e.bob.pub + "] is 63 bytes, want 64"},
		{"an empty grant", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.Grants = map[string][]byte{e.alice.pub: grant(t), e.bob.pub: nil} }), subjects.CodeBadRequest, "grants[" + e.bob.pub + "] is required"},
		{"a grant named twice", e.alice, resign(good, func(r *subjects.RekeyRequest) {
			r.Grants = map[string][]byte{e.alice.pub: grant(t), e.bob.pub: grant(t), strings.ToLower(e.bob.pub): grant(t)}
		}), subjects.CodeBadRequest, "names " + e.bob.pub + " twice"},
		{"cleartext room", e.alice, rekeyRequest(t, e.alice, clear, e.alice), subjects.CodeBadRequest, "cleartext"},
		{"no such room", e.alice, resign(good, func(r *subjects.RekeyRequest) { r.RoomID = "nosuchroom" }), subjects.CodeNotFound, "room nosuchroom not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.from.request(t, subjects.RoomsRekey, tc.req), tc.code, tc.want)
		})
	}
	e.unchanged(t, before)

	got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRekey, good)
	if got.Epoch != 2 || got.NextEpoch != 3 || got.RoomID != room.RoomID {
		t.Fatalf("rekeyed %+v", got)
	}
	// The same bundle again is stale now.
	wantError(t, e.alice.request(t, subjects.RoomsRekey, good), subjects.CodeConflict, "not 1")

	t.Run("concurrent rekeys: one wins", func(t *testing.T) {
		reqs := []subjects.RekeyRequest{rekeyRequest(t, e.alice, got, e.alice, e.bob), rekeyRequest(t, e.alice, got, e.alice, e.bob)}
		replies := make([]*nats.Msg, len(reqs))
		var wg sync.WaitGroup
		for i, req := range reqs {
			m := e.alice.msg(t, subjects.RoomsRekey, req)
			wg.Go(func() {
				r, err := e.alice.nc.RequestMsg(m, requestTimeout)
				if err != nil {
					t.Errorf("rekey %d: %v", i, err)
				}
				replies[i] = r
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		won := 0
		for _, r := range replies {
			if r.Header.Get("Nats-Service-Error-Code") == "" {
				won++
				continue
			}
			wantError(t, r, subjects.CodeConflict)
		}
		if won != 1 {
			t.Errorf("%d rekeys won, want 1", won)
		}
	})
}

func TestRoomsRemove(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	e.invite(t, e.alice, room, e.carol)
	remove := func(owner *user, pub string, rekey *subjects.RekeyBundle) subjects.RemoveRequest {
		req := subjects.RemoveRequest{RoomID: room.RoomID, Pub: pub, Rekey: rekey}
		if err := subjects.SignOwner(owner.kp, &req); err != nil {
			t.Fatal(err)
		}
		return req
	}
	bundle := func(from uint64, members ...*user) *subjects.RekeyBundle {
		b := &subjects.RekeyBundle{FromEpoch: from, ToEpoch: room.NextEpoch, Keys: map[string][]byte{}, Grants: map[string][]byte{}}
		for _, m := range members {
			b.Keys[m.pub], b.Grants[m.pub] = sealedKey(t), grant(t)
		}
		return b
	}
	good := remove(e.alice, e.bob.pub, bundle(1, e.alice, e.carol))
	unsignedReq := good
	unsignedReq.OwnerSig = nil

	before := e.snapshot(t)
	for _, tc := range []struct {
		name string
		from *user
		req  subjects.RemoveRequest
		code int
		want string
	}{
		{"not the owner", e.carol, remove(e.carol, e.bob.pub, bundle(1, e.alice, e.carol)), subjects.CodeForbidden, "only the room owner may remove members"},
		{"no owner signature", e.alice, unsignedReq, subjects.CodeUnauthenticated, "owner_sig"},
		{"no rekey in an e2e room", e.alice, remove(e.alice, e.bob.pub, nil), subjects.CodeBadRequest, "needs rekey"},
		{"rekey includes the removed member", e.alice, remove(e.alice, e.bob.pub, bundle(1, e.alice, e.bob, e.carol)), subjects.CodeBadRequest, "must not include the removed member"},
		{"rekey leaves a member out", e.alice, remove(e.alice, e.bob.pub, bundle(1, e.alice)), subjects.CodeConflict, "1 missing"},
		{"rekey without grants", e.alice, func() subjects.RemoveRequest {
			b := bundle(1, e.alice, e.carol)
			b.Grants = nil
			return remove(e.alice, e.bob.pub, b)
		}(), subjects.CodeBadRequest, "rekey.grants has no grant for"},
		{"rekey with a grant for the removed member", e.alice, func() subjects.RemoveRequest {
			b := bundle(1, e.alice, e.carol)
			b.Grants[e.bob.pub] = grant(t)
			return remove(e.alice, e.bob.pub, b)
		}(), subjects.CodeBadRequest, "rekey.grants has a grant for " + e.bob.pub + ", which rekey.keys does not name"},
		{"stale epoch", e.alice, remove(e.alice, e.bob.pub, bundle(3, e.alice, e.carol)), subjects.CodeConflict, "is at epoch 1, not 3"},
		{"sealed for another epoch", e.alice, func() subjects.RemoveRequest {
			b := bundle(1, e.alice, e.carol)
			b.ToEpoch = 7
			return remove(e.alice, e.bob.pub, b)
		}(), subjects.CodeConflict, "sealed for epoch 7"},
		{"the owner itself", e.alice, remove(e.alice, e.alice.pub, bundle(1, e.bob, e.carol)), subjects.CodeBadRequest, "the owner cannot remove itself"},
		{"not a member", e.alice, remove(e.alice, e.admin.pub, bundle(1, e.alice, e.bob, e.carol)), subjects.CodeNotFound, e.admin.pub + " is neither a member of room " + room.RoomID + " nor invited to it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.from.request(t, subjects.RoomsRemove, tc.req), tc.code, tc.want)
		})
	}
	e.unchanged(t, before)

	got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, good)
	if got.Epoch != 2 || got.NextEpoch != 3 {
		t.Fatalf("removed with rekey: %+v", got)
	}
	// Bob is out: no room, no key for the new epoch; carol has one.
	wantError(t, e.bob.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "not a member")
	wantError(t, e.bob.request(t, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: got.Epoch}), subjects.CodeForbidden)
	k := call[subjects.KeyResponse](t, e.carol, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	if k.Epoch != got.Epoch {
		t.Errorf("carol's key is for epoch %d, want %d", k.Epoch, got.Epoch)
	}
	if m := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}); len(m.Members) != 2 {
		t.Errorf("members after remove: %+v", m.Members)
	}

	t.Run("cleartext", func(t *testing.T) {
		clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
		e.invite(t, e.alice, clear, e.bob)
		req := subjects.RemoveRequest{RoomID: clear.RoomID, Pub: e.bob.pub, Rekey: bundle(0, e.alice)}
		if err := subjects.SignOwner(e.alice.kp, &req); err != nil {
			t.Fatal(err)
		}
		wantError(t, e.alice.request(t, subjects.RoomsRemove, req), subjects.CodeBadRequest, "omit rekey")
		req = subjects.RemoveRequest{RoomID: clear.RoomID, Pub: e.bob.pub}
		if err := subjects.SignOwner(e.alice.kp, &req); err != nil {
			t.Fatal(err)
		}
		if got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, req); got.Epoch != 0 {
			t.Errorf("cleartext remove: %+v", got)
		}
		wantError(t, e.alice.request(t, subjects.RoomsRemove, req), subjects.CodeNotFound, e.bob.pub+" is neither a member of room "+clear.RoomID+" nor invited to it")
	})
}
