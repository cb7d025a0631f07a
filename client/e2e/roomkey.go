package e2e

import (
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/unibus/unibus/subjects"
)

const (
	// RoomKeySize is the size of a room key.
	RoomKeySize = 32

	// SealedRoomKeySize is the size of a room key sealed by SealRoomKey:
	// the HPKE encapsulated key (an ML-KEM-768 ciphertext and an X25519
	// point), the sealed key and the ChaCha20-Poly1305 tag.
	SealedRoomKeySize = 1088 + 32 + RoomKeySize + 16

	// roomKeyDomain starts the HPKE info of a sealed room key.
	roomKeyDomain = "unibus-roomkey-v1"
)

// NewRoomKey returns a new random room key of RoomKeySize bytes. The caller
// should clear it when done.
func NewRoomKey() []byte {
	k := make([]byte, RoomKeySize)
	// crypto/rand.Read never fails; it crashes the program if the system's
	// randomness is unavailable.
	_, _ = rand.Read(k)
	return k
}

// appendContext appends domain ‖ lp(room) ‖ u64(epoch) ‖ lp(who), the
// context of a sealed room key or a frame subkey. room and who must be at
// most 255 bytes (validated room IDs and user keys are).
func appendContext(b []byte, domain, room string, epoch uint64, who string) []byte {
	b = append(b, domain...)
	b = append(b, byte(len(room)))
	b = append(b, room...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, byte(len(who)))
	return append(b, who...)
}

// validateKeyedRoom checks the room and epoch of a room key.
func validateKeyedRoom(roomID string, epoch uint64) error {
	if err := subjects.ValidateRoomID(roomID); err != nil {
		return err
	}
	if epoch == 0 {
		return fmt.Errorf("%w: epoch 0 has no room key", ErrInvalidRoomKey)
	}
	return nil
}

// roomKeyInfo validates the context of a sealed room key and returns the
// HPKE info that binds it.
func roomKeyInfo(roomID string, epoch uint64, recipient string) ([]byte, error) {
	if err := validateKeyedRoom(roomID, epoch); err != nil {
		return nil, err
	}
	key, err := subjects.NormalizeUserKey(recipient)
	if err != nil {
		return nil, err
	}
	return appendContext(nil, roomKeyDomain, roomID, epoch, key), nil
}

// SealRoomKey seals roomKey, the key of roomID at epoch, to the member
// recipient (a user public key, U…) whose encryption public key is
// recipientEncPub. The result, [SealedRoomKeySize] bytes, opens only with
// [OpenRoomKey] and the same room, epoch and recipient.
//
// SealRoomKey does not check that recipientEncPub belongs to recipient:
// check its binding with subjects.VerifyEncKeyBinding first, or use
// [SealRoomKeys], which does.
func SealRoomKey(recipientEncPub []byte, roomID string, epoch uint64, recipient string, roomKey []byte) ([]byte, error) {
	if len(roomKey) != RoomKeySize {
		return nil, fmt.Errorf("seal room key: %w: %d bytes, want %d", ErrInvalidRoomKey, len(roomKey), RoomKeySize)
	}
	info, err := roomKeyInfo(roomID, epoch, recipient)
	if err != nil {
		return nil, fmt.Errorf("seal room key: %w", err)
	}
	pk, err := parsePublicKey(recipientEncPub)
	if err != nil {
		return nil, fmt.Errorf("seal room key: %w", err)
	}
	sealed, err := hpke.Seal(pk, hpkeKDF(), hpkeAEAD(), info, roomKey)
	if err != nil {
		return nil, fmt.Errorf("seal room key: %w", err)
	}
	return sealed, nil
}

// OpenRoomKey opens a room key sealed by [SealRoomKey] to k for roomID,
// epoch and recipient (k's owner). It fails with [ErrDecrypt] if sealed was
// made for another key, room, epoch or recipient, or was tampered with. The
// caller should clear the room key when done.
func OpenRoomKey(k *EncryptionKey, roomID string, epoch uint64, recipient string, sealed []byte) ([]byte, error) {
	if k == nil {
		return nil, errors.New("open room key: nil encryption key")
	}
	info, err := roomKeyInfo(roomID, epoch, recipient)
	if err != nil {
		return nil, fmt.Errorf("open room key: %w", err)
	}
	if len(sealed) != SealedRoomKeySize {
		return nil, fmt.Errorf("open room key: sealed key is %d bytes, want %d: %w", len(sealed), SealedRoomKeySize, ErrDecrypt)
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.priv == nil {
		return nil, fmt.Errorf("open room key: %w", ErrWiped)
	}
	roomKey, err := hpke.Open(k.priv, hpkeKDF(), hpkeAEAD(), info, sealed)
	if err != nil {
		// The cause (an AEAD or KEM failure) says nothing more useful.
		return nil, fmt.Errorf("open room key of room %s epoch %d: %w", roomID, epoch, ErrDecrypt)
	}
	if len(roomKey) != RoomKeySize {
		clear(roomKey)
		return nil, fmt.Errorf("open room key: %w: %d bytes, want %d", ErrInvalidRoomKey, len(roomKey), RoomKeySize)
	}
	return roomKey, nil
}

// Recipient is a member a room key is sealed to, as its user record
// publishes it.
type Recipient struct {
	// Pub is the member's user public key (U…).
	Pub string
	// EncKey is the member's encryption public key.
	EncKey []byte
	// EncKeySig is the identity's signature binding EncKey to Pub at
	// EncKeyVersion and EncKeyIssuedAt (see subjects.SignEncKeyBinding).
	EncKeySig      []byte
	EncKeyVersion  uint64
	EncKeyIssuedAt time.Time
}

// SealRoomKeys seals roomKey, the key of roomID at epoch, to every recipient,
// after checking each recipient's key binding, and returns the sealed keys
// by normalized user public key: the Keys of a subjects.RekeyRequest or
// RekeyBundle. It uses up to GOMAXPROCS goroutines, all finished when it
// returns.
//
// It fails, returning nothing, if a recipient's user key is invalid
// (subjects.ErrInvalidUserKey) or listed twice, if its encryption key is
// invalid ([ErrInvalidEncryptionKey]), or if its binding does not verify
// ([ErrBadSignature], also matching the error of
// subjects.VerifyEncKeyBinding). The error names the first failing
// recipient in list order.
func SealRoomKeys(roomID string, epoch uint64, roomKey []byte, recipients []Recipient) (map[string][]byte, error) {
	if len(roomKey) != RoomKeySize {
		return nil, fmt.Errorf("seal room keys: %w: %d bytes, want %d", ErrInvalidRoomKey, len(roomKey), RoomKeySize)
	}
	if err := validateKeyedRoom(roomID, epoch); err != nil {
		return nil, fmt.Errorf("seal room keys: %w", err)
	}
	pubs := make([]string, len(recipients))
	seen := make(map[string]struct{}, len(recipients))
	for i, r := range recipients {
		pub, err := subjects.NormalizeUserKey(r.Pub)
		if err != nil {
			return nil, fmt.Errorf("seal room keys: recipient %d: %w", i, err)
		}
		if _, dup := seen[pub]; dup {
			return nil, fmt.Errorf("seal room keys: recipient %s listed twice", pub)
		}
		seen[pub] = struct{}{}
		pubs[i] = pub
	}

	sealed := make([][]byte, len(recipients))
	errs := make([]error, len(recipients))
	workers := min(runtime.GOMAXPROCS(0), len(recipients))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				sealed[i], errs[i] = sealTo(recipients[i], pubs[i], roomID, epoch, roomKey)
			}
		})
	}
	for i := range recipients {
		next <- i
	}
	close(next)
	wg.Wait()

	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 1 {
		return nil, fmt.Errorf("seal room keys: %w (and %d more recipients)", first, failed-1)
	}
	if first != nil {
		return nil, fmt.Errorf("seal room keys: %w", first)
	}
	out := make(map[string][]byte, len(recipients))
	for i, pub := range pubs {
		out[pub] = sealed[i]
	}
	return out, nil
}

// sealTo checks r's key binding and seals roomKey to it; pub is r.Pub
// normalized.
func sealTo(r Recipient, pub, roomID string, epoch uint64, roomKey []byte) ([]byte, error) {
	if err := subjects.VerifyEncKeyBinding(pub, r.EncKey, r.EncKeyVersion, r.EncKeyIssuedAt, r.EncKeySig); err != nil {
		return nil, fmt.Errorf("recipient %s: %w: %w", pub, ErrBadSignature, err)
	}
	s, err := SealRoomKey(r.EncKey, roomID, epoch, pub, roomKey)
	if err != nil {
		return nil, fmt.Errorf("recipient %s: %w", pub, err)
	}
	return s, nil
}
