package svc

import (
	"context"
	"errors"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// An invitation is a proposal (invite, on the keys page): the invitee
// answers it here, for itself. Accepting is when the invitee joins, so
// that is when its room quota is checked and used; declining removes the
// invitation. Neither needs the owner.

// accept makes the caller a member of a room it has a pending invitation
// to (404 without one), within its room quota (409), with the room keys
// from the invitation's epoch on and the room log from the invitation on.
// Its permissions do not change (they name its own key only): the router
// follows the membership. A caller that is a member already (a retry
// whose reply was lost) gets the room again.
func (h *handlers) accept(ctx context.Context, c caller, req *subjects.RoomRequest) (subjects.RoomInfo, error) {
	room, err := h.room(ctx, req.RoomID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	noInvitation := storeMessages{notFound: "you have no pending invitation to room " + room.ID + " (none was made, or it was declined, withdrawn or has expired): ask its owner to invite you"}
	_, err = h.store.GetMember(ctx, room.ID, c.pub)
	switch {
	case errors.Is(err, kvstore.ErrNotFound):
		// Joining now: the room counts against the caller's quota from
		// here on, so it is checked here and not at the invitation.
		if _, err := h.store.GetInvitation(ctx, room.ID, c.pub); err != nil {
			return subjects.RoomInfo{}, storeError(err, noInvitation)
		}
		if err := h.checkRoomsOf(ctx, c.pub, false); err != nil {
			return subjects.RoomInfo{}, err
		}
	case err != nil:
		return subjects.RoomInfo{}, storeError(err, storeMessages{})
	}
	if _, err := h.store.AcceptInvitation(ctx, room.ID, c.pub); err != nil {
		if errors.Is(err, kvstore.ErrInvitationStale) {
			return subjects.RoomInfo{}, conflict(err, "your invitation to room %s is outdated: the room moved to a new epoch without a key for you, so it was removed; ask its owner to invite you again", room.ID)
		}
		return subjects.RoomInfo{}, storeError(err, noInvitation)
	}
	// The room as it is now: a rekey may have moved its epoch since the
	// first read.
	if room, err = h.store.GetRoom(ctx, room.ID); err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{notFound: "room " + req.RoomID + " not found"})
	}
	return roomInfo(room), nil
}

// decline removes the caller's pending invitation to a room (404 without
// one) and replies with it. The invitee held nothing but its sealed key,
// which no one hands out but to members; declining needs no rekey.
func (h *handlers) decline(ctx context.Context, c caller, req *subjects.RoomRequest) (subjects.Invitation, error) {
	room, err := h.room(ctx, req.RoomID)
	if err != nil {
		return subjects.Invitation{}, err
	}
	inv, err := h.store.CancelInvitation(ctx, room.ID, c.pub)
	if err != nil {
		return subjects.Invitation{}, storeError(err, storeMessages{notFound: "you have no pending invitation to room " + room.ID})
	}
	return invitation(inv), nil
}
