package svc

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

func (h *handlers) createRoom(ctx context.Context, c caller, req *subjects.CreateRoomRequest) (subjects.RoomInfo, error) {
	mode := cmp.Or(req.Mode, subjects.ModeE2E)
	history := cmp.Or(req.History, subjects.HistoryNone)
	if mode != subjects.ModeE2E && mode != subjects.ModeCleartext {
		return subjects.RoomInfo{}, badRequest("mode must be %q or %q, not %q", subjects.ModeE2E, subjects.ModeCleartext, mode)
	}
	if history != subjects.HistoryNone {
		return subjects.RoomInfo{}, badRequest("history must be %q (the bus keeps no room history: members see what is published while they are subscribed), not %q", subjects.HistoryNone, history)
	}
	if err := checkName(req.Name); err != nil {
		return subjects.RoomInfo{}, err
	}
	id := req.RoomID
	if id != "" {
		if _, err := parseRoomID(id); err != nil {
			return subjects.RoomInfo{}, err
		}
	}
	if mode == subjects.ModeCleartext {
		if id == "" {
			id = subjects.NewRoomID()
		}
		if h.cfg.RequireEncryptedRooms {
			return subjects.RoomInfo{}, forbidden("this deployment requires encrypted rooms: create the room with mode %q", subjects.ModeE2E)
		}
		if len(req.SealedKey) != 0 {
			return subjects.RoomInfo{}, badRequest("a cleartext room has no room key: omit sealed_key")
		}
	} else {
		if id == "" {
			return subjects.RoomInfo{}, badRequest("an encrypted room needs room_id, chosen with subjects.NewRoomID: the sealed key binds it")
		}
		if len(req.SealedKey) == 0 {
			return subjects.RoomInfo{}, badRequest("an encrypted room needs sealed_key: the room key of epoch 1 sealed to your encryption key")
		}
		if err := checkSealedKey("sealed_key", req.SealedKey); err != nil {
			return subjects.RoomInfo{}, err
		}
		u, err := h.callerUser(ctx, c, storeMessages{notFound: c.pub + " is not a registered user", notFoundCode: subjects.CodeForbidden})
		if err != nil {
			return subjects.RoomInfo{}, err
		}
		if len(u.EncKey) == 0 {
			return subjects.RoomInfo{}, badRequest("publish your encryption key (users.setkey) before creating an encrypted room")
		}
	}
	if err := h.checkRoomsOf(ctx, c.pub, true); err != nil {
		return subjects.RoomInfo{}, err
	}
	room, err := h.store.CreateRoom(ctx, kvstore.Room{
		ID:      id,
		Name:    req.Name,
		Mode:    mode,
		History: history,
		Owner:   c.pub,
	}, req.SealedKey)
	if err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{exists: "room " + id + " already exists: choose another room_id"})
	}
	return roomInfo(room), nil
}

func (h *handlers) getRoom(ctx context.Context, c caller, req *subjects.RoomRequest) (subjects.RoomInfo, error) {
	room, err := h.memberRoom(ctx, c, req.RoomID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	return roomInfo(room), nil
}

// leave removes the caller from a room. The owner cannot leave. Leaving an
// encrypted room does not rekey it (the caller holds no owner key to sign
// a rekey with): the one who left can read frames until the owner rekeys.
func (h *handlers) leave(ctx context.Context, c caller, req *subjects.RoomRequest) (subjects.RoomInfo, error) {
	room, err := h.memberRoom(ctx, c, req.RoomID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if room.Owner == c.pub {
		return subjects.RoomInfo{}, badRequest("the owner cannot leave room %s", room.ID)
	}
	if err := h.store.RemoveMember(ctx, room.ID, c.pub); err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{notFound: "you are not a member of room " + room.ID, notFoundCode: subjects.CodeForbidden})
	}
	return roomInfo(room), nil
}

func (h *handlers) members(ctx context.Context, c caller, req *subjects.RoomRequest) (subjects.MembersResponse, error) {
	room, err := h.memberRoom(ctx, c, req.RoomID)
	if err != nil {
		return subjects.MembersResponse{}, err
	}
	ms, err := h.store.ListMembers(ctx, room.ID)
	if err != nil {
		return subjects.MembersResponse{}, storeError(err, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	// The owner first, then by key.
	slices.SortFunc(ms, func(a, b kvstore.Member) int {
		if (a.Role == subjects.RoleOwner) != (b.Role == subjects.RoleOwner) {
			if a.Role == subjects.RoleOwner {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Pub, b.Pub)
	})
	pubs := make([]string, len(ms))
	for i, m := range ms {
		pubs[i] = m.Pub
	}
	users, err := h.store.GetUsers(ctx, pubs)
	if err != nil {
		return subjects.MembersResponse{}, storeError(err, storeMessages{})
	}
	out := subjects.MembersResponse{Members: make([]subjects.MemberInfo, 0, len(ms))}
	for _, m := range ms {
		info := memberInfo(m)
		if u, ok := users[m.Pub]; ok {
			info.EncKey, info.EncKeySig = u.EncKey, u.EncKeySig
		}
		out.Members = append(out.Members, info)
	}
	return out, nil
}

func (h *handlers) mine(ctx context.Context, c caller, _ *struct{}) (subjects.MineResponse, error) {
	refs, err := h.store.ListRoomsForEndpoint(ctx, c.pub)
	if err != nil {
		return subjects.MineResponse{}, storeError(err, storeMessages{})
	}
	slices.SortFunc(refs, func(a, b kvstore.RoomRef) int { return strings.Compare(a.RoomID, b.RoomID) })
	out := subjects.MineResponse{Rooms: make([]subjects.RoomRef, 0, len(refs))}
	for _, r := range refs {
		out.Rooms = append(out.Rooms, subjects.RoomRef{
			RoomID:  r.RoomID,
			Subject: r.Subject,
			Epoch:   r.Epoch,
			History: cmp.Or(r.History, subjects.HistoryNone),
			Role:    r.Role,
			Mode:    r.Mode,
			Name:    r.Name,
			Owner:   r.Owner,
		})
	}
	return out, nil
}

// The limits on rooms and members are refused with 409, not 403: the
// caller may do this in general and is not refused for who it is, but the
// current state (a full room, a user in too many rooms) conflicts with the
// request, which succeeds once a member leaves or is removed. They are
// checked before anything is written; concurrent requests may overshoot a
// limit by their number.

// checkRoomsOf refuses (409) to add pub, the caller itself (self) or an
// invitee, to one more room when it is in Config.MaxRoomsPerUser rooms.
func (h *handlers) checkRoomsOf(ctx context.Context, pub string, self bool) error {
	limit := h.cfg.MaxRoomsPerUser
	if limit < 0 {
		return nil
	}
	n, err := h.store.CountRoomsForEndpoint(ctx, pub)
	if err != nil {
		return storeError(err, storeMessages{})
	}
	if n < limit {
		return nil
	}
	if self {
		return conflict(nil, "you are a member of %d rooms, the most this deployment allows (%d): leave a room before you create another", n, limit)
	}
	return conflict(nil, "user %s is a member of %d rooms, the most this deployment allows (%d): it must leave a room before it can be invited", pub, n, limit)
}

// checkMembersOf refuses (409) one more member in a room that has
// Config.MaxMembersPerRoom members.
func (h *handlers) checkMembersOf(ctx context.Context, roomID string) error {
	limit := h.cfg.MaxMembersPerRoom
	if limit < 0 {
		return nil
	}
	n, err := h.store.CountMembers(ctx, roomID)
	if err != nil {
		return storeError(err, storeMessages{notFound: "room " + roomID + " not found"})
	}
	if n < limit {
		return nil
	}
	return conflict(nil, "room %s has %d members, the most this deployment allows (%d): remove a member before you invite another", roomID, n, limit)
}

// room reads a room by the request's room_id (404 if there is none).
func (h *handlers) room(ctx context.Context, roomID string) (kvstore.Room, error) {
	id, err := parseRoomID(roomID)
	if err != nil {
		return kvstore.Room{}, err
	}
	room, err := h.store.GetRoom(ctx, id)
	if err != nil {
		return kvstore.Room{}, storeError(err, storeMessages{notFound: "room " + id + " not found"})
	}
	return room, nil
}

// memberRoom reads a room the caller is a member of (403 otherwise).
func (h *handlers) memberRoom(ctx context.Context, c caller, roomID string) (kvstore.Room, error) {
	room, err := h.room(ctx, roomID)
	if err != nil {
		return kvstore.Room{}, err
	}
	if _, err := h.store.GetMember(ctx, room.ID, c.pub); err != nil {
		return kvstore.Room{}, storeError(err, storeMessages{notFound: "you are not a member of room " + room.ID, notFoundCode: subjects.CodeForbidden})
	}
	return room, nil
}

// ownedRoom reads a room the caller owns (403 otherwise, with "only the
// room owner may " + what) and checks the owner's signature over the
// request (401).
func (h *handlers) ownedRoom(ctx context.Context, c caller, roomID, what string, req subjects.OwnerSigned) (kvstore.Room, error) {
	room, err := h.room(ctx, roomID)
	if err != nil {
		return kvstore.Room{}, err
	}
	if room.Owner != c.pub {
		return kvstore.Room{}, forbidden("only the room owner may %s", what)
	}
	if err := subjects.VerifyOwner(room.Owner, req); err != nil {
		return kvstore.Room{}, unauthenticated(err, "owner_sig is missing or does not verify: the room owner signs the request with its identity key (subjects.SignOwner)")
	}
	return room, nil
}

// roomInfo is the wire form of a room.
func roomInfo(r kvstore.Room) subjects.RoomInfo {
	return subjects.RoomInfo{
		RoomID:    r.ID,
		Subject:   r.Subject,
		Name:      r.Name,
		Mode:      r.Mode,
		History:   cmp.Or(r.History, subjects.HistoryNone),
		Owner:     r.Owner,
		Epoch:     r.Epoch,
		NextEpoch: r.NextEpoch(),
		CreatedAt: r.CreatedAt,
	}
}

// memberInfo is the wire form of a member.
func memberInfo(m kvstore.Member) subjects.MemberInfo {
	return subjects.MemberInfo{Pub: m.Pub, Role: m.Role, JoinedEpoch: m.JoinedEpoch}
}
