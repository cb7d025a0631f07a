package svc

import (
	"context"
	"errors"
	"fmt"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// The operations on this page change who holds which room key: the
// owner-only invite, remove and rekey, and the members' key fetch. Every
// check that can refuse a request runs before the first write, so a refused
// request changes nothing stored (except when a race is lost between
// writes, as remove explains).

// invite stores an invitation: a proposal that the invitee accepts
// (accept) or declines (decline). It writes the invitee's sealed key (in
// an e2e room) and the invitation, and nothing that grants access: the
// invitee is not a member, the router delivers it no frames and takes
// none from it, and its room quota is not checked nor used until it
// accepts. The invitee is told by an event (subjects.EventInvited).
// Pending invitations count against the room's member limit, so that an
// owner cannot pile them up without bound.
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
		if err := checkGrant("grant", req.Grant); err != nil {
			return subjects.MemberInfo{}, err
		}
	} else if len(req.SealedKey) != 0 || len(req.Grant) != 0 || req.Epoch != 0 {
		return subjects.MemberInfo{}, badRequest("room %s is cleartext: omit sealed_key, grant and epoch", room.ID)
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
	inv, err := h.store.Invite(ctx, room.ID, pub, req.Epoch, kvstore.SealedKey{Sealed: req.SealedKey, Grant: req.Grant})
	switch {
	case errors.Is(err, kvstore.ErrAlreadyMember):
		return subjects.MemberInfo{}, conflict(err, "%s is already a member of room %s", pub, room.ID)
	case errors.Is(err, kvstore.ErrAlreadyInvited):
		return subjects.MemberInfo{}, conflict(err, "%s is already invited to room %s and has not answered yet: it accepts or declines the pending invitation (remove it to cancel)", pub, room.ID)
	case err != nil:
		return subjects.MemberInfo{}, storeError(err, storeMessages{
			notFound: "room " + room.ID + " not found",
			conflict: "room " + room.ID + " moved to a new epoch during the invitation: seal the current room key and retry",
		})
	}
	h.notify(ctx, subjects.Event{Type: subjects.EventInvited, RoomID: room.ID, By: c.pub}, pub)
	return invitedInfo(inv), nil
}

// remove removes a member, or cancels a pending invitation. In an
// encrypted room the request carries the next epoch's key for everyone who
// stays (members and pending invitees; an invitee holds a sealed key of
// the current epoch too); the member is removed (or the invitation
// cancelled) first and the room rekeyed second, so that a rekey racing an
// invitation cannot include the removed member. If that rekey then loses a
// race (another rekey or membership change in between), the member stays
// removed and the reply (409) tells the owner to rekey.
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
	notMember := storeMessages{notFound: pub + " is neither a member of room " + room.ID + " nor invited to it"}
	if !room.Encrypted() {
		if req.Rekey != nil {
			return subjects.RoomInfo{}, badRequest("room %s is cleartext: omit rekey", room.ID)
		}
		invited, err := h.isMemberOrInvited(ctx, room.ID, pub)
		if err != nil {
			return subjects.RoomInfo{}, storeError(err, notMember)
		}
		if err := h.removeOne(ctx, room.ID, pub, invited); err != nil {
			return subjects.RoomInfo{}, storeError(err, notMember)
		}
		h.notify(ctx, subjects.Event{Type: subjects.EventRemoved, RoomID: room.ID, By: c.pub}, pub)
		return roomInfo(room), nil
	}

	if req.Rekey == nil {
		return subjects.RoomInfo{}, badRequest("removing a member of encrypted room %s needs rekey: the next epoch's room key sealed to every remaining member", room.ID)
	}
	keys, err := parseKeys("rekey.keys", req.Rekey.Keys, "rekey.grants", req.Rekey.Grants)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if _, ok := keys[pub]; ok {
		return subjects.RoomInfo{}, badRequest("rekey.keys must not include the removed member %s", pub)
	}
	if err := checkEpochs(room, req.Rekey.FromEpoch, req.Rekey.ToEpoch, "rekey."); err != nil {
		return subjects.RoomInfo{}, err
	}
	holders, err := h.keyHolders(ctx, room.ID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	invited := false
	switch role, ok := holders[pub]; {
	case !ok:
		return subjects.RoomInfo{}, notFound("%s is neither a member of room %s nor invited to it", pub, room.ID)
	case role == subjects.RoleInvited:
		invited = true
	}
	if err := h.covers(ctx, room.ID, holders, pub, keys); err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := h.removeOne(ctx, room.ID, pub, invited); err != nil {
		return subjects.RoomInfo{}, storeError(err, notMember)
	}
	h.notify(ctx, subjects.Event{Type: subjects.EventRemoved, RoomID: room.ID, By: c.pub}, pub)
	epoch, err := h.store.RekeyTo(ctx, room.ID, room.Epoch, req.Rekey.ToEpoch, keys)
	if err != nil {
		e := storeError(err, storeMessages{})
		what := "removed from"
		if invited {
			what = "no longer invited to"
		}
		e.Message = fmt.Sprintf("%s is %s room %s, but the rekey failed (%s): rekey the room now", pub, what, room.ID, e.Message)
		return subjects.RoomInfo{}, e
	}
	room.Epoch, room.KeyClaim = epoch, epoch
	h.rekeyed(ctx, c.pub, room.ID, epoch, keys)
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
	keys, err := parseKeys("keys", req.Keys, "grants", req.Grants)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := checkEpochs(room, req.FromEpoch, req.ToEpoch, ""); err != nil {
		return subjects.RoomInfo{}, err
	}
	// Checked here too (the store checks again under its claim) so that a
	// bundle built from a stale member list claims no epoch.
	holders, err := h.keyHolders(ctx, room.ID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := h.covers(ctx, room.ID, holders, "", keys); err != nil {
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
	h.rekeyed(ctx, c.pub, room.ID, epoch, keys)
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
	k, err := h.store.GetRoomKey(ctx, room.ID, epoch, c.pub)
	if err != nil {
		return subjects.KeyResponse{}, storeError(err, storeMessages{
			notFound:     fmt.Sprintf("you have no key for room %s at epoch %d", room.ID, epoch),
			notFoundCode: subjects.CodeForbidden,
		})
	}
	return subjects.KeyResponse{RoomID: room.ID, Epoch: epoch, SealedKey: k.Sealed, Grant: k.Grant}, nil
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

// keyHolders returns who holds the room's keys, by public key with the
// role: its members and its pending invitees (RoleInvited; a member
// accepting an invitation shows as a member).
func (h *handlers) keyHolders(ctx context.Context, roomID string) (map[string]string, error) {
	members, err := h.store.ListMembers(ctx, roomID)
	if err != nil {
		return nil, storeError(err, storeMessages{notFound: "room " + roomID + " not found"})
	}
	invitations, err := h.store.ListRoomInvitations(ctx, roomID)
	if err != nil {
		return nil, storeError(err, storeMessages{notFound: "room " + roomID + " not found"})
	}
	out := make(map[string]string, len(members)+len(invitations))
	for _, inv := range invitations {
		out[inv.Pub] = subjects.RoleInvited
	}
	for _, m := range members {
		out[m.Pub] = m.Role
	}
	return out, nil
}

// isMemberOrInvited reports whether pub is a pending invitee of a room
// (true) or a member (false); neither is kvstore.ErrNotFound.
func (h *handlers) isMemberOrInvited(ctx context.Context, roomID, pub string) (bool, error) {
	_, err := h.store.GetMember(ctx, roomID, pub)
	if !errors.Is(err, kvstore.ErrNotFound) {
		return false, err
	}
	if _, err := h.store.GetInvitation(ctx, roomID, pub); err != nil {
		return false, err
	}
	return true, nil
}

// removeOne removes a member, or cancels an invitation when invited.
func (h *handlers) removeOne(ctx context.Context, roomID, pub string, invited bool) error {
	if invited {
		_, err := h.store.CancelInvitation(ctx, roomID, pub)
		return err
	}
	return h.store.RemoveMember(ctx, roomID, pub)
}

// covers checks that keys has a sealed key for every current member and
// pending invitee of holders but except, and for no one else (409: the
// bundle was built from a stale member list). Revoked users are not
// current members: a rekey leaves them out, and one that includes them is
// refused, so that a revocation sticks. It reads the holders' user records
// (one direct get); the store checks again under its claim.
func (h *handlers) covers(ctx context.Context, roomID string, holders map[string]string, except string, keys map[string]kvstore.SealedKey) error {
	pubs := make([]string, 0, len(holders))
	for pub := range holders {
		pubs = append(pubs, pub)
	}
	users, err := h.store.GetUsers(ctx, pubs)
	if err != nil {
		return storeError(err, storeMessages{})
	}
	missing, want := 0, 0
	for _, pub := range pubs {
		if u, ok := users[pub]; pub == except || ok && u.Revoked() {
			continue
		}
		want++
		if _, ok := keys[pub]; !ok {
			missing++
		}
	}
	if extra := len(keys) - (want - missing); missing > 0 || extra > 0 {
		return conflict(nil, "the sealed keys must cover exactly the current members and pending invitees of room %s (%d missing, %d for non-members or revoked users): fetch the members and retry", roomID, missing, extra)
	}
	return nil
}
