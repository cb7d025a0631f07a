package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

// resolveRoom finds the room that arg names: a room ID, or the name of one
// of the caller's rooms. An ID wins over a name.
func resolveRoom(ctx context.Context, conn *client.Conn, arg string) (subjects.RoomInfo, error) {
	if arg == "" {
		return subjects.RoomInfo{}, usagef("empty room")
	}
	if subjects.ValidateRoomID(arg) == nil {
		info, err := conn.GetRoom(ctx, arg)
		if err == nil {
			return info, nil
		}
		if !errors.Is(err, client.ErrNotFound) && !errors.Is(err, client.ErrForbidden) {
			return subjects.RoomInfo{}, fmt.Errorf("get room %s: %w", arg, err)
		}
		info, nerr := roomByName(ctx, conn, arg)
		if errors.Is(nerr, errNoSuchName) {
			return subjects.RoomInfo{}, fmt.Errorf("room %q: %s: %w", arg, noSuchRoom, err)
		}
		return info, nerr
	}
	info, err := roomByName(ctx, conn, arg)
	if errors.Is(err, errNoSuchName) {
		return subjects.RoomInfo{}, fmt.Errorf("room %q: %w: %s", arg, client.ErrNotFound, noSuchRoom)
	}
	return info, err
}

const noSuchRoom = "none of your rooms has that ID or name (see `unibus rooms list`)"

// errNoSuchName: none of the caller's rooms has the name.
var errNoSuchName = errors.New("no room of that name")

// roomByName looks name up among the caller's rooms (the mine reply
// carries their names) and fetches the one that matches.
func roomByName(ctx context.Context, conn *client.Conn, name string) (subjects.RoomInfo, error) {
	refs, err := conn.ListMyRooms(ctx)
	if err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("list rooms: %w", err)
	}
	var found []subjects.RoomInfo
	for _, r := range refs {
		if r.Name != name {
			continue
		}
		info, err := conn.GetRoom(ctx, r.RoomID)
		if errors.Is(err, client.ErrNotFound) || errors.Is(err, client.ErrForbidden) {
			continue // left or removed meanwhile
		}
		if err != nil {
			return subjects.RoomInfo{}, fmt.Errorf("get room %s: %w", r.RoomID, err)
		}
		found = append(found, info)
	}
	switch len(found) {
	case 0:
		return subjects.RoomInfo{}, errNoSuchName
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, f := range found {
		ids[i] = f.RoomID
	}
	return subjects.RoomInfo{}, usagef("several of your rooms are named %q: use an ID (%s)", name, strings.Join(ids, ", "))
}
