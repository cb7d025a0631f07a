package kvstore

import (
	"encoding/json"
	"fmt"

	"github.com/unibus/unibus/subjects"
)

// Records are validated when read: a record's content must agree with the
// key it is stored under and hold values its fields allow. Whatever wrote
// a record that fails (a reply reflected into a bucket, a bug, a hand
// edit), it is treated as absent, so it can never admit anyone: reads
// return ErrNotFound (wrapped in ErrInvalidRecord) and listings leave it
// out. The store logs each one.

// record is a stored value that can check itself against its key.
type record interface {
	checkKey(key string) error
}

var (
	_ record = User{}
	_ record = Room{}
	_ record = Member{}
	_ record = indexEntry{}
	_ record = Invitation{}
)

func (u User) checkKey(key string) error {
	if u.Pub != key {
		return fmt.Errorf("the record is of user %q", u.Pub)
	}
	if _, err := subjects.NormalizeUserKey(u.Pub); err != nil {
		return err
	}
	return nil
}

func (r Room) checkKey(key string) error {
	if r.ID != key {
		return fmt.Errorf("the record is of room %q", r.ID)
	}
	subject, err := subjects.Room(r.ID)
	if err != nil {
		return err
	}
	switch {
	case r.Subject != subject:
		return fmt.Errorf("the room's subject %q is not %s", r.Subject, subject)
	case r.Mode != subjects.ModeE2E && r.Mode != subjects.ModeCleartext:
		return fmt.Errorf("unknown room mode %q", r.Mode)
	case r.History != "" && r.History != subjects.HistoryKeep && r.History != subjects.HistoryNone:
		return fmt.Errorf("unknown history policy %q", r.History)
	case r.HistoryMaxAge < 0:
		return fmt.Errorf("negative maximum age of frames %s", r.HistoryMaxAge)
	}
	if _, err := subjects.NormalizeUserKey(r.Owner); err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	// A room without a salt predates owner-bound IDs and stays readable;
	// one with a salt must name its owner, so that a record whose owner
	// was swapped behind the store's back is not served.
	if len(r.Salt) != 0 {
		if err := subjects.CheckRoomOwner(r.ID, r.Owner, r.Mode, r.Salt); err != nil {
			return fmt.Errorf("owner: %w", err)
		}
	}
	return nil
}

func (m Member) checkKey(key string) error {
	if memberKey(m.RoomID, m.Pub) != key {
		return fmt.Errorf("the record is of member %q of room %q", m.Pub, m.RoomID)
	}
	return checkRole(m.Role)
}

func (e indexEntry) checkKey(key string) error {
	if indexKey(e.Pub, e.RoomID) != key {
		return fmt.Errorf("the index entry is of member %q of room %q", e.Pub, e.RoomID)
	}
	return checkRole(e.Role)
}

// checkKey checks an invitation against its key: the invitee and room it
// names, a room mode and owner, an invitation made by that owner, a salt
// that names the owner (when there is one) and an epoch that fits the
// mode. Expiry is not checked here (see Store.live).
func (i Invitation) checkKey(key string) error {
	if invitationKey(i.Pub, i.RoomID) != key {
		return fmt.Errorf("the invitation is of %q to room %q", i.Pub, i.RoomID)
	}
	if _, err := subjects.NormalizeUserKey(i.Pub); err != nil {
		return fmt.Errorf("invitee: %w", err)
	}
	if err := subjects.ValidateRoomID(i.RoomID); err != nil {
		return err
	}
	if _, err := subjects.NormalizeUserKey(i.Owner); err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	switch {
	case i.InvitedBy != i.Owner:
		return fmt.Errorf("invited by %q, not by the room's owner %q", i.InvitedBy, i.Owner)
	case i.Pub == i.Owner:
		return fmt.Errorf("the owner %q invited to its own room", i.Owner)
	case i.Mode == subjects.ModeE2E && i.Epoch == 0:
		return fmt.Errorf("an invitation to an encrypted room at epoch 0")
	case i.Mode == subjects.ModeCleartext && i.Epoch != 0:
		return fmt.Errorf("an invitation to a cleartext room at epoch %d", i.Epoch)
	case i.Mode != subjects.ModeE2E && i.Mode != subjects.ModeCleartext:
		return fmt.Errorf("unknown room mode %q", i.Mode)
	case i.InvitedAt.IsZero():
		return fmt.Errorf("no invitation time")
	}
	if len(i.Salt) != 0 {
		if err := subjects.CheckRoomOwner(i.RoomID, i.Owner, i.Mode, i.Salt); err != nil {
			return fmt.Errorf("owner: %w", err)
		}
	}
	return nil
}

func checkRole(role string) error {
	if role != subjects.RoleOwner && role != subjects.RoleMember {
		return fmt.Errorf("unknown role %q", role)
	}
	return nil
}

// decodeRecord decodes the value stored under key in bucket and checks it
// against the key. A value that is not a valid record is ErrInvalidRecord,
// which also matches ErrNotFound, and is logged.
func decodeRecord[T record](s *Store, bucket, key string, data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	if err == nil {
		err = v.checkKey(key)
	}
	if err != nil {
		s.logger.Warn("invalid record treated as absent", "bucket", bucket, "key", key, "reason", err.Error())
		var zero T
		return zero, fmt.Errorf("%s/%s: %w: %w", bucket, key, ErrInvalidRecord, err)
	}
	return v, nil
}

// decodeRecords decodes every entry of a listing, leaving out (and
// logging) those that are not valid records.
func decodeRecords[T record](s *Store, bucket string, entries []entry) []T {
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		if v, err := decodeRecord[T](s, bucket, e.key, e.value); err == nil {
			out = append(out, v)
		}
	}
	return out
}
