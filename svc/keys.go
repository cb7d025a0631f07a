package svc

import (
	"context"
	"fmt"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// The operations on this page change who holds which room key: the
// owner-only invite, remove and rekey, and the members' key fetch. Every
// check that can refuse a request runs before the first write, so a refused
// request changes nothing stored (except when a race is lost between
// writes, as remove explains).

func (h *handlers) invite(ctx context.Context, c caller, req *subjects.InviteRequest) (subjects.MemberInfo, error) {
	room, err := h.ownedRoom(ctx, c, req.RoomID, "invite", req)
	if err != nil {
		return subjects.MemberInfo{}, err
	}
	pub, err := parsePub("pub", req.Pub)
	if err != nil {
		return subjects.MemberInfo{}, err
	}
	if room.Encrypted() {
		if err := checkSealedKey("sealed_key", req.SealedKey); err != nil {
			return subjects.MemberInfo{}, err
		}
	} else if len(req.SealedKey) != 0 || req.Epoch != 0 {
		return subjects.MemberInfo{}, badRequest("room %s is cleartext: omit sealed_key and epoch", room.ID)
	}
	invitee, err := h.store.GetUser(ctx, pub)
	if err != nil {
		return subjects.MemberInfo{}, storeError(err, storeMessages{notFound: "user " + pub + " is not registered"})
	}
	switch {
	case invitee.Revoked():
		return subjects.MemberInfo{}, forbidden("user %s is revoked and cannot be invited", pub)
	case room.Encrypted() && len(invitee.EncKey) == 0:
		return subjects.MemberInfo{}, conflict(nil, "user %s has not published an encryption key yet (users.setkey), so no room key can be sealed to it", pub)
	case room.Encrypted() && req.Epoch != room.Epoch:
		return subjects.MemberInfo{}, staleEpoch(room, req.Epoch)
	}
	if err := h.checkMembersOf(ctx, room.ID); err != nil {
		return subjects.MemberInfo{}, err
	}
	if err := h.checkRoomsOf(ctx, pub, false); err != nil {
		return subjects.MemberInfo{}, err
	}
	m, err := h.store.AddMember(ctx, room.ID, pub, subjects.RoleMember, req.Epoch, req.SealedKey)
	if err != nil {
		return subjects.MemberInfo{}, storeError(err, storeMessages{
			notFound: "room " + room.ID + " not found",
			exists:   pub + " is already a member of room " + room.ID,
			conflict: "room " + room.ID + " moved to a new epoch during the invitation: seal the current room key and retry",
		})
	}
	return memberInfo(m), nil
}

// remove removes a member. In an encrypted room the request carries the
// next epoch's key for everyone who stays; the member is removed first and
// the room rekeyed second, so that a rekey racing an invitation cannot
// include the removed member. If that rekey then loses a race (another
// rekey or membership change in between), the member stays removed and the
// reply (409) tells the owner to rekey.
func (h *handlers) remove(ctx context.Context, c caller, req *subjects.RemoveRequest) (subjects.RoomInfo, error) {
	room, err := h.ownedRoom(ctx, c, req.RoomID, "remove members", req)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	pub, err := parsePub("pub", req.Pub)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if pub == room.Owner {
		return subjects.RoomInfo{}, badRequest("the owner cannot remove itself from room %s", room.ID)
	}
	notMember := storeMessages{notFound: pub + " is not a member of room " + room.ID}
	if !room.Encrypted() {
		if req.Rekey != nil {
			return subjects.RoomInfo{}, badRequest("room %s is cleartext: omit rekey", room.ID)
		}
		if _, err := h.store.GetMember(ctx, room.ID, pub); err != nil {
			return subjects.RoomInfo{}, storeError(err, notMember)
		}
		if err := h.store.RemoveMember(ctx, room.ID, pub); err != nil {
			return subjects.RoomInfo{}, storeError(err, notMember)
		}
		return roomInfo(room), nil
	}

	if req.Rekey == nil {
		return subjects.RoomInfo{}, badRequest("removing a member of encrypted room %s needs rekey: the next epoch's room key sealed to every remaining member", room.ID)
	}
	keys, err := parseKeys("rekey.keys", req.Rekey.Keys)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if _, ok := keys[pub]; ok {
		return subjects.RoomInfo{}, badRequest("rekey.keys must not include the removed member %s", pub)
	}
	if err := checkEpochs(room, req.Rekey.FromEpoch, req.Rekey.ToEpoch, "rekey."); err != nil {
		return subjects.RoomInfo{}, err
	}
	members, err := h.store.ListMembers(ctx, room.ID)
	if err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	if !isMember(members, pub) {
		return subjects.RoomInfo{}, notFound("%s is not a member of room %s", pub, room.ID)
	}
	if err := covers(room.ID, members, pub, keys); err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := h.store.RemoveMember(ctx, room.ID, pub); err != nil {
		return subjects.RoomInfo{}, storeError(err, notMember)
	}
	epoch, err := h.store.RekeyTo(ctx, room.ID, room.Epoch, req.Rekey.ToEpoch, keys)
	if err != nil {
		e := storeError(err, storeMessages{})
		e.Message = fmt.Sprintf("%s was removed from room %s, but the rekey failed (%s): rekey the room now", pub, room.ID, e.Message)
		return subjects.RoomInfo{}, e
	}
	room.Epoch, room.KeyClaim = epoch, epoch
	return roomInfo(room), nil
}

func (h *handlers) rekey(ctx context.Context, c caller, req *subjects.RekeyRequest) (subjects.RoomInfo, error) {
	room, err := h.ownedRoom(ctx, c, req.RoomID, "rekey", req)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if !room.Encrypted() {
		return subjects.RoomInfo{}, badRequest("room %s is cleartext: it has no room key to rekey", room.ID)
	}
	keys, err := parseKeys("keys", req.Keys)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := checkEpochs(room, req.FromEpoch, req.ToEpoch, ""); err != nil {
		return subjects.RoomInfo{}, err
	}
	// Checked here too (the store checks again under its claim) so that a
	// bundle built from a stale member list claims no epoch.
	members, err := h.store.ListMembers(ctx, room.ID)
	if err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	if err := covers(room.ID, members, "", keys); err != nil {
		return subjects.RoomInfo{}, err
	}
	epoch, err := h.store.RekeyTo(ctx, room.ID, req.FromEpoch, req.ToEpoch, keys)
	if err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{
			notFound: "room " + room.ID + " not found",
			conflict: "room " + room.ID + " changed during the rekey (another rekey or a membership change): fetch the room and its members and retry",
		})
	}
	room.Epoch, room.KeyClaim = epoch, epoch
	return roomInfo(room), nil
}

func (h *handlers) key(ctx context.Context, c caller, req *subjects.KeyRequest) (subjects.KeyResponse, error) {
	room, err := h.memberRoom(ctx, c, req.RoomID)
	if err != nil {
		return subjects.KeyResponse{}, err
	}
	if !room.Encrypted() {
		return subjects.KeyResponse{}, badRequest("room %s is cleartext: it has no room key", room.ID)
	}
	epoch := req.Epoch
	if epoch == 0 {
		epoch = room.Epoch
	}
	sealed, err := h.store.GetRoomKey(ctx, room.ID, epoch, c.pub)
	if err != nil {
		return subjects.KeyResponse{}, storeError(err, storeMessages{
			notFound:     fmt.Sprintf("you have no key for room %s at epoch %d", room.ID, epoch),
			notFoundCode: subjects.CodeForbidden,
		})
	}
	return subjects.KeyResponse{RoomID: room.ID, Epoch: epoch, SealedKey: sealed}, nil
}

// checkEpochs checks a rekey's epochs: from must be the room's epoch and
// to its next epoch, the one the keys are sealed for (409 otherwise, before
// anything is written). prefix names the fields' parent in messages.
func checkEpochs(room kvstore.Room, from, to uint64, prefix string) error {
	switch {
	case from != room.Epoch:
		return staleEpoch(room, from)
	case to == 0:
		return badRequest("%sto_epoch is required: the room's next_epoch, which the sealed keys bind", prefix)
	case to != room.NextEpoch():
		return conflict(nil, "the keys are sealed for epoch %d but the next epoch of room %s is %d: fetch the room and reseal", to, room.ID, room.NextEpoch())
	}
	return nil
}

// staleEpoch is the 409 of a request made for another epoch than the
// room's.
func staleEpoch(room kvstore.Room, epoch uint64) *Error {
	return conflict(nil, "room %s is at epoch %d, not %d: fetch the room and retry with the current epoch", room.ID, room.Epoch, epoch)
}

func isMember(members []kvstore.Member, pub string) bool {
	for _, m := range members {
		if m.Pub == pub {
			return true
		}
	}
	return false
}

// covers checks that keys has a sealed key for every member but except,
// and for no one else (409: the bundle was built from a stale member list).
func covers(roomID string, members []kvstore.Member, except string, keys map[string][]byte) error {
	missing, want := 0, 0
	for _, m := range members {
		if m.Pub == except {
			continue
		}
		want++
		if _, ok := keys[m.Pub]; !ok {
			missing++
		}
	}
	if extra := len(keys) - (want - missing); missing > 0 || extra > 0 {
		return conflict(nil, "the sealed keys must cover exactly the members of room %s (%d missing, %d for non-members): fetch the members and retry", roomID, missing, extra)
	}
	return nil
}
