package e2e

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

const (
	// GrantSize is the size of a key grant: an Ed25519 signature
	// (subjects.GrantLen on the wire).
	GrantSize = subjects.GrantLen

	// CommitmentSize is the size of a room key's commitment
	// ([KeyCommitment]).
	CommitmentSize = sha256.Size

	// grantDomain starts the bytes a key grant signs.
	grantDomain = "unibus-key-grant-v1\n"

	// commitmentDomain starts the bytes a key commitment hashes.
	commitmentDomain = "unibus-key-commitment-v1\n"
)

// KeyCommitment returns the commitment to a room key that key grants sign:
// SHA-256 over a domain string and the key. It identifies the key without
// revealing it (a room key is 256 random bits), so grants can be stored by
// the service and carried in frames.
func KeyCommitment(roomKey []byte) [CommitmentSize]byte {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	h.Write(roomKey)
	var c [CommitmentSize]byte
	h.Sum(c[:0])
	return c
}

// grantMessage returns the bytes a key grant signs:
//
//	"unibus-key-grant-v1\n" ‖ lp(room) ‖ lp(member) ‖ u64(epoch) ‖ commitment
//
// lp(s) is one length byte followed by s, u64 is 8 bytes big-endian and the
// commitment is CommitmentSize bytes: every field has a fixed size or a
// length prefix, so no two tuples give the same bytes. room and member must
// be valid (at most 255 bytes).
func grantMessage(roomID, member string, epoch uint64, commitment [CommitmentSize]byte) []byte {
	b := make([]byte, 0, len(grantDomain)+1+len(roomID)+1+len(member)+8+CommitmentSize)
	b = append(b, grantDomain...)
	b = append(b, byte(len(roomID)))
	b = append(b, roomID...)
	b = append(b, byte(len(member)))
	b = append(b, member...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, commitment[:]...)
}

// grantContext validates what a grant binds and returns the member's
// canonical key.
func grantContext(roomID string, epoch uint64, member string, roomKey []byte) (string, error) {
	if err := validateKeyedRoom(roomID, epoch); err != nil {
		return "", err
	}
	if len(roomKey) != RoomKeySize {
		return "", fmt.Errorf("%w: %d bytes, want %d", ErrInvalidRoomKey, len(roomKey), RoomKeySize)
	}
	return subjects.NormalizeUserKey(member)
}

// SignGrant returns the room owner's key grant to member: the owner's
// signature (owner is the room's owner identity) binding the room, the
// epoch, the member's user key and the commitment to roomKey, the room key
// of that epoch. A grant proves that the owner gave that key to that member
// for that epoch; the service stores grants and hands them out, but cannot
// make one. The grant is GrantSize bytes.
func SignGrant(owner *identity.Identity, roomID string, epoch uint64, member string, roomKey []byte) ([]byte, error) {
	if owner == nil {
		return nil, fmt.Errorf("sign key grant: %w: no owner identity", ErrConfigValidation)
	}
	member, err := grantContext(roomID, epoch, member, roomKey)
	if err != nil {
		return nil, fmt.Errorf("sign key grant: %w", err)
	}
	// The message starts with a domain tag ending in '\n', so
	// identity.Sign accepts it and no login nonce ever has its form.
	sig, err := owner.Sign(grantMessage(roomID, member, epoch, KeyCommitment(roomKey)))
	if err != nil {
		return nil, fmt.Errorf("sign key grant: %w", err)
	}
	return sig, nil
}

// VerifyGrant checks that grant is owner's key grant to member of roomKey,
// the room key of roomID at epoch (see [SignGrant]). Every error matches
// [ErrBadGrant]; an error about the arguments also matches its cause
// (subjects.ErrInvalidRoomID, subjects.ErrInvalidUserKey,
// [ErrInvalidRoomKey]).
func VerifyGrant(owner, roomID string, epoch uint64, member string, roomKey, grant []byte) error {
	member, err := grantContext(roomID, epoch, member, roomKey)
	if err != nil {
		return fmt.Errorf("verify key grant: %w: %w", ErrBadGrant, err)
	}
	ownerKey, err := ownerPublicKey(owner)
	if err != nil {
		return fmt.Errorf("verify key grant: %w: %w", ErrBadGrant, err)
	}
	return verifyGrant(ownerKey, roomID, epoch, member, KeyCommitment(roomKey), grant)
}

// verifyGrant is VerifyGrant with a decoded owner key, a valid context and
// the key's commitment.
func verifyGrant(owner ed25519.PublicKey, roomID string, epoch uint64, member string, commitment [CommitmentSize]byte, grant []byte) error {
	if len(grant) == 0 {
		return fmt.Errorf("%w: no key grant for %s in room %s epoch %d", ErrBadGrant, member, roomID, epoch)
	}
	if len(grant) != GrantSize {
		return fmt.Errorf("%w: grant of %d bytes, want %d", ErrBadGrant, len(grant), GrantSize)
	}
	if !ed25519.Verify(owner, grantMessage(roomID, member, epoch, commitment), grant) {
		return fmt.Errorf("%w: not the owner's grant of this room key to %s in room %s epoch %d", ErrBadGrant, member, roomID, epoch)
	}
	return nil
}

// ownerPublicKey decodes a room owner's user public key.
func ownerPublicKey(owner string) (ed25519.PublicKey, error) {
	owner, err := subjects.NormalizeUserKey(owner)
	if err != nil {
		return nil, fmt.Errorf("owner: %w", err)
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(owner))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("owner %s: %w", owner, subjects.ErrInvalidUserKey)
	}
	return ed25519.PublicKey(raw), nil
}
