package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// InvitationTTL is how long an invitation waits for its answer: the TTL of
// BucketInvitations (its stream's MaxAge), after which JetStream removes
// it, and checked again
// whenever an invitation is read, so that one older than this is absent
// whatever the bucket still holds.
const InvitationTTL = 7 * 24 * time.Hour

// Errors of invitations. Each matches the more general error it wraps.
var (
	// ErrAlreadyMember means that the invitee is a member of the room
	// already; it matches ErrExists.
	ErrAlreadyMember = fmt.Errorf("already a member: %w", ErrExists)
	// ErrAlreadyInvited means that the invitee has a pending invitation to
	// the room already; it matches ErrExists.
	ErrAlreadyInvited = fmt.Errorf("already invited: %w", ErrExists)
	// ErrInvitationStale means that an invitation can no longer be
	// accepted: the room moved to an epoch whose key was not sealed to the
	// invitee (a rekey raced the invitation, or the invitee was revoked
	// meanwhile). The invitation is removed; the owner invites again. It
	// matches ErrConflict.
	ErrInvitationStale = fmt.Errorf("invitation outdated: the invitee holds no key of the room's current epoch: %w", ErrConflict)
)

// Invitation is a pending invitation: the room's owner proposed that Pub
// join the room. It grants Pub nothing and counts against none of its
// quotas: it lives in its own bucket, which neither the member records nor
// the reverse index that the auth callout reads ever look at, until Pub
// accepts it (AcceptInvitation). In an encrypted room the invitee's sealed
// key of the epoch of the invitation is in UNIBUS_room_keys, and every
// rekey while the invitation is pending must seal the new key to it too
// (see RekeyTo). It carries what a listing of the invitee's invitations
// shows, so that listing them reads no room record.
type Invitation struct {
	RoomID string `json:"room_id"`
	// Pub is the invitee.
	Pub string `json:"pub"`
	// InvitedBy is who invited Pub: the room's owner.
	InvitedBy string `json:"invited_by"`
	// Epoch is the room's epoch at the invitation: the first epoch whose
	// key is sealed to Pub (zero in a cleartext room).
	Epoch     uint64    `json:"epoch"`
	InvitedAt time.Time `json:"invited_at"`
	// Name, Mode, Owner and Salt are the room's (see Room).
	Name  string `json:"name,omitempty"`
	Mode  string `json:"mode"`
	Owner string `json:"owner"`
	Salt  []byte `json:"salt,omitempty"`
	// FromSeq is the room log's position (LogPosition) at the
	// invitation: the member's FromSeq once accepted, so that it sees
	// the frames stored since it was invited.
	FromSeq uint64 `json:"from_seq,omitempty"`
}

// ExpiresAt is when the invitation lapses unanswered.
func (i Invitation) ExpiresAt() time.Time { return i.InvitedAt.Add(InvitationTTL) }

// invitationKey is the key of pub's invitation to a room: the invitee
// first, so that pub's invitations are "pub.*" and a room's "*.roomID".
func invitationKey(pub, roomID string) string { return pub + "." + roomID }

// live reports whether inv has not expired (see InvitationTTL).
func (s *Store) live(inv Invitation) bool { return s.now().Before(inv.ExpiresAt()) }

// Invite stores a pending invitation of pub to a room, made by the room's
// owner. In an encrypted room epoch must be the room's current epoch
// (ErrConflict otherwise) and key the room key of that epoch sealed to pub,
// with the owner's grant; in a cleartext room key must be empty. A member
// is ErrAlreadyMember, a pending invitation ErrAlreadyInvited (both match
// ErrExists); nothing is written then.
//
// The writes are: the sealed key, the invitation (create-only), then the
// room touched by compare-and-set with its epoch checked, so that a
// concurrent rekey that did not seal its key to pub fails its commit. If
// the room moved to another epoch first, the invitation is removed again
// and ErrConflict returned. The member records and the reverse index are
// not touched: the invitation grants nothing.
func (s *Store) Invite(ctx context.Context, roomID, pub string, epoch uint64, key SealedKey) (Invitation, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Invitation{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	room, _, err := s.getRoom(ctx, roomID)
	if err != nil {
		return Invitation{}, err
	}
	if err := checkKeyFor(room, pub, epoch, key); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	switch _, err := s.getMember(ctx, roomID, pub); {
	case err == nil || pub == room.Owner:
		return Invitation{}, fmt.Errorf("invite %s to room %s: %w", pub, roomID, ErrAlreadyMember)
	case !errors.Is(err, ErrNotFound):
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	k := invitationKey(pub, roomID)
	// An expired or invalid record that the bucket still holds is
	// replaced (at its revision); a live one is a pending invitation.
	var staleRev uint64
	switch e, err := s.invites.Get(ctx, k); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return Invitation{}, fmt.Errorf("invite: get %s/%s: %w", BucketInvitations, k, err)
	default:
		if old, derr := decodeRecord[Invitation](s, BucketInvitations, k, e.Value()); derr == nil && s.live(old) {
			return Invitation{}, fmt.Errorf("invite %s to room %s: %w", pub, roomID, ErrAlreadyInvited)
		}
		staleRev = e.Revision()
	}

	fromSeq, err := s.LogPosition(ctx)
	if err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	inv := Invitation{
		RoomID: roomID, Pub: pub, InvitedBy: room.Owner, Epoch: room.Epoch, InvitedAt: s.now().UTC(),
		Name: room.Name, Mode: room.Mode, Owner: room.Owner, Salt: room.Salt, FromSeq: fromSeq,
	}
	if room.Encrypted() {
		if err := s.putRoomKey(ctx, roomID, epoch, pub, key); err != nil {
			return Invitation{}, fmt.Errorf("invite: store sealed key: %w", err)
		}
	}
	if staleRev != 0 {
		_, err = updateJSON(ctx, s.invites, k, inv, staleRev)
	} else {
		err = createJSON(ctx, s.invites, k, inv)
	}
	if errors.Is(err, ErrExists) || errors.Is(err, ErrConflict) {
		return Invitation{}, fmt.Errorf("invite %s to room %s: %w", pub, roomID, ErrAlreadyInvited)
	}
	if err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	if err := s.touchRoom(ctx, roomID, room.Epoch, room.Encrypted()); err != nil {
		if errors.Is(err, ErrConflict) {
			// The room moved to an epoch this invitee has no key for: undo.
			if derr := deleteKey(ctx, s.invites, k); derr != nil {
				return Invitation{}, fmt.Errorf("invite: roll back after conflict: %w", derr)
			}
		}
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	return inv, nil
}

// GetInvitation returns pub's pending invitation to a room: ErrNotFound if
// there is none, or it expired.
func (s *Store) GetInvitation(ctx context.Context, roomID, pub string) (Invitation, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Invitation{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.getInvitation(ctx, roomID, pub)
}

func (s *Store) getInvitation(ctx context.Context, roomID, pub string) (Invitation, error) {
	inv, _, err := getRecord[Invitation](ctx, s, s.invites, invitationKey(pub, roomID))
	switch {
	case errors.Is(err, ErrNotFound):
		return Invitation{}, fmt.Errorf("invitation of %s to room %s: %w", pub, roomID, err)
	case err != nil:
		return Invitation{}, fmt.Errorf("get invitation: %w", err)
	case !s.live(inv):
		return Invitation{}, fmt.Errorf("invitation of %s to room %s expired at %s: %w", pub, roomID, inv.ExpiresAt().Format(time.RFC3339), ErrNotFound)
	}
	return inv, nil
}

// ListInvitations returns pub's pending invitations, by room ID: one
// direct get of its keys while it has at most 1024 of them, so the cost
// follows pub's invitations, not the bucket's. Expired and invalid
// records are left out. None is an empty slice.
func (s *Store) ListInvitations(ctx context.Context, pub string) ([]Invitation, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	out, err := s.listInvitations(ctx, pub+".*")
	if err != nil {
		return nil, fmt.Errorf("list invitations of %s: %w", pub, err)
	}
	slices.SortFunc(out, func(a, b Invitation) int { return strings.Compare(a.RoomID, b.RoomID) })
	return out, nil
}

// ListRoomInvitations returns the pending invitations to a room, by
// invitee (ErrNotFound if there is no such room). Expired and invalid
// records are left out.
func (s *Store) ListRoomInvitations(ctx context.Context, roomID string) ([]Invitation, error) {
	if err := validRoomID(roomID); err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return nil, err
	}
	out, err := s.roomInvitations(ctx, roomID)
	if err != nil {
		return nil, fmt.Errorf("list invitations to room %s: %w", roomID, err)
	}
	slices.SortFunc(out, func(a, b Invitation) int { return strings.Compare(a.Pub, b.Pub) })
	return out, nil
}

// roomInvitations returns the live invitations to a room.
func (s *Store) roomInvitations(ctx context.Context, roomID string) ([]Invitation, error) {
	return s.listInvitations(ctx, "*."+roomID)
}

// listInvitations returns the live invitations whose keys match filter:
// one multi-last direct get, or a listing when more keys match than one
// direct get returns.
func (s *Store) listInvitations(ctx context.Context, filter string) ([]Invitation, error) {
	entries, err := getLast(ctx, s.js, BucketInvitations, []string{filter})
	if errors.Is(err, errTooManyResults) {
		entries, err = listEntries(ctx, s.invites, filter)
	}
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(decodeRecords[Invitation](s, BucketInvitations, entries), func(inv Invitation) bool { return !s.live(inv) }), nil
}

// CountRoomInvitations returns the number of pending invitations to a
// room (ErrNotFound if there is no such room), expired ones that the
// bucket still holds included: one multi-last direct get while there are
// at most 1024, as CountMembers.
func (s *Store) CountRoomInvitations(ctx context.Context, roomID string) (int, error) {
	if err := validRoomID(roomID); err != nil {
		return 0, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return 0, err
	}
	n, err := s.count(ctx, s.invites, BucketInvitations, "*."+roomID)
	if err != nil {
		return 0, fmt.Errorf("count invitations to room %s: %w", roomID, err)
	}
	return n, nil
}

// AcceptInvitation makes pub a member of a room it has a pending
// invitation to, with JoinedEpoch the invitation's epoch (its keys from
// that epoch on were sealed by the invitation and the rekeys since), and
// removes the invitation. No pending invitation is ErrNotFound. A member
// already (an invitation accepted before, perhaps by an attempt that
// crashed or whose reply was lost) is returned as it is, and what the
// earlier attempt left undone is completed. In an encrypted room whose
// current epoch has no key for pub the invitation is removed and
// ErrInvitationStale returned.
//
// The writes are those of AddMember, with the invitation removed last: the
// member record → the room touched by compare-and-set (epoch checked) →
// the index → the invitation deleted. Until the last write the invitation
// stands, so a rekey in between seals to pub whichever of the two it sees;
// a crash leaves a member record without an index entry, which grants
// nothing and which the retry completes.
func (s *Store) AcceptInvitation(ctx context.Context, roomID, pub string) (Member, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Member{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	room, _, err := s.getRoom(ctx, roomID)
	if err != nil {
		return Member{}, err
	}
	inv, ierr := s.getInvitation(ctx, roomID, pub)
	if ierr != nil && !errors.Is(ierr, ErrNotFound) {
		return Member{}, fmt.Errorf("accept invitation: %w", ierr)
	}
	k := invitationKey(pub, roomID)
	m, merr := s.getMember(ctx, roomID, pub)
	switch {
	case merr == nil:
		return s.completeAccept(ctx, m, ierr == nil)
	case !errors.Is(merr, ErrNotFound):
		return Member{}, fmt.Errorf("accept invitation: %w", merr)
	case ierr != nil:
		return Member{}, ierr
	}

	m = Member{RoomID: roomID, Pub: pub, Role: subjects.RoleMember, JoinedEpoch: inv.Epoch, AddedAt: s.now().UTC(), FromSeq: inv.FromSeq}
	written := false
	for attempt := 1; ; attempt++ {
		if room.Encrypted() {
			if _, err := s.getRoomKey(ctx, roomID, room.Epoch, pub); errors.Is(err, ErrNotFound) {
				if written {
					if derr := deleteKey(ctx, s.members, memberKey(roomID, pub)); derr != nil {
						return Member{}, fmt.Errorf("accept invitation: roll back: %w", derr)
					}
				}
				if derr := deleteKey(ctx, s.invites, k); derr != nil {
					return Member{}, fmt.Errorf("accept invitation: remove the outdated invitation: %w", derr)
				}
				return Member{}, fmt.Errorf("accept invitation of %s to room %s at epoch %d: %w", pub, roomID, room.Epoch, ErrInvitationStale)
			} else if err != nil {
				return Member{}, fmt.Errorf("accept invitation: %w", err)
			}
		}
		if !written {
			if err := putJSON(ctx, s.members, memberKey(roomID, pub), m); err != nil {
				return Member{}, fmt.Errorf("accept invitation: %w", err)
			}
			written = true
		}
		err := s.touchRoom(ctx, roomID, room.Epoch, room.Encrypted())
		if err == nil {
			break
		}
		if !errors.Is(err, ErrConflict) || attempt == maxAcceptAttempts {
			return Member{}, fmt.Errorf("accept invitation: %w", err)
		}
		// A rekey committed meanwhile: it sealed to pub too, since the
		// invitation stood; check that and touch the room at its epoch.
		if room, _, err = s.getRoom(ctx, roomID); err != nil {
			return Member{}, fmt.Errorf("accept invitation: %w", err)
		}
	}
	if err := putJSON(ctx, s.byMember, indexKey(pub, roomID), indexEntry{Pub: pub, RoomID: roomID, Role: m.Role}); err != nil {
		return Member{}, fmt.Errorf("accept invitation: %w", err)
	}
	if err := deleteKey(ctx, s.invites, k); err != nil {
		return Member{}, fmt.Errorf("accept invitation: %w", err)
	}
	return m, nil
}

// maxAcceptAttempts bounds how often AcceptInvitation touches a room that
// concurrent rekeys keep moving to another epoch.
const maxAcceptAttempts = 3

// completeAccept finishes the acceptance of an invitation for m, a
// member already: it writes the index entry if an earlier attempt did
// not (touching the room first, as that attempt would have), and deletes
// the invitation when pending says one is still there. A member record
// without an index entry and without a pending invitation is not an
// acceptance left undone but a removal left undone (RemoveMember deletes
// the index first): it is ErrNotFound, and grants nothing back.
func (s *Store) completeAccept(ctx context.Context, m Member, pending bool) (Member, error) {
	indexed, err := exists(ctx, s.byMember, indexKey(m.Pub, m.RoomID))
	if err != nil {
		return Member{}, fmt.Errorf("accept invitation: %w", err)
	}
	if !indexed && !pending {
		return Member{}, fmt.Errorf("invitation of %s to room %s: %w", m.Pub, m.RoomID, ErrNotFound)
	}
	if !indexed {
		if err := s.touchRoom(ctx, m.RoomID, 0, false); err != nil {
			return Member{}, fmt.Errorf("accept invitation: %w", err)
		}
		if err := putJSON(ctx, s.byMember, indexKey(m.Pub, m.RoomID), indexEntry{Pub: m.Pub, RoomID: m.RoomID, Role: m.Role}); err != nil {
			return Member{}, fmt.Errorf("accept invitation: %w", err)
		}
	}
	if pending {
		if err := deleteKey(ctx, s.invites, invitationKey(m.Pub, m.RoomID)); err != nil {
			return Member{}, fmt.Errorf("accept invitation: %w", err)
		}
	}
	return m, nil
}

// CancelInvitation removes pub's pending invitation to a room, for a
// decline by the invitee or a removal by the owner, and returns it: the
// invitation is deleted, then the room is touched so that a concurrent
// rekey that still sealed to pub fails its commit. No pending invitation is
// ErrNotFound, and nothing is written. The invitee's sealed keys stay (as
// a removed member's do): no one hands them out but to members.
func (s *Store) CancelInvitation(ctx context.Context, roomID, pub string) (Invitation, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return Invitation{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, _, err := s.getRoom(ctx, roomID); err != nil {
		return Invitation{}, err
	}
	inv, err := s.getInvitation(ctx, roomID, pub)
	if err != nil {
		return Invitation{}, err
	}
	if err := deleteKey(ctx, s.invites, invitationKey(pub, roomID)); err != nil {
		return Invitation{}, fmt.Errorf("cancel invitation: %w", err)
	}
	if err := s.touchRoom(ctx, roomID, 0, false); err != nil {
		return Invitation{}, fmt.Errorf("cancel invitation: %w", err)
	}
	return inv, nil
}
