package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

// resolveRoom finds the one room among the caller's rooms that arg names,
// by name or by ID. Names come first, and a name must not be ambiguous:
// when arg is the name of one room and the ID of another, or the name of
// several, it is a usage error listing their IDs, rather than a guess. So a
// room that someone else created with a name (or an ID) that reads like one
// of the caller's rooms never takes its messages silently.
func resolveRoom(ctx context.Context, conn *client.Conn, arg string) (subjects.RoomInfo, error) {
	if arg == "" {
		return subjects.RoomInfo{}, usagef("empty room")
	}
	refs, err := conn.ListMyRooms(ctx)
	if err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("list rooms: %w", err)
	}
	var byName []subjects.RoomRef
	byID := -1
	for i, r := range refs {
		if r.Name == arg {
			byName = append(byName, r)
		} else if r.RoomID == arg {
			byID = i
		}
	}
	var chosen subjects.RoomRef
	switch {
	case len(byName) == 0 && byID < 0 && subjects.ValidateRoomID(arg) == nil:
		// Not among the caller's rooms: the service says why (not a
		// member, no such room), or it is a room joined since the list.
		info, err := conn.GetRoom(ctx, arg)
		if err != nil {
			return subjects.RoomInfo{}, fmt.Errorf("room %q: %s: %w", arg, noSuchRoom, err)
		}
		return info, nil
	case len(byName) == 0 && byID < 0:
		return subjects.RoomInfo{}, fmt.Errorf("room %q: %w: %s", arg, client.ErrNotFound, noSuchRoom)
	case len(byName) == 1 && byID < 0:
		chosen = byName[0]
	case len(byName) == 0:
		chosen = refs[byID]
	default:
		ids := make([]string, 0, len(byName)+1)
		for _, r := range byName {
			ids = append(ids, fmt.Sprintf("%s (named %q)", r.RoomID, r.Name))
		}
		if byID >= 0 {
			ids = append(ids, refs[byID].RoomID+" (its ID)")
		}
		return subjects.RoomInfo{}, usagef("%q names several of your rooms: %s; use the ID of the one you mean", arg, strings.Join(ids, ", "))
	}
	info, err := conn.GetRoom(ctx, chosen.RoomID)
	if errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrForbidden) {
		return subjects.RoomInfo{}, fmt.Errorf("room %q: %w: you left it or were removed meanwhile", arg, err)
	}
	if err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("get room %s: %w", chosen.RoomID, err)
	}
	return info, nil
}

const noSuchRoom = "none of your rooms has that name or ID (see `unibus rooms list`; an invitation counts once accepted: `unibus rooms invitations`)"

// resolveInvitation finds the one pending invitation of the caller's that
// arg names, by the room's name or ID, as resolveRoom does for rooms:
// names first, and a name that is ambiguous (the name of several
// invitations, or the name of one and the ID of another) is a usage error
// listing their IDs and owners. An invitation's name is its owner's
// choice, so one owner's room never passes for another's silently.
func resolveInvitation(ctx context.Context, conn *client.Conn, arg string) (client.Invitation, error) {
	if arg == "" {
		return client.Invitation{}, usagef("empty room")
	}
	invs, err := conn.Invitations(ctx)
	if err != nil {
		return client.Invitation{}, fmt.Errorf("list invitations: %w", err)
	}
	var byName []client.Invitation
	byID := -1
	for i, inv := range invs {
		if inv.Name == arg {
			byName = append(byName, inv)
		} else if inv.RoomID == arg {
			byID = i
		}
	}
	switch {
	case len(byName) == 0 && byID < 0:
		return client.Invitation{}, fmt.Errorf("room %q: %w: %s", arg, client.ErrNotFound, noSuchInvitation)
	case len(byName) == 1 && byID < 0:
		return byName[0], nil
	case len(byName) == 0:
		return invs[byID], nil
	}
	ids := make([]string, 0, len(byName)+1)
	for _, inv := range byName {
		ids = append(ids, fmt.Sprintf("%s (named %q, owner %s)", inv.RoomID, inv.Name, inv.Owner))
	}
	if byID >= 0 {
		ids = append(ids, fmt.Sprintf("%s (its ID, owner %s)", invs[byID].RoomID, invs[byID].Owner))
	}
	return client.Invitation{}, usagef("%q names several of your invitations: %s; use the ID of the one you mean", arg, strings.Join(ids, ", "))
}

const noSuchInvitation = "none of your invitations has that name or ID (see `unibus rooms invitations`)"
