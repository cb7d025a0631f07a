package e2e

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
)

const (
	// PublicKeySize is the size of an encryption public key: an ML-KEM-768
	// encapsulation key and an X25519 point.
	PublicKeySize = 1184 + 32

	// seedSize is the size of the private key seed of MLKEM768-X25519.
	seedSize = 32

	// privatePrefix starts the text form of a private key.
	privatePrefix = "unibus-enc-secret-v1:"
)

// hpkeKEM, hpkeKDF and hpkeAEAD are the HPKE suite of room keys: functions,
// not package variables, so that nothing mutable is global.
func hpkeKEM() hpke.KEM   { return hpke.MLKEM768X25519() }
func hpkeKDF() hpke.KDF   { return hpke.HKDFSHA256() }
func hpkeAEAD() hpke.AEAD { return hpke.ChaCha20Poly1305() }

// EncryptionKey is a user's HPKE key pair (MLKEM768-X25519), used to receive
// room keys. Make one with [GenerateEncryptionKey], [ParseEncryptionKey] or
// [LoadEncryptionKey]; the zero value is not usable. Its methods are safe for
// concurrent use.
//
// [EncryptionKey.Wipe] clears the seed this type holds and drops the HPKE
// key; the expanded key inside crypto/hpke cannot be cleared and is left to
// the garbage collector.
type EncryptionKey struct {
	pub []byte // immutable

	mu   sync.RWMutex
	seed []byte          // nil after Wipe
	priv hpke.PrivateKey // nil after Wipe
}

// GenerateEncryptionKey returns a new random encryption key.
func GenerateEncryptionKey() (*EncryptionKey, error) {
	seed := make([]byte, seedSize)
	// crypto/rand.Read never fails; it crashes the program if the system's
	// randomness is unavailable.
	_, _ = rand.Read(seed)
	k, err := newEncryptionKey(seed)
	if err != nil {
		return nil, fmt.Errorf("generate encryption key: %w", err)
	}
	return k, nil
}

// newEncryptionKey makes a key from seed, which it keeps (the caller must
// not reuse it).
func newEncryptionKey(seed []byte) (*EncryptionKey, error) {
	priv, err := hpkeKEM().NewPrivateKey(seed)
	if err != nil {
		clear(seed)
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncryptionKey, err)
	}
	return &EncryptionKey{pub: priv.PublicKey().Bytes(), seed: seed, priv: priv}, nil
}

// ParseEncryptionKey parses the text form of a private key written by
// [EncryptionKey.MarshalPrivate], ignoring surrounding white space. It
// copies what it keeps; the caller still owns, and may clear, b. The error
// matches [ErrInvalidEncryptionKey] and never repeats b.
func ParseEncryptionKey(b []byte) (*EncryptionKey, error) {
	b = bytes.TrimSpace(b)
	rest, ok := bytes.CutPrefix(b, []byte(privatePrefix))
	if !ok {
		return nil, fmt.Errorf("parse encryption key: want %q followed by the key: %w", privatePrefix, ErrInvalidEncryptionKey)
	}
	enc := base64.RawURLEncoding.Strict()
	if enc.DecodedLen(len(rest)) != seedSize {
		return nil, fmt.Errorf("parse encryption key: wrong length: %w", ErrInvalidEncryptionKey)
	}
	seed := make([]byte, seedSize)
	n, err := enc.Decode(seed, rest)
	if err != nil || n != seedSize {
		clear(seed)
		return nil, fmt.Errorf("parse encryption key: bad base64url: %w", ErrInvalidEncryptionKey)
	}
	k, err := newEncryptionKey(seed)
	if err != nil {
		return nil, fmt.Errorf("parse encryption key: %w", err)
	}
	return k, nil
}

// PublicKey returns a copy of the public key ([PublicKeySize] bytes), the
// value published in the user record. It stays available after Wipe.
func (k *EncryptionKey) PublicKey() []byte { return bytes.Clone(k.pub) }

// MarshalPrivate returns the text form of the private key,
// "unibus-enc-secret-v1:" followed by the 32-byte seed as unpadded base64url,
// without a newline. The caller should clear it when done.
func (k *EncryptionKey) MarshalPrivate() ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.seed == nil {
		return nil, fmt.Errorf("marshal encryption key: %w", ErrWiped)
	}
	b := make([]byte, 0, len(privatePrefix)+base64.RawURLEncoding.EncodedLen(seedSize))
	b = append(b, privatePrefix...)
	return base64.RawURLEncoding.AppendEncode(b, k.seed), nil
}

// Wipe clears the private key seed and drops the private key; afterwards
// MarshalPrivate and OpenRoomKey fail with [ErrWiped]. PublicKey still
// works. Wipe is idempotent.
func (k *EncryptionKey) Wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.seed)
	k.seed = nil
	k.priv = nil
}

// String returns a short description that never includes the private key.
func (k *EncryptionKey) String() string {
	return fmt.Sprintf("EncryptionKey(MLKEM768-X25519, public %x…)", k.pub[len(k.pub)-8:])
}

// ValidatePublicKey returns an error, matching [ErrInvalidEncryptionKey],
// unless pub is an MLKEM768-X25519 public key.
func ValidatePublicKey(pub []byte) error {
	if _, err := parsePublicKey(pub); err != nil {
		return fmt.Errorf("validate encryption key: %w", err)
	}
	return nil
}

func parsePublicKey(pub []byte) (hpke.PublicKey, error) {
	if len(pub) != PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidEncryptionKey, len(pub), PublicKeySize)
	}
	pk, err := hpkeKEM().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncryptionKey, err)
	}
	return pk, nil
}
