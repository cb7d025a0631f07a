package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// GetRoomKey returns the room key of epoch sealed to pub. Epochs the room
// has not committed (a claim in progress, or the future) are ErrNotFound.
func (s *Store) GetRoomKey(ctx context.Context, roomID string, epoch uint64, pub string) ([]byte, error) {
	if err := validRoomID(roomID); err != nil {
		return nil, err
	}
	pub, err := normalizeUser(pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	room, _, err := s.getRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if epoch == 0 || epoch > room.Epoch {
		return nil, fmt.Errorf("key of room %s epoch %d for %s: %w", roomID, epoch, pub, ErrNotFound)
	}
	return s.getRoomKey(ctx, roomID, epoch, pub)
}

func (s *Store) getRoomKey(ctx context.Context, roomID string, epoch uint64, pub string) ([]byte, error) {
	e, err := s.keys.Get(ctx, roomKeyKey(roomID, epoch, pub))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("key of room %s epoch %d for %s: %w", roomID, epoch, pub, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get room key: %w", err)
	}
	return e.Value(), nil
}

// RekeyTo moves an encrypted room from fromEpoch to toEpoch, whose room
// key is sealed to every current member: keys maps each member's public
// key to its sealed key and must cover the members exactly. toEpoch must
// be the room's NextEpoch (sealed room keys bind their epoch); zero means
// whatever NextEpoch is. It returns the new epoch. A room no longer at
// fromEpoch, a wrong toEpoch, a concurrent rekey that committed first, or
// a membership change during the rekey is ErrConflict; the caller re-reads
// the room and members and tries again. See the package documentation for
// the order of writes.
func (s *Store) RekeyTo(ctx context.Context, roomID string, fromEpoch, toEpoch uint64, keys map[string][]byte) (uint64, error) {
	if err := validRoomID(roomID); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, fmt.Errorf("%w: a rekey needs sealed keys for the members", ErrInvalid)
	}
	sealed := make(map[string][]byte, len(keys))
	for pub, k := range keys {
		n, err := normalizeUser(pub)
		if err != nil {
			return 0, err
		}
		if len(k) == 0 {
			return 0, fmt.Errorf("%w: empty sealed key for %s", ErrInvalid, n)
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

	// 2. The keys must cover the members exactly, as of the claim.
	members, err := s.listMembers(ctx, roomID)
	if err != nil {
		return 0, fmt.Errorf("rekey room %s: %w", roomID, err)
	}
	if err := coversExactly(members, sealed); err != nil {
		return 0, fmt.Errorf("rekey room %s: %w", roomID, err)
	}

	// 3. Keys under the claimed epoch: unreachable until the commit.
	batch := make(map[string][]byte, len(sealed))
	for pub, k := range sealed {
		batch[roomKeyKey(roomID, next, pub)] = k
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

// coversExactly checks that sealed has a key for every member and for no
// one else.
func coversExactly(members []Member, sealed map[string][]byte) error {
	var missing []string
	for _, m := range members {
		if _, ok := sealed[m.Pub]; !ok {
			missing = append(missing, m.Pub)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("membership changed: no sealed key for members %v: %w", missing, ErrConflict)
	}
	if len(sealed) != len(members) {
		var extra []string
		for pub := range sealed {
			if !slices.ContainsFunc(members, func(m Member) bool { return m.Pub == pub }) {
				extra = append(extra, pub)
			}
		}
		slices.Sort(extra)
		return fmt.Errorf("membership changed: sealed keys for non-members %v: %w", extra, ErrConflict)
	}
	return nil
}
