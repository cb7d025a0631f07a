package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// SealedKey is a room key of one epoch sealed to one member, with the
// owner's grant of it: the owner's signature over the room, the epoch, the
// member and a commitment to the room key (subjects.GrantLen bytes), which
// only clients can check. The store keeps both under the member's
// UNIBUS_room_keys entry and hands them back together.
type SealedKey struct {
	// Sealed is the room key sealed to the member's encryption key.
	Sealed []byte
	// Grant is the owner's grant. Empty only in a key stored before grants
	// existed (a legacy entry), which clients refuse.
	Grant []byte
}

// check refuses a sealed key the store would not write (ErrInvalid): no
// sealed bytes, or a grant that is not subjects.GrantLen bytes.
func (k SealedKey) check(pub string) error {
	switch {
	case len(k.Sealed) == 0:
		return fmt.Errorf("%w: empty sealed key for %s", ErrInvalid, pub)
	case len(k.Grant) != subjects.GrantLen:
		return fmt.Errorf("%w: the grant for %s is %d bytes, want %d", ErrInvalid, pub, len(k.Grant), subjects.GrantLen)
	}
	return nil
}

// sealedKeyMagic starts the value of a UNIBUS_room_keys entry that holds a
// grant. A value without it is a legacy entry: the bare sealed bytes, HPKE
// output, which starts with these 20 bytes with a chance of 2^-160.
const sealedKeyMagic = "unibus-sealed-key-v1"

// encodeSealedKey is the value of a UNIBUS_room_keys entry: sealedKeyMagic,
// the grant (subjects.GrantLen bytes) and the sealed key. Binary, not
// JSON: the sealed key is the bulk of the bucket, and base64 would grow it
// by a third; and reading an epoch's grants (RoomGrants) then costs a
// slice, not the decoding of every sealed key. k must have passed check.
func encodeSealedKey(k SealedKey) []byte {
	v := make([]byte, 0, len(sealedKeyMagic)+len(k.Grant)+len(k.Sealed))
	v = append(v, sealedKeyMagic...)
	v = append(v, k.Grant...)
	return append(v, k.Sealed...)
}

// decodeSealedKey reads the value of a UNIBUS_room_keys entry (see
// encodeSealedKey). A value without sealedKeyMagic is a legacy entry,
// written before grants existed as the bare sealed bytes: it reads back as
// those bytes with an empty grant. An empty value, or one with the magic
// but too short to hold a grant and a sealed key, is ErrInvalidRecord,
// which matches ErrNotFound.
func decodeSealedKey(key string, data []byte) (SealedKey, error) {
	rest, ok := bytes.CutPrefix(data, []byte(sealedKeyMagic))
	switch {
	case len(data) == 0:
		return SealedKey{}, fmt.Errorf("%s/%s: %w: empty value", BucketRoomKeys, key, ErrInvalidRecord)
	case !ok:
		return SealedKey{Sealed: data}, nil
	case len(rest) <= subjects.GrantLen:
		return SealedKey{}, fmt.Errorf("%s/%s: %w: %d bytes after the header, want a grant of %d and a sealed key", BucketRoomKeys, key, ErrInvalidRecord, len(rest), subjects.GrantLen)
	}
	return SealedKey{Grant: rest[:subjects.GrantLen:subjects.GrantLen], Sealed: rest[subjects.GrantLen:]}, nil
}

// GetRoomKey returns the room key of epoch sealed to pub, with its grant.
// Epochs the room has not committed (a claim in progress, or the future)
// are ErrNotFound.
func (s *Store) GetRoomKey(ctx context.Context, roomID string, epoch uint64, pub string) (SealedKey, error) {
	pub, err := roomAndUser(roomID, pub)
	if err != nil {
		return SealedKey{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	room, _, err := s.getRoom(ctx, roomID)
	if err != nil {
		return SealedKey{}, err
	}
	if epoch == 0 || epoch > room.Epoch {
		return SealedKey{}, fmt.Errorf("key of room %s epoch %d for %s: %w", roomID, epoch, pub, ErrNotFound)
	}
	return s.getRoomKey(ctx, roomID, epoch, pub)
}

func (s *Store) getRoomKey(ctx context.Context, roomID string, epoch uint64, pub string) (SealedKey, error) {
	key := roomKeyKey(roomID, epoch, pub)
	e, err := s.keys.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return SealedKey{}, fmt.Errorf("key of room %s epoch %d for %s: %w", roomID, epoch, pub, ErrNotFound)
	}
	if err != nil {
		return SealedKey{}, fmt.Errorf("get room key: %w", err)
	}
	k, err := decodeSealedKey(key, e.Value())
	if err != nil {
		s.logger.Warn("invalid record treated as absent", "bucket", BucketRoomKeys, "key", key, "reason", err.Error())
		return SealedKey{}, fmt.Errorf("get room key: %w", err)
	}
	return k, nil
}

// putRoomKey stores k as the room key of epoch sealed to pub.
func (s *Store) putRoomKey(ctx context.Context, roomID string, epoch uint64, pub string, k SealedKey) error {
	key := roomKeyKey(roomID, epoch, pub)
	if _, err := s.keys.Put(ctx, key, encodeSealedKey(k)); err != nil {
		return fmt.Errorf("put %s/%s: %w", BucketRoomKeys, key, err)
	}
	return nil
}

// RoomGrants returns the grants of room's epoch (room as GetRoom returned
// it), keyed by member: one multi-last direct get of the epoch's keys while
// there are at most 1024 of them, a listing beyond, so its cost follows the
// room's size, not the bucket's, and it reads no room record. A member
// without a key of the epoch is absent; a legacy key maps to an empty
// grant. A cleartext room has none.
func (s *Store) RoomGrants(ctx context.Context, room Room) (map[string][]byte, error) {
	if err := validRoomID(room.ID); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	if !room.Encrypted() || room.Epoch == 0 {
		return out, nil
	}
	roomID, epoch := room.ID, room.Epoch
	ctx, cancel := s.bound(ctx)
	defer cancel()
	prefix := fmt.Sprintf("%s.%d.", roomID, epoch)
	entries, err := getLast(ctx, s.js, BucketRoomKeys, []string{prefix + "*"})
	if errors.Is(err, errTooManyResults) {
		entries, err = listEntries(ctx, s.keys, prefix+"*")
	}
	if err != nil {
		return nil, fmt.Errorf("grants of room %s epoch %d: %w", roomID, epoch, err)
	}
	for _, e := range entries {
		pub, ok := strings.CutPrefix(e.key, prefix)
		if !ok {
			continue
		}
		k, err := decodeSealedKey(e.key, e.value)
		if err != nil {
			s.logger.Warn("invalid record treated as absent", "bucket", BucketRoomKeys, "key", e.key, "reason", err.Error())
			continue
		}
		out[pub] = k.Grant
	}
	return out, nil
}

// RekeyTo moves an encrypted room from fromEpoch to toEpoch, whose room
// key is sealed to every current member and pending invitee: keys maps
// each one's public key to its sealed key and grant, and must cover them
// exactly, revoked users left out (see keyHolders). toEpoch must be the room's
// NextEpoch (sealed room keys bind their epoch); zero means whatever
// NextEpoch is. It returns the new epoch. A room no longer at fromEpoch, a
// wrong toEpoch, a concurrent rekey that committed first, or a membership
// change during the rekey is ErrConflict; the caller re-reads the room and
// members and tries again. See the package documentation for the order of
// writes.
func (s *Store) RekeyTo(ctx context.Context, roomID string, fromEpoch, toEpoch uint64, keys map[string]SealedKey) (uint64, error) {
	if err := validRoomID(roomID); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("%w: a rekey needs sealed keys for the members", ErrInvalid)
	}
	sealed := make(map[string]SealedKey, len(keys))
	for pub, k := range keys {
		n, err := normalizeUser(pub)
		if err != nil {
			return 0, err
		}
		if err := k.check(n); err != nil {
			return 0, err
		}
		sealed[n] = k
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	// 1. Claim a fresh epoch number; the current epoch stays in force.
	room, rev, err := s.getRoom(ctx, roomID)
	if err != nil {
		return 0, err
	}
	if !room.Encrypted() {
		return 0, fmt.Errorf("%w: cleartext room %s has no key to rekey", ErrInvalid, roomID)
	}
	if room.Epoch != fromEpoch {
		return 0, fmt.Errorf("rekey room %s from epoch %d: room is at epoch %d: %w", roomID, fromEpoch, room.Epoch, ErrConflict)
	}
	next := room.NextEpoch()
	if toEpoch != 0 && toEpoch != next {
		return 0, fmt.Errorf("rekey room %s: keys sealed for epoch %d but the next epoch is %d: %w", roomID, toEpoch, next, ErrConflict)
	}
	room.KeyClaim = next
	rev, err = updateJSON(ctx, s.rooms, roomID, room, rev)
	if err != nil {
		return 0, fmt.Errorf("rekey room %s: claim epoch %d: %w", roomID, next, err)
	}

	// 2. The keys must cover the current members and pending invitees
	// exactly, as of the claim.
	holders, err := s.keyHolders(ctx, roomID)
	if err != nil {
		return 0, fmt.Errorf("rekey room %s: %w", roomID, err)
	}
	if err := coversExactly(holders, sealed); err != nil {
		return 0, fmt.Errorf("rekey room %s: %w", roomID, err)
	}

	// 3. Keys under the claimed epoch: unreachable until the commit.
	batch := make(map[string][]byte, len(sealed))
	for pub, k := range sealed {
		batch[roomKeyKey(roomID, next, pub)] = encodeSealedKey(k)
	}
	if err := putAll(ctx, s.js, BucketRoomKeys, batch); err != nil {
		return 0, fmt.Errorf("rekey room %s: store keys: %w", roomID, err)
	}

	// 4. Commit: fails if anything (another claim, a membership change)
	// touched the room since our claim.
	room.Epoch = next
	if _, err := updateJSON(ctx, s.rooms, roomID, room, rev); err != nil {
		return 0, fmt.Errorf("rekey room %s: commit epoch %d: %w", roomID, next, err)
	}
	return next, nil
}

// coversExactly checks that sealed has a key for every one of holders
// (members and pending invitees, see keyHolders) and for no one else.
func coversExactly(holders []string, sealed map[string]SealedKey) error {
	var missing []string
	for _, pub := range holders {
		if _, ok := sealed[pub]; !ok {
			missing = append(missing, pub)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("membership changed: no sealed key for members or invitees %v: %w", missing, ErrConflict)
	}
	if len(sealed) != len(holders) {
		var extra []string
		for pub := range sealed {
			if !slices.Contains(holders, pub) {
				extra = append(extra, pub)
			}
		}
		slices.Sort(extra)
		return fmt.Errorf("membership changed: sealed keys for non-members %v: %w", extra, ErrConflict)
	}
	return nil
}
