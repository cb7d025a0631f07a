package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// Room is the authority on a room: its subject, mode, owner and the epoch
// of its current key.
type Room struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Name    string `json:"name,omitempty"`
	// Mode is subjects.ModeE2E or subjects.ModeCleartext.
	Mode string `json:"mode"`
	// History is the room's history policy: subjects.HistoryKeep or
	// subjects.HistoryNone. Empty in a room stored before the room log,
	// which keeps nothing (HistoryNone).
	History string `json:"policy,omitempty"`
	// HistoryMaxAge, when the room keeps history, is how long it keeps
	// its frames when that is less than the deployment's
	// (Store.HistoryMaxAge); 0 means the deployment's.
	HistoryMaxAge time.Duration `json:"history_max_age,omitempty"`
	Owner         string        `json:"owner"`
	// Salt is the salt the ID was made with: ID is
	// subjects.RoomIDFor(Owner, Mode, Salt), checked when the room is created and
	// whenever the record is read. Empty in a room stored before room IDs
	// named their owner (or by a test).
	Salt []byte `json:"salt,omitempty"`
	// Epoch is the current key epoch: 1 at creation in an encrypted room,
	// 0 in a cleartext room.
	Epoch uint64 `json:"epoch"`
	// KeyClaim is the highest epoch number a rekey has claimed (see the
	// package documentation); never reused.
	KeyClaim uint64 `json:"key_claim,omitempty"`
	// MembershipVersion changes on every member added or removed, so that a
	// rekey racing a membership change fails its compare-and-set.
	MembershipVersion uint64    `json:"membership_version,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
}

// NextEpoch is the epoch number the next rekey will claim; rekey bundles
// seal their keys for it. Zero in a cleartext room.
func (r Room) NextEpoch() uint64 {
	if !r.Encrypted() {
		return 0
	}
	return max(r.Epoch, r.KeyClaim) + 1
}

// Encrypted reports whether the room is end-to-end encrypted.
func (r Room) Encrypted() bool { return r.Mode == subjects.ModeE2E }

// Member is one member of a room.
type Member struct {
	RoomID      string    `json:"room_id"`
	Pub         string    `json:"pub"`
	Role        string    `json:"role"`
	JoinedEpoch uint64    `json:"joined_epoch"`
	AddedAt     time.Time `json:"added_at"`
	// FromSeq is the room log's position (LogPosition) when the member
	// was invited, or for the owner when the room was created: the
	// member sees the frames stored after it (ReadLog). 0 in a record
	// stored before the room log: everything.
	FromSeq uint64 `json:"from_seq,omitempty"`
}

// RoomRef is what a member needs to find and use a room.
type RoomRef struct {
	RoomID  string `json:"room_id"`
	Subject string `json:"subject"`
	Epoch   uint64 `json:"epoch"`
	History string `json:"policy"`
	Role    string `json:"role"`
	Mode    string `json:"mode"`
	Name    string `json:"name,omitempty"`
	Owner   string `json:"owner,omitempty"`
	Salt    []byte `json:"salt,omitempty"`
}

// indexEntry is the value of a rooms_by_member key: the member and room
// it stands for (checked against the key when read) and the role.
type indexEntry struct {
	Pub    string `json:"pub"`
	RoomID string `json:"room_id"`
	Role   string `json:"role"`
}

func memberKey(roomID, pub string) string { return roomID + "." + pub }
func indexKey(pub, roomID string) string  { return pub + "." + roomID }
func roomKeyKey(roomID string, epoch uint64, pub string) string {
	return fmt.Sprintf("%s.%d.%s", roomID, epoch, pub)
}

// roomAndUser validates a room ID and returns pub normalized: the
// arguments of every operation on one user's place in one room.
func roomAndUser(roomID, pub string) (string, error) {
	if err := validRoomID(roomID); err != nil {
		return "", err
	}
	return normalizeUser(pub)
}

func validRoomID(id string) error {
	if err := subjects.ValidateRoomID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// CreateRoom stores a new room owned by r.Owner with the owner as its first
// member. A room with a salt must have the ID subjects.RoomIDFor(r.Owner, r.Mode,
// r.Salt) (ErrInvalid otherwise). In an encrypted room ownerKey is the room
// key of epoch 1 sealed to the owner, with the owner's grant, and is
// required; in a cleartext room it must be empty. A room with the same ID
// is ErrExists, unless it is this very room half-created by an earlier
// attempt, which is then completed.
func (s *Store) CreateRoom(ctx context.Context, r Room, ownerKey SealedKey) (Room, error) {
	if err := validRoomID(r.ID); err != nil {
		return Room{}, err
	}
	owner, err := normalizeUser(r.Owner)
	if err != nil {
		return Room{}, err
	}
	r.Owner = owner
	if len(r.Salt) != 0 {
		if err := subjects.CheckRoomOwner(r.ID, r.Owner, r.Mode, r.Salt); err != nil {
			return Room{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	switch r.Mode {
	case subjects.ModeE2E:
		if err := ownerKey.check(owner); err != nil {
			return Room{}, fmt.Errorf("create room %s: %w", r.ID, err)
		}
		r.Epoch, r.KeyClaim = 1, 1
	case subjects.ModeCleartext:
		if len(ownerKey.Sealed) != 0 || len(ownerKey.Grant) != 0 {
			return Room{}, fmt.Errorf("%w: a cleartext room has no room key", ErrInvalid)
		}
		r.Epoch, r.KeyClaim = 0, 0
	default:
		return Room{}, fmt.Errorf("%w: room mode must be %q or %q, got %q", ErrInvalid, subjects.ModeE2E, subjects.ModeCleartext, r.Mode)
	}
	subject, err := subjects.Room(r.ID)
	if err != nil {
		return Room{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r.Subject = subject
	r.CreatedAt = s.now().UTC()
	r.MembershipVersion = 0
	switch {
	case r.History != "" && r.History != subjects.HistoryKeep && r.History != subjects.HistoryNone:
		return Room{}, fmt.Errorf("%w: history must be %q or %q, got %q", ErrInvalid, subjects.HistoryKeep, subjects.HistoryNone, r.History)
	case r.HistoryMaxAge < 0:
		return Room{}, fmt.Errorf("%w: a room's maximum age of frames must not be negative, got %s", ErrInvalid, r.HistoryMaxAge)
	}

	ctx, cancel := s.bound(ctx)
	defer cancel()
	// The owner sees what is stored from now on.
	fromSeq, err := s.LogPosition(ctx)
	if err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	if err := createJSON(ctx, s.rooms, r.ID, r); err != nil {
		if !errors.Is(err, ErrExists) {
			return Room{}, fmt.Errorf("create room: %w", err)
		}
		// Resume our own half-created room; refuse anyone else's.
		existing, _, gerr := s.getRoom(ctx, r.ID)
		if gerr != nil {
			return Room{}, fmt.Errorf("create room: %w", gerr)
		}
		if existing.Owner != r.Owner || existing.Mode != r.Mode || existing.MembershipVersion != 0 {
			return Room{}, fmt.Errorf("create room %s: %w", r.ID, ErrExists)
		}
		if _, err := s.getMember(ctx, r.ID, owner); err == nil {
			return Room{}, fmt.Errorf("create room %s: %w", r.ID, ErrExists)
		}
		r = existing
	}
	if r.Encrypted() {
		if err := s.putRoomKey(ctx, r.ID, r.Epoch, owner, ownerKey); err != nil {
			return Room{}, fmt.Errorf("create room: store owner key: %w", err)
		}
	}
	m := Member{RoomID: r.ID, Pub: owner, Role: subjects.RoleOwner, JoinedEpoch: r.Epoch, AddedAt: r.CreatedAt, FromSeq: fromSeq}
	if err := putJSON(ctx, s.members, memberKey(r.ID, owner), m); err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	if err := putJSON(ctx, s.byMember, indexKey(owner, r.ID), indexEntry{Pub: owner, RoomID: r.ID, Role: m.Role}); err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	return r, nil
}

// GetRoom returns a room.
func (s *Store) GetRoom(ctx context.Context, roomID string) (Room, error) {
	if err := validRoomID(roomID); err != nil {
		return Room{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	r, _, err := s.getRoom(ctx, roomID)
	return r, err
}

func (s *Store) getRoom(ctx context.Context, roomID string) (Room, uint64, error) {
	r, rev, err := getRecord[Room](ctx, s, s.rooms, roomID)
	if errors.Is(err, ErrNotFound) {
		return Room{}, 0, fmt.Errorf("room %s: %w", roomID, err)
	}
	if err != nil {
		return Room{}, 0, fmt.Errorf("get room: %w", err)
	}
	return r, rev, nil
}

// GetMember returns pub's membership of a room.
func (s *Store) GetMember(ctx context.Context, roomID, pub string) (Member, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Member{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getMember(ctx, roomID, pub)
}

func (s *Store) getMember(ctx context.Context, roomID, pub string) (Member, error) {
	m, _, err := getRecord[Member](ctx, s, s.members, memberKey(roomID, pub))
	if errors.Is(err, ErrNotFound) {
		return Member{}, fmt.Errorf("member %s of room %s: %w", pub, roomID, err)
	}
	if err != nil {
		return Member{}, fmt.Errorf("get member: %w", err)
	}
	return m, nil
}

// AddMember adds pub to a room with role. In an encrypted room epoch must be
// the room's current epoch (ErrConflict otherwise) and key the room key of
// that epoch sealed to pub, with the owner's grant; in a cleartext room key
// must be empty. An existing member is ErrExists; a member half-added by an
// earlier attempt is completed.
func (s *Store) AddMember(ctx context.Context, roomID, pub, role string, epoch uint64, key SealedKey) (Member, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Member{}, err
	}
	if role != subjects.RoleMember && role != subjects.RoleOwner {
		return Member{}, fmt.Errorf("%w: role must be %q or %q, got %q", ErrInvalid, subjects.RoleMember, subjects.RoleOwner, role)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	room, _, err := s.getRoom(ctx, roomID)
	if err != nil {
		return Member{}, err
	}
	if err := checkKeyFor(room, pub, epoch, key); err != nil {
		return Member{}, fmt.Errorf("add member: %w", err)
	}

	existing, err := s.getMember(ctx, roomID, pub)
	switch {
	case err == nil:
		indexed, ierr := exists(ctx, s.byMember, indexKey(pub, roomID))
		if ierr != nil {
			return Member{}, fmt.Errorf("add member: %w", ierr)
		}
		if indexed {
			return Member{}, fmt.Errorf("add member %s to room %s: %w", pub, roomID, ErrExists)
		}
		// Half-added earlier: complete the touch and the index below.
		role = existing.Role
	case errors.Is(err, ErrNotFound):
		fromSeq, err := s.LogPosition(ctx)
		if err != nil {
			return Member{}, fmt.Errorf("add member: %w", err)
		}
		if room.Encrypted() {
			if err := s.putRoomKey(ctx, roomID, epoch, pub, key); err != nil {
				return Member{}, fmt.Errorf("add member: store sealed key: %w", err)
			}
		}
		existing = Member{RoomID: roomID, Pub: pub, Role: role, JoinedEpoch: room.Epoch, AddedAt: s.now().UTC(), FromSeq: fromSeq}
		if err := putJSON(ctx, s.members, memberKey(roomID, pub), existing); err != nil {
			return Member{}, fmt.Errorf("add member: %w", err)
		}
	default:
		return Member{}, fmt.Errorf("add member: %w", err)
	}

	if err := s.touchRoom(ctx, roomID, existing.JoinedEpoch, room.Encrypted()); err != nil {
		if errors.Is(err, ErrConflict) {
			// The room moved to an epoch this member has no key for: undo.
			if derr := deleteKey(ctx, s.members, memberKey(roomID, pub)); derr != nil {
				return Member{}, fmt.Errorf("add member: roll back after conflict: %w", derr)
			}
		}
		return Member{}, fmt.Errorf("add member: %w", err)
	}
	if err := putJSON(ctx, s.byMember, indexKey(pub, roomID), indexEntry{Pub: pub, RoomID: roomID, Role: role}); err != nil {
		return Member{}, fmt.Errorf("add member: %w", err)
	}
	return existing, nil
}

// touchRoom bumps the room's membership version by compare-and-set. When
// checkEpoch is set, a room no longer at epoch is ErrConflict.
func (s *Store) touchRoom(ctx context.Context, roomID string, epoch uint64, checkEpoch bool) error {
	for {
		room, rev, err := s.getRoom(ctx, roomID)
		if err != nil {
			return err
		}
		if checkEpoch && room.Epoch != epoch {
			return fmt.Errorf("room %s moved from epoch %d to %d: %w", roomID, epoch, room.Epoch, ErrConflict)
		}
		room.MembershipVersion++
		_, err = updateJSON(ctx, s.rooms, roomID, room, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		return err
	}
}

// RemoveMember removes pub from a room: index first, then the member
// record, then the room is touched so that a racing rekey that still
// included pub fails. Removing a non-member is ErrNotFound (after cleaning up
// any half-removed remains).
func (s *Store) RemoveMember(ctx context.Context, roomID, pub string) error {
	if err := validRoomID(roomID); err != nil {
		return err
	}
	pub, err := normalizeUser(pub)
	if err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return err
	}
	_, merr := s.getMember(ctx, roomID, pub)
	if merr != nil && !errors.Is(merr, ErrNotFound) {
		return fmt.Errorf("remove member: %w", merr)
	}
	if err := deleteKey(ctx, s.byMember, indexKey(pub, roomID)); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if err := deleteKey(ctx, s.members, memberKey(roomID, pub)); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if err := s.touchRoom(ctx, roomID, 0, false); err != nil {
		return fmt.Errorf("remove member: %w", err)
	}
	if merr != nil {
		return merr
	}
	return nil
}

// ListMembers returns the members of a room.
func (s *Store) ListMembers(ctx context.Context, roomID string) ([]Member, error) {
	if err := validRoomID(roomID); err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return nil, err
	}
	return s.listMembers(ctx, roomID)
}

// keyHolders returns who must hold the keys of a room's next epoch: its
// members and its pending invitees, each once (an invitee being accepted
// may show as both), without the revoked users among them, read with one
// direct get of their user records. Only a user whose record says it is
// revoked is left out: a member whose record is missing stays (the store
// does not require members to be registered).
func (s *Store) keyHolders(ctx context.Context, roomID string) ([]string, error) {
	members, err := s.listMembers(ctx, roomID)
	if err != nil {
		return nil, err
	}
	invitations, err := s.roomInvitations(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	pubs := make([]string, 0, len(members)+len(invitations))
	for _, m := range members {
		pubs = append(pubs, m.Pub)
	}
	for _, inv := range invitations {
		pubs = append(pubs, inv.Pub)
	}
	slices.Sort(pubs)
	pubs = slices.Compact(pubs)
	if len(pubs) == 0 {
		return pubs, nil
	}
	entries, err := getLast(ctx, s.js, BucketUsers, pubs)
	if err != nil {
		return nil, fmt.Errorf("read members' users: %w", err)
	}
	revoked := map[string]bool{}
	for _, u := range decodeRecords[User](s, BucketUsers, entries) {
		if u.Revoked() {
			revoked[u.Pub] = true
		}
	}
	return slices.DeleteFunc(pubs, func(pub string) bool { return revoked[pub] }), nil
}

func (s *Store) listMembers(ctx context.Context, roomID string) ([]Member, error) {
	entries, err := listEntries(ctx, s.members, roomID+".*")
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return decodeRecords[Member](s, BucketMembers, entries), nil
}

// CountMembers returns the number of members of a room (ErrNotFound if
// there is no such room). It reads the member records with one multi-last
// direct get while the room has at most 1024 members, so its cost follows
// the room's size, not the bucket's.
func (s *Store) CountMembers(ctx context.Context, roomID string) (int, error) {
	if err := validRoomID(roomID); err != nil {
		return 0, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return 0, err
	}
	n, err := s.count(ctx, s.members, BucketMembers, roomID+".*")
	if err != nil {
		return 0, fmt.Errorf("count members of room %s: %w", roomID, err)
	}
	return n, nil
}

// CountRoomsForEndpoint returns the number of rooms pub belongs to, from
// the reverse index (as ListRoomsForEndpoint, without reading the rooms).
func (s *Store) CountRoomsForEndpoint(ctx context.Context, pub string) (int, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.count(ctx, s.byMember, BucketRoomsByMember, pub+".*")
	if err != nil {
		return 0, fmt.Errorf("count rooms of %s: %w", pub, err)
	}
	return n, nil
}

// count returns the number of current keys of kv (bucket) that match
// filter: one multi-last direct get, or a listing when more keys match
// than one direct get returns.
func (s *Store) count(ctx context.Context, kv jetstream.KeyValue, bucket, filter string) (int, error) {
	entries, err := getLast(ctx, s.js, bucket, []string{filter})
	if errors.Is(err, errTooManyResults) {
		entries, err = listEntries(ctx, kv, filter)
	}
	if err != nil {
		return 0, err
	}
	return len(entries), nil
}

// ListRoomsForEndpoint returns the rooms pub belongs to, through the reverse
// index: two direct gets answered from the streams' subject indexes, so the
// cost grows with pub's rooms, not with all rooms. An endpoint in no rooms
// gets an empty slice.
func (s *Store) ListRoomsForEndpoint(ctx context.Context, pub string) ([]RoomRef, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	index, err := getLast(ctx, s.js, BucketRoomsByMember, []string{pub + ".*"})
	if errors.Is(err, errTooManyResults) {
		index, err = listEntries(ctx, s.byMember, pub+".*")
	}
	if err != nil {
		return nil, fmt.Errorf("list rooms of %s: %w", pub, err)
	}
	roles := make(map[string]string, len(index))
	ids := make([]string, 0, len(index))
	for _, idx := range decodeRecords[indexEntry](s, BucketRoomsByMember, index) {
		roles[idx.RoomID] = idx.Role
		ids = append(ids, idx.RoomID)
	}
	out := make([]RoomRef, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rooms, err := getLast(ctx, s.js, BucketRooms, ids)
	if err != nil {
		return nil, fmt.Errorf("list rooms of %s: %w", pub, err)
	}
	// A room missing here was half-created or deleted: it is left out.
	for _, room := range decodeRecords[Room](s, BucketRooms, rooms) {
		out = append(out, RoomRef{
			RoomID: room.ID, Subject: room.Subject, Epoch: room.Epoch,
			History: room.History, Role: roles[room.ID], Mode: room.Mode,
			Name: room.Name, Owner: room.Owner, Salt: room.Salt,
		})
	}
	return out, nil
}

// checkKeyFor checks the sealed key that gives pub a room's key of epoch:
// in an encrypted room a valid key and grant for the room's current epoch
// (ErrInvalid, or ErrConflict for another epoch), in a cleartext room none.
func checkKeyFor(room Room, pub string, epoch uint64, key SealedKey) error {
	if !room.Encrypted() {
		if len(key.Sealed) != 0 || len(key.Grant) != 0 {
			return fmt.Errorf("%w: a cleartext room has no room key", ErrInvalid)
		}
		return nil
	}
	if err := key.check(pub); err != nil {
		return err
	}
	if epoch != room.Epoch {
		return fmt.Errorf("key for epoch %d but room %s is at epoch %d: %w", epoch, room.ID, room.Epoch, ErrConflict)
	}
	return nil
}
