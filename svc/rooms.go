package svc

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

func (h *handlers) createRoom(ctx context.Context, c caller, req *subjects.CreateRoomRequest) (subjects.RoomInfo, error) {
	mode := cmp.Or(req.Mode, subjects.ModeE2E)
	if mode != subjects.ModeE2E && mode != subjects.ModeCleartext {
		return subjects.RoomInfo{}, badRequest("mode must be %q or %q, not %q", subjects.ModeE2E, subjects.ModeCleartext, mode)
	}
	history, maxAge, err := h.parseHistory(req)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := checkName(req.Name); err != nil {
		return subjects.RoomInfo{}, err
	}
	id, salt, err := ownRoomID(c.pub, mode, req)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if mode == subjects.ModeCleartext {
		if h.cfg.RequireEncryptedRooms {
			return subjects.RoomInfo{}, forbidden("this deployment requires encrypted rooms: create the room with mode %q", subjects.ModeE2E)
		}
		if len(req.SealedKey) != 0 {
			return subjects.RoomInfo{}, badRequest("a cleartext room has no room key: omit sealed_key")
		}
		if len(req.Grant) != 0 {
			return subjects.RoomInfo{}, badRequest("a cleartext room has no room key: omit grant")
		}
	} else {
		if len(req.SealedKey) == 0 {
			return subjects.RoomInfo{}, badRequest("an encrypted room needs sealed_key: the room key of epoch 1 sealed to your encryption key")
		}
		if err := checkSealedKey("sealed_key", req.SealedKey); err != nil {
			return subjects.RoomInfo{}, err
		}
		if err := checkGrant("grant", req.Grant); err != nil {
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
		Salt:    salt,

		HistoryMaxAge: maxAge,
	}, kvstore.SealedKey{Sealed: req.SealedKey, Grant: req.Grant})
	if err != nil {
		return subjects.RoomInfo{}, storeError(err, storeMessages{exists: "room " + id + " already exists: choose another room_id"})
	}
	return roomInfo(room), nil
}

// minHistoryMaxAge is the shortest history a room may keep of its own.
const minHistoryMaxAge = time.Minute

// parseHistory validates a new room's history policy: HistoryKeep (the
// default) or HistoryNone, and with HistoryKeep an optional maximum age of
// its own, a Go duration from minHistoryMaxAge to the deployment's
// (kvstore.Store.HistoryMaxAge); 0 means the deployment's.
func (h *handlers) parseHistory(req *subjects.CreateRoomRequest) (string, time.Duration, error) {
	history := cmp.Or(req.History, subjects.HistoryKeep)
	if history != subjects.HistoryKeep && history != subjects.HistoryNone {
		return "", 0, badRequest("history must be %q (the room log keeps the frames, which members read back from their invitation on) or %q (nothing is stored), not %q",
			subjects.HistoryKeep, subjects.HistoryNone, history)
	}
	if req.HistoryMaxAge == "" {
		return history, 0, nil
	}
	if history != subjects.HistoryKeep {
		return "", 0, badRequest("history_max_age goes with history %q: a room with history %q stores nothing", subjects.HistoryKeep, subjects.HistoryNone)
	}
	if len(req.HistoryMaxAge) > maxDurationLen {
		return "", 0, badRequest("history_max_age is %d bytes: give a Go duration such as \"72h\"", len(req.HistoryMaxAge))
	}
	d, err := time.ParseDuration(req.HistoryMaxAge)
	if err != nil {
		return "", 0, newError(subjects.CodeBadRequest, err, "history_max_age %q is not a Go duration (such as \"72h\" or \"90m\")", req.HistoryMaxAge)
	}
	limit := h.store.HistoryMaxAge()
	if d < minHistoryMaxAge || d > limit {
		return "", 0, badRequest("history_max_age must be from %s to %s (this deployment's), not %s", minHistoryMaxAge, limit, d)
	}
	return history, d, nil
}

// maxDurationLen bounds the text of a duration in a request, which the
// error messages repeat.
const maxDurationLen = 32

// ownRoomID returns the ID and salt of the room the caller creates: the
// request's room_id, which must be subjects.RoomIDFor(caller, mode, salt), so
// that an ID names its owner and cannot be chosen to read like a name; or,
// for a cleartext room that leaves both empty, a new one made here.
func ownRoomID(caller, mode string, req *subjects.CreateRoomRequest) (string, []byte, error) {
	switch {
	case req.RoomID == "" && len(req.Salt) == 0 && mode == subjects.ModeCleartext:
		id, salt := subjects.NewRoomID(caller, mode)
		return id, salt, nil
	case req.RoomID == "" && mode == subjects.ModeE2E:
		return "", nil, badRequest("an encrypted room needs room_id and salt, made with subjects.NewRoomID from your key: the sealed key binds the ID")
	case req.RoomID == "":
		return "", nil, badRequest("salt without room_id: send the room_id made with subjects.NewRoomID from your key and that salt, or neither")
	}
	id, err := parseRoomID(req.RoomID)
	if err != nil {
		return "", nil, err
	}
	if len(req.Salt) == 0 {
		return "", nil, badRequest("room_id needs its salt: the %d bytes subjects.NewRoomID made it with from your key", subjects.RoomSaltLen)
	}
	if err := subjects.CheckRoomOwner(id, caller, mode, req.Salt); err != nil {
		return "", nil, newError(subjects.CodeBadRequest, err, "room_id must be made from your own key and salt with subjects.NewRoomID (subjects.RoomIDFor): %s", err.Error())
	}
	return id, req.Salt, nil
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

// members lists a room's current members: its member records less the
// revoked users, each with its encryption key and, in an encrypted room,
// the owner's grant of the current epoch; then its pending invitees in the
// same way, with role subjects.RoleInvited, so that the owner's rekey
// seals to them. With req.Pub it answers for that one user from point
// reads of its records instead of the whole list: a receiver checks a
// sender it does not know yet, and an invitee is not a member.
func (h *handlers) members(ctx context.Context, c caller, req *subjects.MembersRequest) (subjects.MembersResponse, error) {
	room, err := h.memberRoom(ctx, c, req.RoomID)
	if err != nil {
		return subjects.MembersResponse{}, err
	}
	if req.Pub != "" {
		pub, err := parsePub("pub", req.Pub)
		if err != nil {
			return subjects.MembersResponse{}, err
		}
		return h.member(ctx, room, pub)
	}
	ms, err := h.store.ListMembers(ctx, room.ID)
	if err != nil {
		return subjects.MembersResponse{}, storeError(err, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	invitations, err := h.store.ListRoomInvitations(ctx, room.ID)
	if err != nil {
		return subjects.MembersResponse{}, storeError(err, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	// The owner first, then by key; then the invitees by key (as listed),
	// but one being accepted, who shows as a member already.
	slices.SortFunc(ms, func(a, b kvstore.Member) int {
		if (a.Role == subjects.RoleOwner) != (b.Role == subjects.RoleOwner) {
			if a.Role == subjects.RoleOwner {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Pub, b.Pub)
	})
	infos := make([]subjects.MemberInfo, 0, len(ms)+len(invitations))
	for _, m := range ms {
		infos = append(infos, memberInfo(m))
	}
	for _, inv := range invitations {
		if !slices.ContainsFunc(ms, func(m kvstore.Member) bool { return m.Pub == inv.Pub }) {
			infos = append(infos, invitedInfo(inv))
		}
	}
	users, grants, err := h.membersDetail(ctx, room, infos)
	if err != nil {
		return subjects.MembersResponse{}, err
	}
	out := subjects.MembersResponse{Members: make([]subjects.MemberInfo, 0, len(infos))}
	for _, info := range infos {
		u, ok := users[info.Pub]
		if ok && u.Revoked() {
			continue
		}
		if ok {
			info.EncKey, info.EncKeySig, info.EncKeyVersion, info.EncKeyIssuedAt = u.EncKey, u.EncKeySig, u.EncKeyVersion, u.EncKeyIssuedAt
		}
		info.Grant = grants[info.Pub]
		out.Members = append(out.Members, info)
	}
	return out, nil
}

// membersDetail reads, concurrently, the user records of ms and, in an
// encrypted room, the grants of the room's current epoch: two direct gets
// that each cost one round trip.
func (h *handlers) membersDetail(ctx context.Context, room kvstore.Room, ms []subjects.MemberInfo) (map[string]kvstore.User, map[string][]byte, error) {
	pubs := make([]string, len(ms))
	for i, m := range ms {
		pubs[i] = m.Pub
	}
	var (
		grants   map[string][]byte
		grantErr error
		done     = make(chan struct{})
	)
	if room.Encrypted() {
		go func() {
			defer close(done)
			grants, grantErr = h.store.RoomGrants(ctx, room)
		}()
	} else {
		close(done)
	}
	users, err := h.store.GetUsers(ctx, pubs)
	<-done
	if err != nil {
		return nil, nil, storeError(err, storeMessages{})
	}
	if grantErr != nil {
		return nil, nil, storeError(grantErr, storeMessages{notFound: "room " + room.ID + " not found"})
	}
	return users, grants, nil
}

// member answers a members request about one user: it alone if it is a
// current member (not revoked), an empty list otherwise: a pending invitee
// is not a member (it has no member record).
func (h *handlers) member(ctx context.Context, room kvstore.Room, pub string) (subjects.MembersResponse, error) {
	none := subjects.MembersResponse{Members: []subjects.MemberInfo{}}
	m, err := h.store.GetMember(ctx, room.ID, pub)
	if errors.Is(err, kvstore.ErrNotFound) {
		return none, nil
	}
	if err != nil {
		return subjects.MembersResponse{}, storeError(err, storeMessages{})
	}
	info := memberInfo(m)
	u, err := h.store.GetUser(ctx, pub)
	switch {
	case err == nil && u.Revoked():
		return none, nil
	case err == nil:
		info.EncKey, info.EncKeySig, info.EncKeyVersion, info.EncKeyIssuedAt = u.EncKey, u.EncKeySig, u.EncKeyVersion, u.EncKeyIssuedAt
	case !errors.Is(err, kvstore.ErrNotFound):
		return subjects.MembersResponse{}, storeError(err, storeMessages{})
	}
	if room.Encrypted() {
		k, err := h.store.GetRoomKey(ctx, room.ID, room.Epoch, pub)
		switch {
		case err == nil:
			info.Grant = k.Grant
		case !errors.Is(err, kvstore.ErrNotFound):
			return subjects.MembersResponse{}, storeError(err, storeMessages{})
		}
	}
	return subjects.MembersResponse{Members: []subjects.MemberInfo{info}}, nil
}

// mine lists the caller's rooms and its pending invitations.
func (h *handlers) mine(ctx context.Context, c caller, _ *struct{}) (subjects.MineResponse, error) {
	refs, err := h.store.ListRoomsForEndpoint(ctx, c.pub)
	if err != nil {
		return subjects.MineResponse{}, storeError(err, storeMessages{})
	}
	invitations, err := h.store.ListInvitations(ctx, c.pub)
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
			Salt:    r.Salt,
		})
	}
	out.Invitations = make([]subjects.Invitation, 0, len(invitations))
	for _, inv := range invitations {
		out.Invitations = append(out.Invitations, invitation(inv))
	}
	return out, nil
}

// The limits on rooms and members are refused with 409, not 403: the
// caller may do this in general and is not refused for who it is, but the
// current state (a full room, a user in too many rooms) conflicts with the
// request, which succeeds once a member leaves or is removed. They are
// checked before anything is written; concurrent requests may overshoot a
// limit by their number.

// checkRoomsOf refuses (409) to add the caller pub to one more room,
// creating it (creating) or accepting an invitation to it, when it is in
// Config.MaxRoomsPerUser rooms. Pending invitations do not count: only the
// rooms the caller chose to be in do.
func (h *handlers) checkRoomsOf(ctx context.Context, pub string, creating bool) error {
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
	if creating {
		return conflict(nil, "you are a member of %d rooms, the most this deployment allows (%d): leave a room before you create another", n, limit)
	}
	return conflict(nil, "you are a member of %d rooms, the most this deployment allows (%d): leave a room before you accept an invitation to another", n, limit)
}

// checkMembersOf refuses (409) one more invitation to a room whose members
// and pending invitees together number Config.MaxMembersPerRoom.
func (h *handlers) checkMembersOf(ctx context.Context, roomID string) error {
	limit := h.cfg.MaxMembersPerRoom
	if limit < 0 {
		return nil
	}
	n, err := h.store.CountMembers(ctx, roomID)
	if err != nil {
		return storeError(err, storeMessages{notFound: "room " + roomID + " not found"})
	}
	invited, err := h.store.CountRoomInvitations(ctx, roomID)
	if err != nil {
		return storeError(err, storeMessages{notFound: "room " + roomID + " not found"})
	}
	if n+invited < limit {
		return nil
	}
	if invited == 0 {
		return conflict(nil, "room %s has %d members, the most this deployment allows (%d): remove a member before you invite another", roomID, n, limit)
	}
	return conflict(nil, "room %s has %d members and %d pending invitations, together the most this deployment allows (%d): remove a member or cancel an invitation (remove) before you invite another", roomID, n, invited, limit)
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
		RoomID:  r.ID,
		Subject: r.Subject,
		Name:    r.Name,
		Mode:    r.Mode,
		History: cmp.Or(r.History, subjects.HistoryNone),
		Owner:   r.Owner,

		HistoryMaxAge: historyMaxAge(r.HistoryMaxAge),
		Salt:          r.Salt,
		Epoch:         r.Epoch,
		NextEpoch:     r.NextEpoch(),
		CreatedAt:     r.CreatedAt,
	}
}

// historyMaxAge is the wire form of a room's own maximum age of frames:
// empty when it keeps the deployment's.
func historyMaxAge(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// memberInfo is the wire form of a member.
func memberInfo(m kvstore.Member) subjects.MemberInfo {
	return subjects.MemberInfo{Pub: m.Pub, Role: m.Role, JoinedEpoch: m.JoinedEpoch}
}

// invitedInfo is the wire form of a pending invitee, as a member list
// shows it.
func invitedInfo(inv kvstore.Invitation) subjects.MemberInfo {
	return subjects.MemberInfo{Pub: inv.Pub, Role: subjects.RoleInvited, JoinedEpoch: inv.Epoch}
}

// invitation is the wire form of an invitation, as its invitee sees it.
func invitation(inv kvstore.Invitation) subjects.Invitation {
	return subjects.Invitation{
		RoomID: inv.RoomID, Name: inv.Name, Mode: inv.Mode, Owner: inv.Owner, Salt: inv.Salt,
		Epoch: inv.Epoch, InvitedAt: inv.InvitedAt, ExpiresAt: inv.ExpiresAt(),
	}
}
