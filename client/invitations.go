package client

import (
	"context"
	"fmt"

	"github.com/unibus/unibus/subjects"
)

// Invitation is a pending invitation of the caller's, as Invitations
// reports it: a room whose owner proposed that the caller join it. It
// grants nothing until Accept.
type Invitation = subjects.Invitation

// Invitations lists the caller's pending invitations (empty for none),
// each checked as every room the client learns: its owner is the one its
// ID names (subjects.CheckRoomOwner), or the listing is refused with
// ErrUntrustedRoom. An invitation's name is its owner's choice and may
// read like the name of another room: tell rooms apart by ID and owner.
func (c *Conn) Invitations(ctx context.Context) ([]Invitation, error) {
	var r subjects.MineResponse
	if err := c.call(ctx, subjects.RoomsMine, nil, &r); err != nil {
		return nil, err
	}
	out := make([]Invitation, 0, len(r.Invitations))
	for _, inv := range r.Invitations {
		if err := subjects.CheckRoomOwner(inv.RoomID, inv.Owner, inv.Mode, inv.Salt); err != nil {
			return nil, fmt.Errorf("invitation to room %s claims owner %s: %w: %w", inv.RoomID, inv.Owner, ErrUntrustedRoom, err)
		}
		out = append(out, inv)
	}
	return out, nil
}

// Accept accepts the caller's pending invitation to a room: the caller
// becomes a member, with the room keys from the invitation's epoch on
// (each checked against the owner's grant when it is used, as any room
// key). The room is checked as every room the client learns (its owner is
// the one its ID names; ErrUntrustedRoom otherwise). Membership is the
// routing service's to check, not the connection's permissions, so a
// Subscribe or Publish right after Accept is allowed (the connection is
// not refreshed). No pending invitation is ErrNotFound; the caller at its
// room limit is ErrConflict. Accepting a room the caller is a member of
// already returns the room.
func (c *Conn) Accept(ctx context.Context, roomID string) (subjects.RoomInfo, error) {
	var info subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsAccept, subjects.RoomRequest{RoomID: roomID}, &info); err != nil {
		return subjects.RoomInfo{}, err
	}
	if info.RoomID != roomID {
		return subjects.RoomInfo{}, fmt.Errorf("accept: %w: asked for room %s, the service answered room %s", ErrUntrustedRoom, roomID, info.RoomID)
	}
	if err := c.keys.learn(info); err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("accept: %w", err)
	}
	return info, nil
}

// Decline declines the caller's pending invitation to a room, which is
// removed, and returns it. No pending invitation is ErrNotFound.
func (c *Conn) Decline(ctx context.Context, roomID string) (Invitation, error) {
	var inv Invitation
	if err := c.call(ctx, subjects.RoomsDecline, subjects.RoomRequest{RoomID: roomID}, &inv); err != nil {
		return Invitation{}, err
	}
	return inv, nil
}
