package identity

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sync"

	"github.com/nats-io/nkeys"
)

// Identity is an Ed25519 key pair held as an nkey user seed.
//
// Make one with [Generate], [FromSeed] or [Load]; the zero value is not
// usable. Its methods are safe for concurrent use. [Identity.Wipe] erases
// the seed; afterwards Seed, Sign and SignNonce fail with [ErrWiped].
//
// An identity signs in two disjoint message spaces: [Identity.SignNonce]
// answers a NATS server's login nonce, [Identity.Sign] signs application
// messages (requests, frames, bindings). See Sign for why no signature
// made in one space is ever valid in the other.
type Identity struct {
	pub string        // immutable
	kp  nkeys.KeyPair // immutable; its seed is guarded by mu
	// priv is the expanded Ed25519 key, guarded by mu like the seed.
	priv ed25519.PrivateKey

	mu    sync.RWMutex
	wiped bool
}

// Generate returns a new random identity.
func Generate() (*Identity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	return newIdentity(kp)
}

// FromSeed returns the identity held in seed, which is the content of a
// seed file. It accepts the inputs that nats.go's NkeyOptionFromSeed
// accepts (a bare seed, an nkey seed file written by `nk -gen user` or
// nsc, or a creds file), after trimming surrounding white space.
//
// It fails with [ErrMalformedSeed] when seed holds no valid nkey seed and
// with [ErrNotUserSeed] when it holds a seed of another kind. FromSeed
// copies what it keeps; the caller still owns, and may wipe, seed.
func FromSeed(seed []byte) (*Identity, error) {
	kp, err := parseSeed(seed)
	if err != nil {
		return nil, err
	}
	return newIdentity(kp)
}

// parseSeed finds the user seed in b the way nats.go does (through
// nkeys.ParseDecoratedNKey) and returns a key pair that holds the bare,
// canonical seed.
func parseSeed(b []byte) (nkeys.KeyPair, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("parse seed: empty input: %w", ErrMalformedSeed)
	}
	parsed, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, diagnose(b, err)
	}
	defer parsed.Wipe()

	// A seed found on a line of its own may carry a trailing "\r", which
	// base32 decoding ignores; keep only the canonical seed.
	raw, err := parsed.Seed()
	if err != nil {
		return nil, fmt.Errorf("parse seed: %w: %w", ErrMalformedSeed, err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("parse seed: %w: %w", ErrMalformedSeed, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("parse seed: %w: %w", ErrMalformedSeed, err)
	}
	if prefix := nkeys.Prefix(pub); prefix != nkeys.PrefixByteUser {
		kp.Wipe()
		return nil, fmt.Errorf("parse seed: got %s seed, want user seed (SU…): %w", prefix, ErrNotUserSeed)
	}
	return kp, nil
}

// diagnose explains why nkeys.ParseDecoratedNKey rejected b, which it
// does for seeds of kinds other than operator, account and user.
func diagnose(b []byte, cause error) error {
	if prefix, raw, err := nkeys.DecodeSeed(b); err == nil {
		clear(raw)
		return fmt.Errorf("parse seed: got %s seed, want user seed (SU…): %w", prefix, ErrNotUserSeed)
	}
	if nkeys.IsValidPublicKey(string(b)) {
		return fmt.Errorf("parse seed: got a public key, want a user seed (SU…): %w", ErrMalformedSeed)
	}
	return fmt.Errorf("parse seed: %w: %w", ErrMalformedSeed, cause)
}

// newIdentity wraps kp, which must hold a user seed.
func newIdentity(kp nkeys.KeyPair) (*Identity, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("derive public key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("read seed: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("decode seed: %w", err)
	}
	// Expand the key once: nkeys re-derives it from the seed on every
	// Sign, which costs as much as the signature itself.
	priv := ed25519.NewKeyFromSeed(raw)
	clear(raw)
	return &Identity{pub: pub, kp: kp, priv: priv}, nil
}

// PublicKey returns the public user key (U…), the identity's endpoint ID.
// It stays available after Wipe.
func (id *Identity) PublicKey() string { return id.pub }

// String returns the public key, so that printing an identity never shows
// its seed.
func (id *Identity) String() string { return id.pub }

// KeyPair returns the identity as an nkey key pair, for APIs that take
// one (subjects.SignRequest, subjects.SignEncKeyBinding). Its Sign is
// [Identity.Sign], with the same refusal of nonce-form messages, so that
// it never signs in the login message space, and its Wipe is
// [Identity.Wipe]; its other methods are the underlying key pair's. It is
// not guarded by id's lock, so do not use its Seed or PrivateKey
// concurrently with Wipe. To answer a server's login nonce use
// [Identity.SignNonce], never this key pair.
func (id *Identity) KeyPair() nkeys.KeyPair { return appKeyPair{KeyPair: id.kp, id: id} }

// appKeyPair is the key pair of an identity whose Sign and Wipe go through
// the identity (see Identity.KeyPair).
type appKeyPair struct {
	nkeys.KeyPair
	id *Identity
}

// Sign is Identity.Sign.
func (k appKeyPair) Sign(msg []byte) ([]byte, error) { return k.id.Sign(msg) }

// Wipe is Identity.Wipe.
func (k appKeyPair) Wipe() { k.id.Wipe() }

// Seed returns a copy of the encoded user seed (SU…), without a newline.
// The caller should clear it when done.
func (id *Identity) Seed() ([]byte, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.wiped {
		return nil, fmt.Errorf("read seed: %w", ErrWiped)
	}
	seed, err := id.kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	return bytes.Clone(seed), nil
}

// Wipe overwrites the seed in memory. Afterwards Seed, Sign and SignNonce
// fail with [ErrWiped]; PublicKey still works. Wipe is idempotent.
func (id *Identity) Wipe() {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.wiped {
		return
	}
	id.kp.Wipe()
	clear(id.priv)
	id.wiped = true
}
